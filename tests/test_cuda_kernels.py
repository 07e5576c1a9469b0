"""The fused CUDA kernels (ghostsr_plugin/ops/csrc/ghost_ops.cu) against the pure-PyTorch reference.

Each kernel check runs on two backends:
- 'emulated': the kernels' own block code run thread by thread on the CPU
  (tests/csrc/emulated_ghost_ops.cu), which also counts every global load and store. Building
  it compiles the real CUDA sources against the installed torch (for sm_90, H100/H200), so
  this is also the CI build test; it needs nvcc (CUDA_HOME) and skips with the reason without
  it. The build is cached (a few minutes once).
- 'cuda': the compiled kernels on a GPU (torch.ops.ghostsr on CUDA tensors); skipped where
  none is visible.
Then the memory traffic of each kernel, counted by the emulation, against the minimum. The
tests at the end need a GPU: the public ops' CUDA path (gradcheck, opcheck, no host sync) and
GhostEDSR equal to its reference path.
"""
import contextlib
import itertools
import os.path as osp
import warnings

import pytest
import torch
from torch.nn import functional as F

from ghostsr_plugin import ops
from ghostsr_plugin.ops import extension, library, reference

EMULATED_SOURCE = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc', 'emulated_ghost_ops.cu')
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LAYOUTS = ['nchw', 'channels_last', 'strided']
CASES = [(1, (1, 1)), (3, (5, 7)), (1, (6, 4)), (3, (2, 9))]  # (N, (H, W)): 1 x 1, odd, even, thin
OFFSETS = list(itertools.product(range(-2, 3), repeat=2)) + [(7, 0), (0, -9), (1000, -1000)]
# (c_intrinsic, num_ghost, orientation groups): lambda 0.5, grouped, reused sources, one ghost, none
GHOST_CONFIGS = [(4, 4, 1), (4, 2, 2), (2, 6, 3), (3, 1, 1), (3, 0, 1)]
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(scope='session')
def emulated():
    if torch.version.cuda is None:
        pytest.skip('torch is a CPU-only build: no CUDA headers and libraries to compile the kernels against')
    if extension.find_nvcc() is None:
        pytest.skip('nvcc not found: set CUDA_HOME to a CUDA toolkit to compile the kernels')
    extension.build('9.0', name='ghostsr_emulated_ops', sources=[EMULATED_SOURCE])
    ns = torch.ops.ghostsr_emulated
    ns.configure(3, False)
    return ns


@pytest.fixture(scope='session')
def cuda_kernels():
    if not torch.cuda.is_available():
        pytest.skip('needs a CUDA GPU')
    assert extension.load(), 'the CUDA kernels did not build or load'
    return torch.ops.ghostsr


@pytest.fixture(params=['emulated', pytest.param('cuda', marks=needs_gpu)])
def kernels(request):
    """(the raw kernel ops, the device they run on)."""
    if request.param == 'emulated':
        return request.getfixturevalue('emulated'), torch.device('cpu')
    return request.getfixturevalue('cuda_kernels'), torch.device('cuda')


def laid_out(t, layout, device):
    """``t`` on ``device`` as contiguous NCHW, channels_last, or strided (neither: every other column)."""
    t = t.to(device)
    if layout == 'channels_last':
        return t.contiguous(memory_format=torch.channels_last)
    if layout == 'strided':
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=device)
        wide[..., ::2] = t
        return wide[..., ::2]
    return t.contiguous()


def random(shape, dtype, layout, device, seed):
    generator = torch.Generator().manual_seed(seed)
    return laid_out(torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype), layout, device)


def assert_same(got, want, like):
    """Bit-equal to the reference, laid out as the reference lays out its output for input ``like``."""
    assert got.is_contiguous(memory_format=reference.memory_format(like))
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got.cpu(), want), f'max difference {(got.cpu().double() - want.double()).abs().max()}'


TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def assert_close_to_exact(got, exact, dtype, scale):
    """Within rounding of ``exact`` (float64), for sums whose terms add up to ``scale`` in size."""
    torch.testing.assert_close(got.cpu().double(), exact, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * scale)


def test_emulation_has_the_public_schemas(emulated):
    for name in extension.OPS:
        public = str(getattr(torch.ops.ghostsr, name).default._schema)
        assert str(getattr(emulated, name).default._schema).replace('ghostsr_emulated::', 'ghostsr::') == public
    assert set(extension.OPS) == set(library.SCHEMAS)


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('layout', LAYOUTS)
def test_shift_every_offset(kernels, dtype, layout):
    ns, device = kernels
    for n, size in CASES:
        x = random((n, 4, *size), dtype, layout, device, seed=sum(size))
        for offset in OFFSETS:
            assert_same(ns.shift(x, list(offset)), reference.shift(x.cpu(), offset), x)


@pytest.mark.parametrize('shape', [(5, 7), (2, 3, 5, 7), (2, 1, 3, 4, 5)])
def test_shift_any_leading_dims(kernels, shape):
    ns, device = kernels
    x = random(shape, torch.float32, 'nchw', device, seed=1)
    for offset in [(1, -2), (-1, 0), (0, 3)]:
        assert_same(ns.shift(x, list(offset)), reference.shift(x.cpu(), offset), x)


def group_offsets(groups, first):
    """Different offsets for the groups, the first one ``first``."""
    return torch.tensor([OFFSETS[(OFFSETS.index(first) + 7 * g) % len(OFFSETS)] for g in range(groups)])


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('c_intrinsic,num_ghost,groups', GHOST_CONFIGS)
def test_ghost_features_and_backward(kernels, dtype, layout, c_intrinsic, num_ghost, groups):
    ns, device = kernels
    for n, size in CASES:
        x1 = random((n, c_intrinsic, *size), dtype, layout, device, seed=1)
        grad = random((n, c_intrinsic + num_ghost, *size), dtype, layout, device, seed=2)
        for first in OFFSETS:
            offsets = group_offsets(groups, first)
            assert_same(ns.ghost_features(x1, num_ghost, offsets.to(device)),
                        reference.ghost_features(x1.cpu(), num_ghost, offsets), x1)
            got = ns.ghost_features_backward(grad, num_ghost, offsets.to(device))
            if num_ghost <= c_intrinsic or dtype in (torch.float32, torch.float64):
                assert_same(got, reference.ghost_features_backward(grad.cpu(), num_ghost, offsets), grad)
            else:  # a source with several ghosts: the kernel rounds their sum once, the reference each add
                exact = reference.ghost_features_backward(grad.cpu().double(), num_ghost, offsets)
                assert_close_to_exact(got, exact, dtype, grad.abs().max().item() * 4)


def one_hots(groups, k, orientation, dtype):
    """Group g picks orientation ``orientation + 7 g``: an exact one-hot, and the straight-through
    one the Ghost layer builds (``hard - logits + logits``, whose 1 is off by rounding)."""
    hard = F.one_hot((orientation + 7 * torch.arange(groups)) % k, k).to(dtype)
    logits = torch.randn(groups, k, generator=torch.Generator().manual_seed(orientation), dtype=dtype)
    return [hard, hard - logits + logits]


def check_learned_shift(ns, device, dtype, layout, c_intrinsic, num_ghost, groups, max_shift, cases):
    k = (2 * max_shift + 1)**2
    for n, size in cases:
        x1 = random((n, c_intrinsic, *size), dtype, layout, device, seed=3)
        grad = random((n, c_intrinsic + num_ghost, *size), dtype, layout, device, seed=4)
        for orientation in range(k):
            for selection in one_hots(groups, k, orientation, reference.opmath_dtype(dtype)):
                on_device = selection.to(device)
                assert_same(ns.ghost_features_train(x1, num_ghost, on_device, max_shift),
                            reference.ghost_features_train_forward(x1.cpu(), num_ghost, selection, max_shift), x1)
                got, _ = ns.ghost_features_train_backward(grad, x1, num_ghost, on_device, max_shift)
                if num_ghost <= c_intrinsic or dtype in (torch.float32, torch.float64):
                    want = reference.ghost_features_train_backward(grad.cpu(), num_ghost, selection, max_shift)
                    assert_same(got, want, grad)
                else:
                    exact = reference.ghost_features_train_backward(grad.cpu().double(), num_ghost,
                                                                    selection.double(), max_shift)
                    assert_close_to_exact(got, exact, dtype, grad.abs().max().item() * 4)
        _, got = ns.ghost_features_train_backward(grad, x1, num_ghost, selection.to(device), max_shift)
        exact = reference.selection_grad(grad.cpu().double(), x1.cpu().double(), groups, max_shift)
        assert got.dtype == reference.opmath_dtype(dtype)
        scale = (grad.cpu().double().abs().sum() * x1.cpu().double().abs().max()).item()
        assert_close_to_exact(got, exact, reference.opmath_dtype(dtype), scale)


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('c_intrinsic,num_ghost,groups', GHOST_CONFIGS)
def test_learned_shift_every_orientation(kernels, dtype, layout, c_intrinsic, num_ghost, groups):
    """max_shift 2: every offset |dy|, |dx| <= 2 as the selected orientation."""
    check_learned_shift(*kernels, dtype, layout, c_intrinsic, num_ghost, groups, 2, CASES[:3])


@pytest.mark.parametrize('max_shift', [0, 1, 3])
@pytest.mark.parametrize('layout', ['nchw', 'channels_last'])
def test_learned_shift_other_max_shifts(kernels, max_shift, layout):
    check_learned_shift(*kernels, torch.float32, layout, 4, 4, 2, max_shift, [(3, (1, 1)), (1, (6, 5))])


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('layout', ['nchw', 'channels_last'])
def test_learned_shift_dense_selection(kernels, dtype, layout):
    """Any selection, not only one-hot: within rounding of the exact weighted sum."""
    ns, device = kernels
    x1 = random((3, 4, 6, 5), dtype, layout, device, seed=5)
    grad = random((3, 8, 6, 5), dtype, layout, device, seed=6)
    selection = torch.randn(2, 9, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    selection[:, ::4] = 0  # zero entries are skipped
    scale = x1.abs().max().item() * selection.abs().sum().item()
    exact = reference.ghost_features_train_forward(x1.cpu().double(), 4, selection, 1)
    on_device = selection.to(device, reference.opmath_dtype(dtype))
    assert_close_to_exact(ns.ghost_features_train(x1, 4, on_device, 1), exact, dtype, scale)
    exact = reference.ghost_features_train_backward(grad.cpu().double(), 4, selection, 1)
    assert_close_to_exact(ns.ghost_features_train_backward(grad, x1, 4, on_device, 1)[0], exact, dtype,
                          grad.abs().max().item() * selection.abs().sum().item())


def test_backward_kernels_are_adjoint_to_forward(kernels):
    """<F(x), g> = <x, F'(g)>, and the selection gradient is d<F(x; s), g>/ds (its ghosts are linear in s)."""
    ns, device = kernels
    for layout in ['nchw', 'channels_last']:
        x1 = random((3, 5, 9, 11), torch.float64, layout, device, seed=8)
        grad = random((3, 11, 9, 11), torch.float64, layout, device, seed=9)
        offsets = torch.tensor([[1, -2], [0, 1], [-2, 2]], device=device)
        selection = torch.randn(3, 25, generator=torch.Generator().manual_seed(10), dtype=torch.float64).to(device)
        forward = (ns.ghost_features(x1, 6, offsets) * grad).sum()
        torch.testing.assert_close(forward, (x1 * ns.ghost_features_backward(grad, 6, offsets)).sum())
        forward = (ns.ghost_features_train(x1, 6, selection, 2) * grad).sum()
        grad_x1, grad_selection = ns.ghost_features_train_backward(grad, x1, 6, selection, 2)
        torch.testing.assert_close(forward, (x1 * grad_x1).sum())
        ghosts = forward - (x1 * grad[:, :5]).sum()  # the ghost part, linear in the selection
        torch.testing.assert_close(ghosts, (selection * grad_selection).sum())


@pytest.mark.parametrize('layout', ['nchw', 'channels_last'])
@pytest.mark.parametrize('max_shift', [1, 4])
@pytest.mark.parametrize('wave', [1, 7, 64])
def test_emulated_train_backward_over_many_blocks(emulated, layout, max_shift, wave):
    """Planes of 1,200 elements (several tiles) over 1 to 64 blocks: a group's selection sum
    split over planes, row segments and blocks (and, max_shift 4, over two orientation passes)."""
    x1 = random((2, 8, 40, 30), torch.float32, layout, 'cpu', seed=11)
    grad = random((2, 16, 40, 30), torch.float32, layout, 'cpu', seed=12)
    k = (2 * max_shift + 1)**2
    selection = F.one_hot(torch.tensor([3, k - 2]), k).float()
    emulated.configure(wave, False)
    try:
        grad_x1, got = emulated.ghost_features_train_backward(grad, x1, 8, selection, max_shift)
        assert_same(emulated.ghost_features(x1, 8, reference.offset_table(max_shift)[[3, k - 2]]),
                    reference.ghost_features_train_forward(x1, 8, selection, max_shift), x1)
    finally:
        emulated.configure(3, False)
    assert_same(grad_x1, reference.ghost_features_train_backward(grad, 8, selection, max_shift), grad)
    exact = reference.selection_grad(grad.double(), x1.double(), 2, max_shift)
    scale = (grad.double().abs().sum() * x1.double().abs().max()).item()
    assert_close_to_exact(got, exact, torch.float32, scale)


def test_empty_inputs(kernels):
    ns, device = kernels
    x1 = torch.zeros(0, 4, 5, 5, device=device)
    offsets = torch.tensor([[1, 1]], device=device)
    assert ns.ghost_features(x1, 4, offsets).shape == (0, 8, 5, 5)
    assert ns.shift(torch.zeros(3, 0, 4, device=device), [1, 1]).shape == (3, 0, 4)
    assert ns.ghost_features_backward(torch.zeros(2, 8, 0, 3, device=device), 4, offsets).shape == (2, 4, 0, 3)
    grad_x1, got = ns.ghost_features_train_backward(torch.zeros(0, 8, 5, 5, device=device), x1, 4,
                                                    torch.zeros(1, 9, device=device), 1)
    assert grad_x1.shape == x1.shape and torch.equal(got.cpu(), torch.zeros(1, 9))


def test_bad_inputs_are_refused(kernels):
    ns, device = kernels
    x1 = torch.randn(1, 4, 5, 5, device=device)
    with pytest.raises(RuntimeError, match='cannot be split into 3 orientation groups'):
        ns.ghost_features(x1, 4, torch.zeros(3, 2, dtype=torch.long, device=device))
    with pytest.raises(RuntimeError, match=r'offsets must be \(G, 2\)'):
        ns.ghost_features(x1, 4, torch.zeros(2, 3, dtype=torch.long, device=device))
    with pytest.raises(RuntimeError, match='selection must be'):
        ns.ghost_features_train(x1, 4, torch.zeros(1, 8, device=device), 1)
    with pytest.raises(RuntimeError, match='ghosts need at least one intrinsic channel'):
        ns.ghost_features(torch.randn(1, 0, 5, 5, device=device), 4, torch.zeros(1, 2, dtype=torch.long,
                                                                                 device=device))


# --- memory traffic, counted by the emulation ----------------------------------------------------


def per_element(counts, t):
    """Counts in ``t``'s memory order as (N, C, H, W) in logical order."""
    if reference.memory_format(t) == torch.channels_last:
        n, c, h, w = t.shape
        return counts.view(n, h, w, c).permute(0, 3, 1, 2)
    return counts.view(t.shape)


def traffic(ns, t):
    """(loads, stores) of each element of ``t`` by the last op call, as (N, C, H, W)."""
    return tuple(per_element(counts, t) for counts in ns.traffic(t))


def uniform(ns, t):
    """The distinct (load counts, store counts) over ``t``'s elements: ([1], [0]) = each read once."""
    return tuple(c.unique().tolist() for c in ns.traffic(t))


# (c_intrinsic, num_ghost, groups): lambda 0.5 (vector path in both layouts), 0.25 (three ghosts a
# source; scalar path channels_last), one ghost of three sources
TRAFFIC_CONFIGS = [(8, 8, 2), (2, 6, 3), (3, 1, 1)]


@pytest.mark.parametrize('wide', [False, True], ids=['32-bit', '64-bit'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize('layout', ['nchw', 'channels_last'])
@pytest.mark.parametrize('c_intrinsic,num_ghost,groups', TRAFFIC_CONFIGS)
def test_emulated_kernels_move_each_element_once(emulated, layout, dtype, c_intrinsic, num_ghost, groups, wide):
    """One launch per op; forward: each x1 element read once, each output element written once;
    backward: each upstream gradient element read at most once (never the ghosts' border, whose
    gradient reaches no source), each grad_x1 element written once; training backward (NCHW):
    grad and x1 each read exactly once, grad_x1 written once. Also on the 64-bit index path, forced on small sizes."""
    x1 = random((2, c_intrinsic, 9, 16), dtype, layout, 'cpu', seed=13)  # planes of 144: several vectors
    grad = random((2, c_intrinsic + num_ghost, 9, 16), dtype, layout, 'cpu', seed=14)
    offsets = group_offsets(groups, (1, -2))
    selection = F.one_hot(torch.arange(groups) * 5 % 25, 25).to(reference.opmath_dtype(dtype))
    emulated.configure(3, wide)
    try:
        out = emulated.ghost_features(x1, num_ghost, offsets)
        assert emulated.launches() == 1
        assert uniform(emulated, x1) == ([1], [0]) and uniform(emulated, out) == ([0], [1])
        assert_same(out, reference.ghost_features(x1, num_ghost, offsets), x1)

        out = emulated.ghost_features_train(x1, num_ghost, selection, 2)
        assert uniform(emulated, x1) == ([1], [0]) and uniform(emulated, out) == ([0], [1])
        assert_same(out, reference.ghost_features_train_forward(x1, num_ghost, selection, 2), x1)

        grad_x1 = emulated.ghost_features_backward(grad, num_ghost, offsets)
        loads, stores = traffic(emulated, grad)
        assert emulated.launches() == 1 and stores.eq(0).all() and loads.le(1).all()
        assert loads[:, :c_intrinsic].eq(1).all()  # (the ghosts' interior is read, the border is not)
        assert uniform(emulated, grad_x1) == ([0], [1])

        grad_x1, _ = emulated.ghost_features_train_backward(grad, x1, num_ghost, selection, 2)
        assert emulated.launches() == 1
        if layout == 'nchw':  # (channels_last tensors are converted to NCHW around this kernel)
            assert uniform(emulated, grad) == ([1], [0]) and uniform(emulated, x1) == ([1], [0])
            assert uniform(emulated, grad_x1) == ([0], [1])
    finally:
        emulated.configure(3, False)


@pytest.mark.parametrize('wave', [16, 64])
def test_emulated_train_backward_splits_planes_into_row_segments(emulated, wave):
    """Few planes, many blocks: each plane's rows are split over blocks, each reading max_shift
    rows beside its segment once more; the result is the same."""
    x1 = random((1, 2, 40, 16), torch.float32, 'nchw', 'cpu', seed=15)
    grad = random((1, 4, 40, 16), torch.float32, 'nchw', 'cpu', seed=16)
    selection = F.one_hot(torch.tensor([2, 6]), 9).float()
    emulated.configure(wave, False)
    try:
        grad_x1, got = emulated.ghost_features_train_backward(grad, x1, 2, selection, 1)
        loads, _ = traffic(emulated, x1)
    finally:
        emulated.configure(3, False)
    segments = min(wave // 2, 40)
    rows = loads[0, 0].amax(1)
    assert rows.le(2).all() and rows.eq(2).sum() <= 2 * (segments - 1)
    assert_same(grad_x1, reference.ghost_features_train_backward(grad, 2, selection, 1), grad)
    exact = reference.selection_grad(grad.double(), x1.double(), 2, 1)
    assert_close_to_exact(got, exact, torch.float32, (grad.abs().sum() * x1.abs().max()).item())


# --- the public ops on a GPU --------------------------------------------------------------------


@needs_gpu
def test_public_ops_run_the_kernels_on_cuda(cuda_kernels, recwarn):
    assert extension.loaded() and extension.status()[0]
    x1 = torch.randn(2, 4, 6, 7, device='cuda')
    offsets = torch.tensor([[1, -1]], device='cuda')
    assert torch.equal(ops.ghost_features(x1, 4, offsets), reference.ghost_features(x1, 4, offsets))
    assert not [w for w in recwarn if 'ghostsr_plugin' in str(w.message)]


@needs_gpu
def test_gradcheck_on_cuda(cuda_kernels):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, device='cuda', requires_grad=True)
    for offset in [(1, -1), (0, 2), (-2, 0), (3, 3)]:
        assert torch.autograd.gradcheck(lambda t, o=offset: ops.shift(t, o), (x,))
    offsets = torch.tensor([[1, -1], [0, 2], [-1, 0]], device='cuda')
    assert torch.autograd.gradcheck(lambda t: ops.ghost_features(t, 3, offsets), (x,))
    assert torch.autograd.gradgradcheck(lambda t: ops.ghost_features(t, 3, offsets), (x,))
    selection = torch.randn(3, 9, dtype=torch.float64, device='cuda', requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s: ops.ghost_features_train(a, 6, s, 1), (x, selection))


@needs_gpu
def test_opcheck_on_cuda(cuda_kernels):
    from tests.test_ops_library import opcheck_samples

    for op, args in opcheck_samples('cuda'):
        torch.library.opcheck(op, args)


@needs_gpu
def test_ghost_layer_never_syncs_with_the_host_on_gpu(cuda_kernels):
    from ghostsr_plugin.archs import GhostConv2d

    layer = GhostConv2d(8, 8, orientation_groups=2).cuda()
    x = torch.randn(2, 8, 12, 12, device='cuda', requires_grad=True)
    layer(x).sum().backward()  # warm-up: loads the kernels
    torch.cuda.set_sync_debug_mode('error')
    try:
        layer(x).sum().backward()
        layer.eval()
        layer(x)
    finally:
        torch.cuda.set_sync_debug_mode('default')


@contextlib.contextmanager
def reference_on_cuda():
    """Within this block the ops' CUDA kernels are the reference (torch.library's own override)."""
    with torch.library._scoped_library('ghostsr', 'IMPL') as lib, warnings.catch_warnings():
        warnings.simplefilter('ignore')  # ("overriding a previously registered kernel")
        for name, kernel in library.REFERENCE_KERNELS.items():
            lib.impl(name, kernel, 'CUDA')
        yield


def run_edsr(model, x, seed):
    torch.manual_seed(seed)  # the same Gumbel noise for both paths
    out = model(x)
    out.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    return out.detach(), grads


@needs_gpu
@pytest.mark.parametrize('channels_last', [False, True])
def test_ghost_edsr_equals_its_reference_path_on_gpu(cuda_kernels, channels_last, monkeypatch):
    from ghostsr_plugin.archs.ghost_edsr_arch import GhostEDSR

    monkeypatch.setattr(torch.backends.cudnn, 'deterministic', True)
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)
    torch.manual_seed(0)
    model = GhostEDSR(3, 3, num_feat=16, num_block=3, upscale=2, orientation_groups=2).cuda()
    x = torch.rand(2, 3, 17, 23, device='cuda')
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    for mode in ('train', 'eval'):
        model.train(mode == 'train')
        out, grads = run_edsr(model, x, seed=1)
        with reference_on_cuda():
            want, want_grads = run_edsr(model, x, seed=1)
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
        for got, expected in zip(grads, want_grads):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
