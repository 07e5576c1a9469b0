"""The ghost-feature ops: one schema each, ``torch.ops.ghostsr.*``, and every kernel of it.

Each op is defined once here (``torch.library.custom_op``), the way torchvision.ops does it:
the pure-PyTorch reference (:mod:`.reference`) is its kernel on the CPU (and any device but
CUDA); its CUDA kernel runs the compiled kernels of ``csrc/ghost_ops.cu``, which
:mod:`.extension` loads on the first CUDA call (the reference where they are unavailable). The
compiled kernels register under the same schemas in the namespace ``ghostsr_kernels``, which only
the CUDA kernels here call: every op's arguments are checked here first, in Python, from their
sizes, dtypes and devices alone, so a bad argument is a one-line ``ValueError`` on every device
and never reaches compiled code (whose own checks stay as a second line). Fake kernels let
``torch.compile`` and ``torch.export`` trace through the ops, ``register_autograd`` gives their
gradients, and ``torch.utils.flop_counter`` counts them as zero FLOPs: a shift moves data, it
computes nothing. On CUDA no op reads a tensor back to the host, so the Ghost layer never syncs.
To run the reference on CUDA (comparisons, benchmarks), call the functions of :mod:`.reference`.
"""
import torch

from . import extension, reference

MAX_GROUPS = 2048  # orientation groups per op (the kernels keep their offsets in shared memory)
MAX_SHIFT = 1000
MAX_IMAGE = 2**31 - 1  # elements of one image the kernels index (and sides up to 2^29)
MAX_SIDE = 2**29


def compiled(name):
    """The compiled CUDA kernel of op ``name`` (``torch.ops.ghostsr_kernels.name``)."""
    return getattr(torch.ops.ghostsr_kernels, name)


def checked(name, kernel):
    """``kernel`` after op ``name``'s argument checks."""
    check = CHECKS[name]

    def checked_kernel(*args):
        check(*args)
        return kernel(*args)

    return checked_kernel


def cuda_kernel(name):
    """Op ``name``'s CUDA kernel: its checks, then the compiled kernel (loaded on the first call)
    or, where it cannot be (one warning said why), the reference."""
    reference_fn = REFERENCE_KERNELS[name]

    def run(*args):
        return compiled(name)(*args) if extension.load() else reference_fn(*args)

    return checked(name, run)


def _define(name, fake_fn):
    """``ghostsr::name``: its schema, the checked reference and CUDA kernels, the checked fake kernel."""
    op = torch.library.custom_op(f'ghostsr::{name}', checked(name, REFERENCE_KERNELS[name]), mutates_args=(),
                                 schema=SCHEMAS[name])
    op.register_kernel('cuda', cuda_kernel(name))
    op.register_fake(checked(name, fake_fn))
    return op


# --- argument checks: sizes, dtypes and devices only (nothing is read from a tensor) -----------------


def _fail(op, message):
    raise ValueError(f'ghostsr::{op}: {message}')


def _check_floating(op, what, t):
    if not t.is_floating_point():
        _fail(op, f'{what} must be a floating-point tensor, got {t.dtype}')


def _check_same_device(op, what, t, like):
    if t.device != like.device:
        _fail(op, f'{what} must be on {like.device}, got {t.device}')


def _check_extent(op, channels, height, width):
    if not all(isinstance(v, int) for v in (channels, height, width)):
        return  # (symbolic sizes while tracing: checked when the op runs)
    if height > MAX_SIDE or width > MAX_SIDE or channels * height * width > MAX_IMAGE:
        _fail(op, f'an image of {channels} x {height} x {width} is more than these kernels index (2^31 - 1 '
                  'elements, sides up to 2^29); split it into tiles')


def _check_4d(op, what, t):
    _check_floating(op, what, t)
    if t.dim() != 4:
        _fail(op, f'{what} must be (N, C, H, W), got shape {tuple(t.shape)}')


def _check_groups(op, src_channels, num_ghost, groups, height, width):
    if num_ghost < 0:
        _fail(op, f'num_ghost must be >= 0, got {num_ghost}')
    if groups < 1 or num_ghost % groups:
        _fail(op, f'{num_ghost} ghost channels cannot be split into {groups} orientation groups')
    if groups > MAX_GROUPS:
        _fail(op, f'at most {MAX_GROUPS} orientation groups, got {groups}')
    if num_ghost and src_channels < 1:
        _fail(op, 'ghosts need at least one intrinsic channel')
    _check_extent(op, src_channels + num_ghost, height, width)


def _check_offsets(op, offsets, like):
    """The number of orientation groups of ``offsets``, a (G, 2) integer tensor on ``like``'s device."""
    _check_same_device(op, 'offsets', offsets, like)
    if offsets.dim() != 2 or offsets.shape[1] != 2 or offsets.shape[0] < 1:
        _fail(op, f'offsets must be (G, 2) integer (dy, dx) pairs, got shape {tuple(offsets.shape)}')
    if offsets.is_floating_point() or offsets.is_complex() or offsets.dtype == torch.bool:
        _fail(op, f'offsets must be integer, got {offsets.dtype}')
    return offsets.shape[0]


def _check_selection(op, selection, max_shift, like):
    """The number of orientation groups of ``selection``, (G, (2 max_shift + 1)^2) floating point."""
    if not 0 <= max_shift <= MAX_SHIFT:
        _fail(op, f'max_shift must be in [0, {MAX_SHIFT}], got {max_shift}')
    _check_same_device(op, 'selection', selection, like)
    k = (2 * max_shift + 1)**2
    if selection.dim() != 2 or selection.shape[0] < 1 or selection.shape[1] != k:
        _fail(op, f'selection must be (G, {k}) for max_shift={max_shift}, got shape {tuple(selection.shape)}')
    if not selection.is_floating_point():
        _fail(op, f'selection must be floating point, got {selection.dtype}')
    return selection.shape[0]


def _check_shift(x, offset):
    _check_floating('shift', 'x', x)
    if x.dim() < 2:
        _fail('shift', f'x must be (..., H, W), got {x.dim()} dimensions')
    if len(offset) != 2:
        _fail('shift', f'offset must be (dy, dx), got {len(offset)} values')
    channels = x.shape[1] if reference.memory_format(x) == torch.channels_last else 1
    _check_extent('shift', channels, x.shape[-2], x.shape[-1])


def _check_ghost_features(x1, num_ghost, offsets):
    _check_4d('ghost_features', 'x1', x1)
    groups = _check_offsets('ghost_features', offsets, x1)
    _check_groups('ghost_features', x1.shape[1], num_ghost, groups, *x1.shape[2:])


def _check_ghost_grad(op, grad_out, num_ghost):
    _check_floating(op, 'grad_out', grad_out)
    if grad_out.dim() != 4 or num_ghost < 0 or grad_out.shape[1] < num_ghost:
        _fail(op, f'grad_out must be (N, C + num_ghost, H, W), got shape {tuple(grad_out.shape)} with '
                  f'num_ghost = {num_ghost}')


def _check_ghost_features_backward(grad_out, num_ghost, offsets):
    op = 'ghost_features_backward'
    _check_ghost_grad(op, grad_out, num_ghost)
    groups = _check_offsets(op, offsets, grad_out)
    _check_groups(op, grad_out.shape[1] - num_ghost, num_ghost, groups, *grad_out.shape[2:])


def _check_ghost_features_train(x1, num_ghost, selection, max_shift):
    _check_4d('ghost_features_train', 'x1', x1)
    groups = _check_selection('ghost_features_train', selection, max_shift, x1)
    _check_groups('ghost_features_train', x1.shape[1], num_ghost, groups, *x1.shape[2:])


def _check_ghost_features_train_backward(grad_out, x1, num_ghost, selection, max_shift):
    op = 'ghost_features_train_backward'
    _check_ghost_grad(op, grad_out, num_ghost)
    _check_4d(op, 'x1', x1)
    _check_same_device(op, 'grad_out', grad_out, x1)
    n, c, h, w = x1.shape
    if tuple(grad_out.shape) != (n, c + num_ghost, h, w):
        _fail(op, f'grad_out must be (N, C + num_ghost, H, W) for x1 (N, C, H, W), got {tuple(grad_out.shape)} '
                  f'and {tuple(x1.shape)} with num_ghost = {num_ghost}')
    if grad_out.dtype != x1.dtype:
        _fail(op, f'grad_out is {grad_out.dtype} but x1 is {x1.dtype}')
    groups = _check_selection(op, selection, max_shift, x1)
    _check_groups(op, c, num_ghost, groups, h, w)


def _empty_like(t, channels):
    """Fake output (N, channels, H, W) laid out as the kernels lay it out for input ``t``."""
    shape = (t.shape[0], channels, t.shape[2], t.shape[3])
    return torch.empty(shape, dtype=t.dtype, device=t.device, memory_format=reference.memory_format(t))


def _train_backward_reference(grad_out, x1, num_ghost, selection, max_shift):
    return (reference.ghost_features_train_backward(grad_out, num_ghost, selection, max_shift),
            reference.selection_grad(grad_out, x1, selection.shape[0], max_shift))


# the reference kernel of each op, by name
REFERENCE_KERNELS = {
    'shift': reference.shift,
    'ghost_features': reference.ghost_features,
    'ghost_features_backward': reference.ghost_features_backward,
    'ghost_features_train': reference.ghost_features_train_forward,
    'ghost_features_train_backward': _train_backward_reference,
}
CHECKS = {
    'shift': _check_shift,
    'ghost_features': _check_ghost_features,
    'ghost_features_backward': _check_ghost_features_backward,
    'ghost_features_train': _check_ghost_features_train,
    'ghost_features_train_backward': _check_ghost_features_train_backward,
}
SCHEMAS = {
    'shift': '(Tensor x, int[] offset) -> Tensor',
    'ghost_features': '(Tensor x1, int num_ghost, Tensor offsets) -> Tensor',
    'ghost_features_backward': '(Tensor grad_out, int num_ghost, Tensor offsets) -> Tensor',
    'ghost_features_train': '(Tensor x1, int num_ghost, Tensor selection, int max_shift) -> Tensor',
    # the input gradient and the selection's, in one pass
    'ghost_features_train_backward':
        '(Tensor grad_out, Tensor x1, int num_ghost, Tensor selection, int max_shift) -> (Tensor, Tensor)',
}
# the compiled kernels' schemas: the same, in their own namespace (csrc/ghost_ops.cu implements them)
_COMPILED = torch.library.Library('ghostsr_kernels', 'DEF')  # (kept alive: it owns the definitions)
for _name, _schema in SCHEMAS.items():
    _COMPILED.define(f'{_name}{_schema}')
_shift = _define(
    'shift',
    lambda x, offset: torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=reference.memory_format(x)))
_ghost_features = _define(
    'ghost_features',
    lambda x1, num_ghost, offsets: _empty_like(x1, x1.shape[1] + num_ghost))
_ghost_features_backward = _define(
    'ghost_features_backward',
    lambda grad_out, num_ghost, offsets: _empty_like(grad_out, grad_out.shape[1] - num_ghost))
_ghost_features_train = _define(
    'ghost_features_train',
    lambda x1, num_ghost, selection, max_shift: _empty_like(x1, x1.shape[1] + num_ghost))
_ghost_features_train_backward = _define(
    'ghost_features_train_backward',
    lambda grad_out, x1, num_ghost, selection, max_shift: (
        _empty_like(grad_out, x1.shape[1]),
        x1.new_empty((selection.shape[0], (2 * max_shift + 1)**2), dtype=reference.opmath_dtype(x1.dtype))))


def _save_offset(ctx, inputs, output):
    ctx.offset = inputs[1]


_shift.register_autograd(lambda ctx, grad: (_shift(grad, [-v for v in ctx.offset]), None), setup_context=_save_offset)


def _save_ghost_args(ctx, inputs, output):
    _, ctx.num_ghost, offsets = inputs
    ctx.save_for_backward(offsets)


# ghost_features and its backward are each other's adjoint, so both are twice differentiable.
_ghost_features.register_autograd(
    lambda ctx, grad: (_ghost_features_backward(grad, ctx.num_ghost, *ctx.saved_tensors), None, None),
    setup_context=_save_ghost_args)
_ghost_features_backward.register_autograd(
    lambda ctx, grad: (_ghost_features(grad, ctx.num_ghost, *ctx.saved_tensors), None, None),
    setup_context=_save_ghost_args)


def _save_train_args(ctx, inputs, output):
    x1, ctx.num_ghost, selection, ctx.max_shift = inputs
    ctx.save_for_backward(x1, selection)


def _train_backward(ctx, grad):
    x1, selection = ctx.saved_tensors
    grad_x1, grad_selection = _ghost_features_train_backward(grad, x1, ctx.num_ghost, selection, ctx.max_shift)
    return grad_x1, None, grad_selection.to(selection.dtype), None


_ghost_features_train.register_autograd(_train_backward, setup_context=_save_train_args)


def shift(x, offset):
    """Shift ``x`` (..., H, W) by the integer pair ``offset = (dy, dx)`` with zero fill.

    ``out[..., i, j] = x[..., i - dy, j - dx]`` inside the image, 0 elsewhere;
    differentiable in ``x`` (its gradient is the opposite shift).
    """
    return _shift(x, [int(offset[0]), int(offset[1])])


def ghost_features(x1, num_ghost, offsets):
    """Whole Ghost layer output ``concat(x1, shift(ghost_source(x1), offset_g))`` in one op.

    ``offsets``: integer (dy, dx) per orientation group, shape (G, 2) (a device tensor
    keeps CUDA free of host syncs); ghost channels are split into G equal consecutive
    groups, each shifted by its own offset.
    """
    offsets = torch.as_tensor(offsets, device=x1.device).reshape(-1, 2).long()
    return _ghost_features(x1, num_ghost, offsets)


def ghost_features_train(x1, num_ghost, selection, max_shift):
    """Training-time Ghost layer output; ``selection`` (G, (2d+1)^2) carries the gradient.

    Computes ``sum_k selection[g, k] * shift(src_g, offset_k)`` over the nonzero entries, so
    the Ghost layer's straight-through one-hot costs one shift; the gradient of
    ``selection[g, k]`` is the correlation of the upstream gradient with the source shifted
    by ``offset_k`` (what the official code's depthwise conv with that one-hot kernel gives).
    With ``selection`` a one-hot for offset ``k`` this equals
    ``ghost_features(x1, num_ghost, offset_table(max_shift)[k])``.
    """
    return _ghost_features_train(x1, num_ghost, selection, max_shift)
