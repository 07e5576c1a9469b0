"""Where a trained model runs: eager PyTorch, torch.compile or onnxruntime, behind one call.

Every engine runs the *frozen* model (each Ghost layer a fixed integer shift): in eager
PyTorch the shift is the fused op, in a graph it lowers to slicing, padding and concat
(:mod:`ghostsr_plugin.ops.traceable`), which inductor fuses and ONNX expresses with
standard ops. :func:`prepare` returns a function from an LR batch (N, C, H, W, a float
tensor in [0, 1]) to the SR batch in float32, whatever the engine, precision and layout.

Precision: float16 by default on a CUDA device (tensor cores; the same speed as bfloat16 on
an H100/H200, with 3 more mantissa bits, which keep outputs within a grey level of float32),
float32 elsewhere. Layout: NCHW by default until a GPU measurement shows channels_last
faster end to end (``DEFAULT_LAYOUT``; docs/deploy.md).
"""
import os
import tempfile

import torch

from ghostsr_plugin.archs import freeze
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.onnx_export import export_onnx, onnx_session, session_runner

ENGINES = ('eager', 'compile', 'onnxruntime')
PRECISIONS = {'fp32': torch.float32, 'fp16': torch.float16}
LAYOUTS = {'nchw': torch.contiguous_format, 'channels_last': torch.channels_last}
DEFAULT_LAYOUT = 'nchw'  # on every device, until scripts/gpu_check.sh measures channels_last faster


def add_arguments(parser):
    """--half/--fp32 and --layout: the precision and memory layout an engine runs the model in."""
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument('--half', dest='precision', action='store_const', const='fp16',
                           help='run in float16 (the default on a CUDA device)')
    precision.add_argument('--fp32', dest='precision', action='store_const', const='fp32',
                           help='run in float32 (the default elsewhere)')
    parser.add_argument('--layout', choices=LAYOUTS, help=f'memory layout of the activations (default: '
                        f'{DEFAULT_LAYOUT}; eager and compile)')


def settings(args, device):
    """``{'precision', 'layout'}`` asked for by :func:`add_arguments`' options, defaults filled in for ``device``."""
    cuda = torch.device(device).type == 'cuda'
    return {'precision': args.precision or ('fp16' if cuda else 'fp32'), 'layout': args.layout or DEFAULT_LAYOUT}


def prepare(net, engine, threads=None, device='cpu', precision='fp32', layout=DEFAULT_LAYOUT, onnx_size=None):
    """``run(x)``: the frozen ``net`` on ``engine`` in ``precision`` and ``layout``, with ``threads`` CPU threads.

    ``onnx_size``: export the ONNX for inputs of this (N, C, H, W) only, for archs that torch.export
    cannot trace at every size (BasicSR's SwinIR); by default any batch, height and width.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}': expected one of {', '.join(ENGINES)}")
    if threads:
        torch.set_num_threads(threads)
    net = freeze(net.eval()).to(device)
    if engine == 'onnxruntime':
        if torch.device(device).type != 'cpu':
            raise InputError(f'--engine onnxruntime runs on the CPU here; found --device {device}')
        if (precision, layout) != ('fp32', DEFAULT_LAYOUT):
            raise InputError(f'--engine onnxruntime runs the exported float32 model in its own layout; found '
                             f'precision {precision}, layout {layout} (they apply to eager and compile)')
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, 'model.onnx')
            export_onnx(net, path, **({} if onnx_size is None else {'example_size': onnx_size, 'dynamic': False}))
            return session_runner(onnx_session(path, threads))
    dtype, memory_format = PRECISIONS[precision], LAYOUTS[layout]
    net = net.to(dtype=dtype, memory_format=memory_format)
    module = torch.compile(net) if engine == 'compile' else net

    @torch.no_grad()
    def run(x):
        return module(x.to(device, dtype).contiguous(memory_format=memory_format)).float()

    return run
