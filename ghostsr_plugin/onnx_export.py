"""Export a network to ONNX with dynamic batch, height and width, and check it in onnxruntime.

Ghost layers are frozen first, so the graph holds only standard ONNX ops (a shift is a
Pad); the exporter is PyTorch's own (``torch.onnx.export(dynamo=True)``).
"""
import contextlib
import copy
import io
import warnings

import torch

from ghostsr_plugin.errors import InputError

INPUT_NAME, OUTPUT_NAME = 'lr', 'sr'
DEPLOY_PACKAGES = ('onnx', 'onnxscript', 'onnxruntime')


def require_deploy_packages():
    """Name the missing package and the fix, instead of an ImportError deep in an exporter."""
    import importlib.util

    missing = [name for name in DEPLOY_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"ONNX export and onnxruntime need {', '.join(missing)}: "
                         "pip install 'ghostsr-plugin[deploy]'")


def export_onnx(net, path, half=False, example_size=(2, 3, 32, 32), dynamic=True):
    """Write ``net`` (eval mode, Ghost layers frozen) as ONNX to ``path``; ``half``: in float16.

    ``dynamic=False`` fixes the input to ``example_size``, for archs that torch.export cannot
    trace at any size (BasicSR's SwinIR: its windows). The exporter's progress lines are kept
    quiet; its errors are raised as they are.
    """
    require_deploy_packages()
    net = copy.deepcopy(net).eval().half() if half else net.eval()
    example = torch.rand(example_size, dtype=torch.float16 if half else torch.float32)
    dims = {0: torch.export.Dim('batch'), 2: torch.export.Dim('height', min=3), 3: torch.export.Dim('width', min=3)}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter('ignore')
        program = torch.onnx.export(net, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=(dims,) if dynamic else None,
                                    verbose=False)
    program.save(path)
    return path


def onnx_op_types(path):
    """The ``(domain, op_type)`` of every node in the ONNX file's main graph."""
    import onnx

    return sorted({(node.domain, node.op_type) for node in onnx.load(path).graph.node})


def onnx_session(path, threads=None):
    """An onnxruntime CPU session of the ONNX file ``path``, on ``threads`` intra-op threads (default: ORT's)."""
    require_deploy_packages()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    try:
        return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    except Exception as err:  # noqa: BLE001  (onnxruntime's own error types: any failure to load the file)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f'{path}: not an ONNX model onnxruntime can load ({reason[:200]})') from None


def session_runner(session):
    """A tensor-in, tensor-out call of an onnxruntime session with one input and one output."""
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.detach().cpu().numpy()})[0])


def check_onnx(net, path, sizes=((1, 3, 24, 20), (2, 3, 33, 47)), half=False, tolerance=None):
    """Run ``path`` in onnxruntime at each input size and compare with ``net``; the largest difference per size.

    Raises ``InputError`` when a difference exceeds ``tolerance`` (default 1e-4 in float32,
    1e-2 in float16, for images in [0, 1]).
    """
    tolerance = tolerance or (1e-2 if half else 1e-4)
    run = session_runner(onnx_session(path))
    differences = []
    generator = torch.Generator().manual_seed(0)
    for size in sizes:
        x = torch.rand(size, generator=generator)
        with torch.no_grad():
            expected = net(x)
        found = run(x.half() if half else x).float()
        difference = (found - expected).abs().max().item()
        if not difference <= tolerance:
            raise InputError(f'{path}: onnxruntime differs from PyTorch by {difference:.3g} at input {tuple(size)} '
                             f'(expected at most {tolerance:g})')
        differences.append((tuple(size), difference))
    return differences
