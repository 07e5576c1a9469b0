"""The fused CUDA kernels (ghostsr_plugin/ops/csrc/ghost_ops.cu) against the pure-PyTorch reference.

Each kernel check runs on two backends:
- 'emulated': the kernels' own block code run thread by thread on the CPU
  (tests/csrc/emulated_ghost_ops.cu), which also counts every global load and store. Building
  it compiles the real CUDA sources against the installed torch (for sm_90, H100/H200), so
  this is also the CI build test; it needs nvcc (CUDA_HOME) and skips with the reason without
  it. The build is cached (a few minutes once).
- 'cuda': the compiled kernels on a GPU (torch.ops.ghostsr on CUDA tensors); skipped where
  none is visible.
On the GPU the checks call the public ops (torch.ops.ghostsr: arguments checked in Python, then
the compiled kernels); the emulation calls the kernels' C++ entry points (their own checks).
Then the memory traffic of each kernel, counted by the emulation, against what the design says
(every output element written once; each input read once, or a bounded few times where shifted
windows of neighbouring threads overlap, which the caches absorb). The tests at the end need a
GPU: the public ops' CUDA path (gradcheck, opcheck, no host sync) and GhostEDSR equal to its
reference path. Run the GPU tests so that a crash cannot hide the rest (pytest-xdist replaces a
crashed worker and reports its test failed):
  python -m pytest -n 2 -p no:cacheprovider -k '(cuda or gpu) and not emulat' \
      tests/test_cuda_kernels.py tests/test_ops_library.py
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
# strided: every other column; unaligned: contiguous from one element past a 16-byte boundary
LAYOUTS = ['nchw', 'channels_last', 'strided', 'unaligned', 'unaligned_channels_last']
# (N, (H, W)): 1 x 1, odd, even, thin, and rows of whole 16-byte vectors and a tail in every dtype
CASES = [(1, (1, 1)), (3, (5, 7)), (1, (6, 4)), (3, (2, 9)), (1, (3, 19))]
OFFSETS = list(itertools.product(range(-2, 3), repeat=2)) + [(7, 0), (0, -9), (1000, -1000)]
# (c_intrinsic, num_ghost, orientation groups): lambda 0.5, grouped, reused sources, one ghost, none,
# and channel vectors of 16 bytes (float32: 4, half: 8 channels) within one group, or spanning two
GHOST_CONFIGS = [(4, 4, 1), (4, 2, 2), (2, 6, 3), (3, 1, 1), (3, 0, 1), (8, 8, 2), (16, 16, 2)]
DEFAULTS = (3, 2**31 - 1, 2048)  # the emulation's wave, items per launch and items per block
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(scope='session')
def emulated():
    if torch.version.cuda is None:
        pytest.skip('torch is a CPU-only build: no CUDA headers and libraries to compile the kernels against')
    if extension.find_nvcc() is None:
        pytest.skip('nvcc not found: set CUDA_HOME to a CUDA toolkit to compile the kernels')
    extension.build('9.0', name='ghostsr_emulated_ops', sources=[EMULATED_SOURCE])
    ns = torch.ops.ghostsr_emulated
    ns.configure(*DEFAULTS)
    return ns


@contextlib.contextmanager
def configured(ns, wave=DEFAULTS[0], max_items=DEFAULTS[1], block_work=DEFAULTS[2]):
    """The emulation with another grid, launch size or block size, within the block."""
    ns.configure(wave, max_items, block_work)
    try:
        yield
    finally:
        ns.configure(*DEFAULTS)


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
    """``t`` on ``device`` as contiguous NCHW, channels_last, strided (neither: every other column),
    or either layout starting one element past a 16-byte boundary."""
    t = t.to(device)
    if layout == 'strided':
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=device)
        wide[..., ::2] = t
        return wide[..., ::2]
    channels_last = layout.endswith('channels_last') and t.dim() == 4
    t = t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()
    if layout.startswith('unaligned'):
        storage = torch.empty(t.numel() + 16, dtype=t.dtype, device=device)
        skip = next(i for i in range(1, 17) if (storage.data_ptr() + i * t.element_size()) % 16)
        shifted = storage[skip:skip + t.numel()].as_strided(t.shape, t.stride())
        shifted.copy_(t)
        return shifted
    return t


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
@pytest.mark.parametrize('wave,block_work', [(1, 2048), (7, 64), (64, 16)])
def test_emulated_train_backward_over_many_blocks(emulated, layout, max_shift, wave, block_work):
    """Planes of 1,200 elements over 1 to 64 blocks, in bands of rows (NCHW) or chunks of pixels
    (NHWC) down to one row or a few pixels: a group's selection sum split over planes, bands,
    blocks and block sums (and, max_shift 4, over nine passes of nine orientations)."""
    x1 = random((2, 8, 40, 30), torch.float32, layout, 'cpu', seed=11)
    grad = random((2, 16, 40, 30), torch.float32, layout, 'cpu', seed=12)
    k = (2 * max_shift + 1)**2
    selection = F.one_hot(torch.tensor([3, k - 2]), k).float()
    with configured(emulated, wave=wave, block_work=block_work):
        grad_x1, got = emulated.ghost_features_train_backward(grad, x1, 8, selection, max_shift)
    assert_same(grad_x1, reference.ghost_features_train_backward(grad, 8, selection, max_shift), grad)
    exact = reference.selection_grad(grad.double(), x1.double(), 2, max_shift)
    scale = (grad.double().abs().sum() * x1.double().abs().max()).item()
    assert_close_to_exact(got, exact, torch.float32, scale)


@pytest.mark.parametrize('layout', ['nchw', 'channels_last'])
def test_emulated_kernels_split_what_one_launch_cannot_index(emulated, layout):
    """Tensors of more items than one launch indexes (2^31 on a GPU; here a few) run as several
    launches of whole images, with the same results."""
    x1 = random((3, 8, 5, 12), torch.float16, layout, 'cpu', seed=17)
    grad = random((3, 16, 5, 12), torch.float16, layout, 'cpu', seed=18)
    offsets = group_offsets(2, (1, -1))
    selection = F.one_hot(torch.tensor([1, 5]), 9).float()
    with configured(emulated, max_items=7):
        outs = [emulated.ghost_features(x1, 8, offsets), emulated.ghost_features_backward(grad, 8, offsets),
                emulated.ghost_features_train(x1, 8, selection, 1)]
        grad_x1, got = emulated.ghost_features_train_backward(grad, x1, 8, selection, 1)
        assert emulated.launches() == 3  # (one image a launch)
    assert_same(outs[0], reference.ghost_features(x1, 8, offsets), x1)
    assert_same(outs[1], reference.ghost_features_backward(grad, 8, offsets), grad)
    assert_same(outs[2], reference.ghost_features_train_forward(x1, 8, selection, 1), x1)
    assert_same(grad_x1, reference.ghost_features_train_backward(grad, 8, selection, 1), grad)
    exact = reference.selection_grad(grad.double(), x1.double(), 2, 1)
    assert_close_to_exact(got, exact, torch.float32, (grad.double().abs().sum() * x1.double().abs().max()).item())


@pytest.mark.parametrize('selection_dtype', [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=str)
def test_learned_shift_selection_of_another_dtype(kernels, dtype, selection_dtype):
    """A float32 selection with half inputs (autocast keeps the Gumbel selection float32), or any
    other floating dtype: the same results as the reference with that selection."""
    ns, device = kernels
    for layout in ['nchw', 'channels_last']:
        x1 = random((2, 16, 5, 18), dtype, layout, device, seed=19)
        grad = random((2, 32, 5, 18), dtype, layout, device, seed=20)
        for selection in one_hots(2, 9, 4, selection_dtype):
            on_device = selection.to(device)
            assert_same(ns.ghost_features_train(x1, 16, on_device, 1),
                        reference.ghost_features_train_forward(x1.cpu(), 16, selection, 1), x1)
            grad_x1, got = ns.ghost_features_train_backward(grad, x1, 16, on_device, 1)
            assert_same(grad_x1, reference.ghost_features_train_backward(grad.cpu(), 16, selection, 1), grad)
            assert got.dtype == torch.float32
            exact = reference.selection_grad(grad.cpu().double(), x1.cpu().double(), 2, 1)
            scale = (grad.cpu().double().abs().sum() * x1.cpu().double().abs().max()).item()
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
    """Emulated: the kernels' own checks (the second line); cuda: the public ops' Python checks.
    Either way a ValueError naming the mistake, read from sizes, dtypes and devices alone."""
    from tests.test_ops_library import bad_argument_cases

    ns, device = kernels
    for _, call, pattern in bad_argument_cases(device):
        with pytest.raises(ValueError, match=pattern):
            call(ns)
    if device.type == 'cuda':
        with pytest.raises(ValueError, match='offsets must be on cuda'):
            ns.ghost_features(torch.zeros(1, 4, 5, 5, device=device), 4, torch.zeros(1, 2, dtype=torch.long))


# --- memory traffic, counted by the emulation ----------------------------------------------------


def per_element(counts, t):
    """Counts in ``t``'s memory order as (N, C, H, W) in logical order."""
    if reference.memory_format(t) == torch.channels_last:
        n, c, h, w = t.shape
        return counts.view(n, h, w, c).permute(0, 3, 1, 2)
    return counts.view(t.shape)


def traffic(ns, t):
    """(loads, stores, 16-byte loads, 16-byte stores) of each element of ``t`` by the last op call,
    as (N, C, H, W)."""
    return tuple(per_element(counts, t) for counts in ns.traffic(t))


# (c_intrinsic, num_ghost, groups): lambda 0.5 (16-byte vectors in both layouts and dtypes), 0.25
# (three ghosts a source: per-element channels_last), one ghost of three sources
TRAFFIC_CONFIGS = [(8, 8, 2), (2, 6, 3), (3, 1, 1)]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize('layout', ['nchw', 'channels_last'])
@pytest.mark.parametrize('c_intrinsic,num_ghost,groups', TRAFFIC_CONFIGS)
def test_emulated_kernels_move_each_element_as_designed(emulated, layout, dtype, c_intrinsic, num_ghost, groups):
    """One launch per op (the training backward: one, or two with several ghosts a source); every
    output element written exactly once. Reads: what a thread reads for itself, once (x1 in the
    forward, the copy's gradient in the backwards, x1 in the training backward); a ghost's input,
    gathered at the shifted place, at most twice per ghost (NCHW: the two 16-byte loads around a
    window that neighbouring threads share; NHWC: a whole pixel, once), never a ghost gradient the
    shift leaves out; in the training backward, each ghost gradient at most twice per orientation
    and once more for grad_x1 (the caches absorb these: device memory sees each about once)."""
    x1 = random((2, c_intrinsic, 9, 16), dtype, layout, 'cpu', seed=13)  # rows of several vectors
    grad = random((2, c_intrinsic + num_ghost, 9, 16), dtype, layout, 'cpu', seed=14)
    offsets = group_offsets(groups, (1, -2))
    selection = F.one_hot(torch.arange(groups) * 5 % 9, 9).to(reference.opmath_dtype(dtype))
    per_source = torch.tensor([len(range(c, num_ghost, c_intrinsic)) for c in range(c_intrinsic)]).view(1, -1, 1, 1)
    gather = 1 if layout == 'channels_last' else 2

    out = emulated.ghost_features(x1, num_ghost, offsets)
    assert emulated.launches() == 1
    loads, *_ = traffic(emulated, x1)
    assert loads.ge(1).all() and loads.le(1 + gather * per_source).all()
    assert traffic(emulated, out)[1].eq(1).all() and traffic(emulated, out)[0].eq(0).all()
    assert_same(out, reference.ghost_features(x1, num_ghost, offsets), x1)

    out = emulated.ghost_features_train(x1, num_ghost, selection, 1)
    loads, *_ = traffic(emulated, x1)
    assert loads.ge(1).all() and loads.le(1 + gather * per_source).all() and traffic(emulated, out)[1].eq(1).all()
    assert_same(out, reference.ghost_features_train_forward(x1, num_ghost, selection, 1), x1)

    grad_x1 = emulated.ghost_features_backward(grad, num_ghost, offsets)
    loads, stores, *_ = traffic(emulated, grad)
    assert emulated.launches() == 1 and stores.eq(0).all()
    assert loads[:, :c_intrinsic].eq(1).all() and loads[:, c_intrinsic:].le(gather).all()
    if layout == 'channels_last':  # (NCHW: the 16-byte loads around a window may cover a few of them)
        left_out = reference.ghost_features(torch.ones(x1.shape), num_ghost, offsets)[:, c_intrinsic:] == 0
        assert loads[:, c_intrinsic:][left_out].eq(0).all()
    assert traffic(emulated, grad_x1)[1].eq(1).all()

    grad_x1, _ = emulated.ghost_features_train_backward(grad, x1, num_ghost, selection, 1)
    assert emulated.launches() == (1 if num_ghost <= c_intrinsic else 2)
    loads, stores, *_ = traffic(emulated, grad)
    assert stores.eq(0).all() and loads[:, :c_intrinsic].eq(1).all()
    assert loads[:, c_intrinsic:].le(9 * gather + 2).all()
    assert traffic(emulated, x1)[0].eq(per_source).all()  # (once per ghost made from it)
    assert traffic(emulated, grad_x1)[1].eq(1).all()
    if num_ghost <= c_intrinsic or dtype == torch.float32:
        assert_same(grad_x1, reference.ghost_features_train_backward(grad, num_ghost, selection, 1), grad)
    else:  # (several ghosts a source: the kernel rounds their sum once, the reference each add)
        exact = reference.ghost_features_train_backward(grad.double(), num_ghost, selection.double(), 1)
        assert_close_to_exact(grad_x1, exact, dtype, grad.abs().max().item() * 4)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize('layout', ['nchw', 'channels_last'])
def test_emulated_kernels_move_16_bytes_at_a_time(emulated, layout, dtype):
    """Aligned tensors whose rows (NCHW) or channels (NHWC) are whole 16-byte vectors: every output
    element is written by a 16-byte store, in every dtype; nearly every element read comes in a
    16-byte load (the rest: the columns a shifted NCHW window takes beyond an image edge, and the
    two neighbouring columns of the training backward's rows)."""
    x1 = random((2, 16, 6, 32), dtype, layout, 'cpu', seed=21)
    grad = random((2, 32, 6, 32), dtype, layout, 'cpu', seed=22)
    offsets = torch.tensor([[1, -1], [0, 2]])
    selection = F.one_hot(torch.tensor([2, 7]), 9).float()

    def vector_share(t):
        loads, _, vector_loads, _ = traffic(emulated, t)
        return vector_loads.sum().item() / loads.sum().item()

    def all_vector_stores(t):
        _, stores, _, vector_stores = traffic(emulated, t)
        return stores.eq(1).all() and vector_stores.eq(1).all()

    for run, source in ((lambda: emulated.ghost_features(x1, 16, offsets), x1),
                        (lambda: emulated.ghost_features_train(x1, 16, selection, 1), x1),
                        (lambda: emulated.ghost_features_backward(grad, 16, offsets), grad),
                        (lambda: emulated.shift(x1, [1, 1]), x1)):
        out = run()  # (the counts are the last call's)
        assert all_vector_stores(out) and vector_share(source) >= 0.75
    grad_x1, _ = emulated.ghost_features_train_backward(grad, x1, 16, selection, 1)
    assert all_vector_stores(grad_x1) and vector_share(grad) >= 0.75 and vector_share(x1) == 1


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
