"""The registered ops (torch.ops.ghostsr.*): opcheck, torch.compile / torch.export, FLOPs, fallback."""
import warnings

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from ghostsr_plugin import ops
from ghostsr_plugin.archs import GhostConv2d
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
        (g.ghost_features_train_backward, (t(2, 8, 5, 6, grad=False), 4, one_hot.detach(), 1)),
        (g.selection_grad, (t(2, 8, 5, 6, grad=False), t(2, 4, 5, 6, grad=False), 2, 1)),
        (g.selection_grad, (t(2, 8, 5, 6, dtype=torch.float32, grad=False),
                            t(2, 4, 5, 6, dtype=torch.float32, channels_last=True, grad=False), 1, 2)),
    ]


@pytest.mark.parametrize('index', range(len(opcheck_samples('cpu'))))
def test_opcheck_on_cpu(index):
    op, args = opcheck_samples('cpu')[index]
    torch.library.opcheck(op, args)


def test_ghost_features_is_twice_differentiable():
    x1 = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    offsets = torch.tensor([[1, -1], [0, 1], [-1, 0]])
    assert torch.autograd.gradgradcheck(lambda t: ops.ghost_features(t, 3, offsets), (x1,))


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
    got = torch.ops.ghostsr.selection_grad(grad_out, x1, 1, 1)  # the CPU kernel: the reference
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
    model = GhostEDSR(3, 3, num_feat=8, num_block=2, upscale=2).eval()
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


def test_reference_kernels_is_scoped():
    assert not library._reference_on_cuda
    with ops.reference_kernels():
        assert library._reference_on_cuda
        with ops.reference_kernels():
            pass
        assert library._reference_on_cuda
    assert not library._reference_on_cuda


def test_missing_nvcc_warns_once_and_falls_back(monkeypatch):
    def no_nvcc(*args, **kwargs):
        raise RuntimeError('nvcc not found (CUDA_HOME=None); set CUDA_HOME')

    monkeypatch.setattr(extension, 'loaded', lambda: False)
    monkeypatch.setattr(extension, '_load_prebuilt', lambda: False)
    monkeypatch.setattr(extension, 'build', no_nvcc)
    extension.load.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match='using the PyTorch reference ops instead: nvcc not found'):
            assert extension.load() is False
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            assert extension.load() is False
    finally:
        extension.load.cache_clear()
