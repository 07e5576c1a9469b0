"""The registered ops (torch.ops.ghostsr.*): opcheck, torch.compile / torch.export, FLOPs, fallback."""
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from ghostsr_plugin import ops
from ghostsr_plugin.archs import GhostConv2d, ghost_layers
from ghostsr_plugin.archs.ghost_edsr_arch import GhostEDSR
from ghostsr_plugin.ops import extension, library, reference


def opcheck_samples(device):
    """(op, args) pairs covering layouts, dtypes, grouped and reused sources, large offsets."""
    def t(*shape, dtype=torch.float64, channels_last=False, grad=True):
        x = torch.randn(*shape, dtype=dtype, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.requires_grad_(grad)

    offsets = torch.tensor([[1, -1], [0, 2]], device=device)
    one_hot = F.one_hot(torch.tensor([2, 7]), 9).to(device, torch.float64).requires_grad_()
    g = torch.ops.ghostsr
    return [
        (g.shift, (t(2, 3, 5, 6), [1, -2])),
        (g.shift, (t(2, 3, 5, 6, channels_last=True), [0, 7])),
        (g.shift, (t(3, 4, 5), [-1, 1])),
        (g.shift, (t(2, 3, 5, 6, dtype=torch.float32, grad=False), [2, 2])),
        (g.ghost_features, (t(2, 4, 5, 6), 4, offsets)),
        (g.ghost_features, (t(2, 3, 5, 6, channels_last=True), 6, offsets)),
        (g.ghost_features, (t(1, 4, 1, 1, dtype=torch.float32, grad=False), 2, offsets)),
        (g.ghost_features_backward, (t(2, 8, 5, 6), 4, offsets)),
        (g.ghost_features_backward, (t(2, 9, 5, 6, channels_last=True), 6, offsets)),
        (g.ghost_features_train, (t(2, 4, 5, 6), 4, one_hot, 1)),
        (g.ghost_features_train, (t(2, 3, 5, 6, channels_last=True), 6, t(2, 9), 1)),
        (g.ghost_features_train, (t(1, 2, 4, 3, dtype=torch.float32, grad=False), 2, t(1, 25, grad=False), 2)),
        (g.ghost_features_train_backward, (t(2, 8, 5, 6, grad=False), t(2, 4, 5, 6, grad=False), 4,
                                           one_hot.detach(), 1)),
        (g.ghost_features_train_backward, (t(2, 8, 5, 6, dtype=torch.float32, grad=False),
                                           t(2, 4, 5, 6, dtype=torch.float32, channels_last=True, grad=False), 4,
                                           t(1, 25, dtype=torch.float32, grad=False), 2)),
    ]


@pytest.mark.parametrize('index', range(len(opcheck_samples('cpu'))))
def test_opcheck_on_cpu(index):
    op, args = opcheck_samples('cpu')[index]
    torch.library.opcheck(op, args)


def test_ghost_features_is_twice_differentiable():
    x1 = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    offsets = torch.tensor([[1, -1], [0, 1], [-1, 0]])
    assert torch.autograd.gradgradcheck(lambda t: ops.ghost_features(t, 3, offsets), (x1,))


def bad_argument_cases(device):
    """(name, call on the ops of namespace ``ns``, message pattern): each a ValueError before any kernel."""
    def t(*shape, dtype=torch.float32):
        return torch.zeros(shape, dtype=dtype, device=device)

    x1, offsets, long = t(1, 4, 5, 5), t(1, 2, dtype=torch.long), torch.long
    huge = torch.zeros((), device=device).expand(2**16, 2**15 + 1)  # (no memory: every stride is 0)
    return [
        ('groups', lambda ns: ns.ghost_features(x1, 4, t(3, 2, dtype=long)),
         '4 ghost channels cannot be split into 3 orientation groups'),
        ('offsets shape', lambda ns: ns.ghost_features(x1, 4, t(2, 3, dtype=long)), r'offsets must be \(G, 2\)'),
        ('offsets dtype', lambda ns: ns.ghost_features(x1, 4, t(1, 2)), 'offsets must be integer'),
        ('x1 dtype', lambda ns: ns.ghost_features(t(1, 4, 5, 5, dtype=long), 4, offsets),
         'x1 must be a floating-point tensor'),
        ('x1 shape', lambda ns: ns.ghost_features(t(4, 5, 5), 4, offsets), r'x1 must be \(N, C, H, W\)'),
        ('no intrinsic channel', lambda ns: ns.ghost_features(t(1, 0, 5, 5), 4, offsets),
         'ghosts need at least one intrinsic channel'),
        ('negative num_ghost', lambda ns: ns.ghost_features(x1, -2, offsets), 'num_ghost must be >= 0'),
        ('too many groups', lambda ns: ns.ghost_features(x1, 4096, t(4096, 2, dtype=long)),
         'at most 2048 orientation groups'),
        ('selection shape', lambda ns: ns.ghost_features_train(x1, 4, t(1, 8), 1), 'selection must be'),
        ('selection dtype', lambda ns: ns.ghost_features_train(x1, 4, t(1, 9, dtype=long), 1),
         'selection must be floating point'),
        ('max_shift', lambda ns: ns.ghost_features_train(x1, 4, t(1, 1), -1), r'max_shift must be in \[0, 1000\]'),
        ('grad_out shape', lambda ns: ns.ghost_features_backward(t(1, 3, 5, 5), 4, offsets),
         r'grad_out must be \(N, C \+ num_ghost, H, W\)'),
        ('grad_out against x1', lambda ns: ns.ghost_features_train_backward(t(1, 8, 5, 6), x1, 4, t(1, 9), 1),
         r'grad_out must be \(N, C \+ num_ghost, H, W\) for x1'),
        ('grad_out dtype', lambda ns: ns.ghost_features_train_backward(t(1, 8, 5, 5, dtype=torch.float64), x1, 4,
                                                                       t(1, 9), 1), 'but x1 is'),
        ('shift dims', lambda ns: ns.shift(t(5), [1, 1]), r'x must be \(\.\.\., H, W\)'),
        ('shift offset', lambda ns: ns.shift(t(5, 5), [1]), r'offset must be \(dy, dx\)'),
        ('image too large', lambda ns: ns.shift(huge, [1, 1]), 'is more than these kernels index'),
    ]


@pytest.mark.parametrize('device', ['cpu', 'meta'])
@pytest.mark.parametrize('index', range(len(bad_argument_cases('cpu'))))
def test_bad_arguments_are_refused_before_any_kernel(device, index):
    """The public ops check sizes, dtypes and devices first, in Python: on the CPU (the reference)
    and the meta device (the fake kernels: torch.compile, torch.export) as on CUDA."""
    _, call, pattern = bad_argument_cases(device)[index]
    with pytest.raises(ValueError, match=pattern):
        call(torch.ops.ghostsr)


def test_cuda_kernels_check_before_they_load_or_call_compiled_code(monkeypatch):
    """The ops' CUDA kernels (run here on CPU tensors): a bad argument never loads or reaches the
    compiled kernels; a good one goes to them when they load, else to the reference."""
    calls = []
    monkeypatch.setattr(library, 'compiled', lambda name: lambda *args: calls.append(name) or 'compiled')
    monkeypatch.setattr(extension, 'load', lambda: pytest.fail('loaded before the arguments were checked'))
    kernel = library.cuda_kernel('ghost_features')
    x1, offsets = torch.randn(1, 4, 5, 5), torch.zeros(3, 2, dtype=torch.long)
    for _, call, pattern in bad_argument_cases('cpu'):
        with pytest.raises(ValueError, match=pattern):
            call(SimpleNamespace(**{name: library.cuda_kernel(name) for name in library.SCHEMAS}))
    assert calls == []
    monkeypatch.setattr(extension, 'load', lambda: True)
    assert kernel(x1, 3, offsets) == 'compiled' and calls == ['ghost_features']
    monkeypatch.setattr(extension, 'load', lambda: False)
    torch.testing.assert_close(kernel(x1, 3, offsets), reference.ghost_features(x1, 3, offsets))


def test_arguments_on_two_devices_are_refused():
    x1 = torch.zeros(1, 4, 5, 5)
    with pytest.raises(ValueError, match='offsets must be on cpu, got meta'):
        torch.ops.ghostsr.ghost_features(x1, 4, torch.zeros(1, 2, dtype=torch.long, device='meta'))
    with pytest.raises(ValueError, match='selection must be on cpu, got meta'):
        torch.ops.ghostsr.ghost_features_train(x1, 4, torch.zeros(1, 9, device='meta'), 1)


def test_public_functions_refuse_bad_groups():
    x1 = torch.randn(1, 4, 5, 5)
    with pytest.raises(ValueError, match='4 ghost channels cannot be split into 3 orientation groups'):
        ops.ghost_features(x1, 4, torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r'selection must be \(G, 9\) for max_shift=1, got shape \(2, 25\)'):
        ops.ghost_features_train(x1, 4, torch.zeros(2, 25), 1)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_selection_grad_of_half_inputs_sums_in_float32(dtype):
    # sums of 1 * 1 over up to 300 x 300 pixels: 90000 overflows float16 and is no bfloat16 value
    x1, grad_out = torch.ones(1, 1, 300, 300, dtype=dtype), torch.ones(1, 2, 300, 300, dtype=dtype)
    selection = F.one_hot(torch.tensor([4]), 9).float()
    _, got = torch.ops.ghostsr.ghost_features_train_backward(grad_out, x1, 1, selection, 1)  # the reference
    assert got.dtype == torch.float32
    # Exact: sums of ones are integers below 2**24, exact in float32 in any order.
    assert torch.equal(got, reference.selection_grad(grad_out.double(), x1.double(), 1, 1).float())


def run_layer(layer, x):
    torch.manual_seed(0)  # the same Gumbel noise every call
    out = layer(x)
    grads = torch.autograd.grad(out.square().sum(), [x, *layer.parameters()], allow_unused=True)
    return out, grads


@pytest.mark.parametrize('training', [True, False])
def test_torch_compile_traces_through_the_ops(training):
    layer = GhostConv2d(6, 8, orientation_groups=2).train(training)
    x = torch.randn(2, 6, 7, 9, requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True, backend='aot_eager')
    out, grads = run_layer(compiled, x)
    want, want_grads = run_layer(layer, x)
    torch.testing.assert_close(out, want)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got, expected)


def test_torch_export_keeps_the_ops():
    # (in eval mode a graph gets the shift as plain tensor ops; held orientations in training use the op)
    model = GhostEDSR(3, 3, num_feat=8, num_block=2, upscale=2).train()
    for layer in ghost_layers(model):
        layer.learn_orientation = False
    x = torch.rand(1, 3, 10, 12)
    exported = torch.export.export(model, (x,))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == 'call_function'}
    assert 'ghostsr.ghost_features.default' in targets
    torch.testing.assert_close(exported.module()(x), model(x))


def count_flops(fn, *args):
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


@pytest.mark.parametrize('training', [True, False])
def test_flop_counter_counts_the_shift_as_zero(training):
    """A Ghost layer costs exactly its primary conv, forward and backward, in training and eval."""
    layer = GhostConv2d(6, 8, orientation_groups=2).train(training)
    x = torch.randn(2, 6, 7, 9, requires_grad=True)
    ghost = count_flops(lambda: layer(x).sum().backward())
    primary = count_flops(lambda: layer.primary(x).sum().backward())
    assert ghost == primary > 0


def test_flops_of_a_model_on_the_meta_device():
    """The fake kernels serve the meta device: a full-size model's FLOPs are counted without running it."""
    model = GhostEDSR(3, 3, num_feat=256, num_block=32, upscale=2, res_scale=0.1).to('meta').eval()
    conv = torch.nn.Conv2d(256, 128, 3, padding=1).to('meta')
    x, features = torch.empty(1, 3, 36, 64, device='meta'), torch.empty(1, 256, 36, 64, device='meta')
    body_conv = count_flops(conv, features)
    total = count_flops(model, x)
    rest = total - 64 * body_conv  # head, upsampler and tail, counted once
    assert body_conv == 2 * 256 * 128 * 9 * 36 * 64 and 0 < rest < total


def test_each_op_has_one_schema_and_checked_kernels():
    """Every op: the checked reference for the CPU, a checked CUDA kernel; the compiled kernels have
    the same schemas in ghostsr_kernels, which only those CUDA kernels call."""
    for name, schema in library.SCHEMAS.items():
        assert str(getattr(torch.ops.ghostsr, name).default._schema) == f'ghostsr::{name}{schema}'
        assert str(getattr(torch.ops.ghostsr_kernels, name).default._schema) == f'ghostsr_kernels::{name}{schema}'
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f'ghostsr::{name}', 'CompositeExplicitAutograd')
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f'ghostsr::{name}', 'CUDA')
    assert set(library.SCHEMAS) == set(library.REFERENCE_KERNELS) == set(library.CHECKS) == set(extension.OPS)


# --- the loader (extension.py), with torch.cuda and the build mocked ------------------------------


@pytest.fixture
def fresh_loader(monkeypatch):
    """extension.status() computed afresh, with no compiled kernels loaded and none prebuilt."""
    monkeypatch.delenv('GHOSTSR_CUDA', raising=False)
    monkeypatch.setattr(extension, 'loaded', lambda: False)
    monkeypatch.setattr(extension, '_load_prebuilt', lambda: None)
    extension.status.cache_clear()
    yield monkeypatch
    extension.status.cache_clear()


def no_nvcc(*args, **kwargs):
    raise RuntimeError('nvcc not found (CUDA_HOME=None); set CUDA_HOME')


def test_missing_nvcc_warns_once_and_falls_back(fresh_loader):
    fresh_loader.setattr(extension, 'build', no_nvcc)
    with pytest.warns(RuntimeWarning, match=r'run the PyTorch reference \(slower\): nvcc not found.*ghostsr doctor'):
        assert extension.load() is False
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert extension.load() is False
    assert extension.status() == (False, 'PyTorch reference: nvcc not found (CUDA_HOME=None); set CUDA_HOME')


def test_ghostsr_cuda_0_forces_the_reference_silently(fresh_loader):
    fresh_loader.setenv('GHOSTSR_CUDA', '0')
    fresh_loader.setattr(extension, 'build', lambda: pytest.fail('GHOSTSR_CUDA=0 must not build'))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert extension.status() == (False, 'GHOSTSR_CUDA=0 forces the PyTorch reference')


def test_ghostsr_cuda_1_makes_a_failure_an_error(fresh_loader):
    fresh_loader.setenv('GHOSTSR_CUDA', '1')
    builds = []
    fresh_loader.setattr(extension, 'build', lambda: builds.append(1) or no_nvcc())
    for _ in range(2):  # every use is an error, from the one failed build (a build takes minutes)
        with pytest.raises(RuntimeError, match='CUDA kernels unavailable and GHOSTSR_CUDA=1: nvcc not found'):
            extension.load()
    assert extension.status() == (False, 'CUDA kernels unavailable and GHOSTSR_CUDA=1: nvcc not found '
                                         '(CUDA_HOME=None); set CUDA_HOME')
    assert len(builds) == 1


def test_a_failing_self_check_falls_back(fresh_loader):
    """Kernels that load but compute wrong results (or have no image for this GPU) are not used."""
    def wrong():
        raise RuntimeError('self-check failed: shift on shape (2, 4, 5, 7) differs from the reference')

    fresh_loader.setattr(extension, 'loaded', lambda: True)
    fresh_loader.setattr(extension, 'self_check', wrong)
    with pytest.warns(RuntimeWarning, match='self-check failed: shift'):
        assert extension.load() is False


def test_no_ninja_is_named_with_the_fix(monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setattr(extension, 'find_nvcc', lambda: '/usr/local/cuda/bin/nvcc')
    monkeypatch.setattr(cpp_extension, 'is_ninja_available', lambda: False)
    with pytest.raises(RuntimeError, match='ninja not found.*pip install ninja'):
        extension.build('9.0')


def test_arch_list_follows_torch(monkeypatch):
    """Capabilities clamped to the newest torch supports, +PTX on the highest; the env var wins."""
    monkeypatch.delenv('TORCH_CUDA_ARCH_LIST', raising=False)
    monkeypatch.setattr(torch.cuda, 'get_arch_list', lambda: ['sm_80', 'sm_90', 'compute_90'])
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 3)
    capabilities = [(8, 6), (12, 0), (8, 6)]
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda i: capabilities[i])
    assert extension.arch_list() == '8.6;9.0+PTX'
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.0')
    assert extension.arch_list() == '8.0'


@pytest.mark.parametrize('stamp,used', [('current', True), ('stale', False), ('none', False)])
def test_a_stale_prebuilt_library_is_ignored_with_a_notice(tmp_path, monkeypatch, capsys, stamp, used):
    from importlib.machinery import ModuleSpec

    library_file = tmp_path / '_C.so'
    digest = {'current': extension.source_hash(), 'stale': '0' * 64, 'none': None}[stamp]
    library_file.write_bytes(b'\x7fELF...' + (f'ghostsr-source-sha256:{digest}'.encode() if digest else b'') + b'\0')
    monkeypatch.setattr('importlib.util.find_spec', lambda name: ModuleSpec(name, None, origin=str(library_file)))
    loads = []
    monkeypatch.setattr(torch.ops, 'load_library', loads.append)
    assert bool(extension._load_prebuilt()) is used
    assert loads == ([str(library_file)] if used else [])
    assert ('built from another version of ghost_ops.cu' in capsys.readouterr().err) is not used
