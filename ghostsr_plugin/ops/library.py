"""The ghost-feature ops, registered with ``torch.library`` as ``torch.ops.ghostsr.*``.

One Python API for every device. The pure-PyTorch reference (:mod:`.reference`) is the CPU
kernel; the fused kernels of ``csrc/ghost_ops.cu`` are the CUDA kernel (the reference
wherever they cannot be had, see :mod:`.extension`). Fake kernels let ``torch.compile`` and
``torch.export`` trace through the ops, ``register_autograd`` gives their gradients, and
``torch.utils.flop_counter`` counts them as zero FLOPs: a shift moves data, it computes
nothing. On CUDA no op reads a tensor back to the host, so the Ghost layer never syncs.
"""
import contextlib

import torch

from . import extension, reference

_reference_on_cuda = False


@contextlib.contextmanager
def reference_kernels():
    """Within this block, run the pure-PyTorch reference on CUDA too (comparisons, benchmarks)."""
    global _reference_on_cuda
    saved, _reference_on_cuda = _reference_on_cuda, True
    try:
        yield
    finally:
        _reference_on_cuda = saved


def _define(name, schema, reference_fn, fake_fn):
    """``ghostsr::name``: ``reference_fn`` on every device, but the compiled kernel on CUDA."""
    op = torch.library.custom_op(f'ghostsr::{name}', reference_fn, mutates_args=(), schema=schema)

    def cuda_kernel(*args):
        if _reference_on_cuda or not extension.load():
            return reference_fn(*args)
        return getattr(torch.ops.ghostsr_cuda, name)(*args)

    op.register_kernel('cuda', cuda_kernel)
    op.register_fake(fake_fn)
    return op


def _empty_like(t, channels):
    """Fake output (N, channels, H, W) laid out as the kernels lay it out for input ``t``."""
    shape = (t.shape[0], channels, t.shape[2], t.shape[3])
    return torch.empty(shape, dtype=t.dtype, device=t.device, memory_format=reference.memory_format(t))


_shift = _define(
    'shift', '(Tensor x, int[] offset) -> Tensor', reference.shift,
    lambda x, offset: torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=reference.memory_format(x)))
_ghost_features = _define(
    'ghost_features', '(Tensor x1, int num_ghost, Tensor offsets) -> Tensor', reference.ghost_features,
    lambda x1, num_ghost, offsets: _empty_like(x1, x1.shape[1] + num_ghost))
_ghost_features_backward = _define(
    'ghost_features_backward', '(Tensor grad_out, int num_ghost, Tensor offsets) -> Tensor',
    reference.ghost_features_backward,
    lambda grad_out, num_ghost, offsets: _empty_like(grad_out, grad_out.shape[1] - num_ghost))
_ghost_features_train = _define(
    'ghost_features_train', '(Tensor x1, int num_ghost, Tensor selection, int max_shift) -> Tensor',
    reference.ghost_features_train_forward,
    lambda x1, num_ghost, selection, max_shift: _empty_like(x1, x1.shape[1] + num_ghost))
_ghost_features_train_backward = _define(
    'ghost_features_train_backward', '(Tensor grad_out, int num_ghost, Tensor selection, int max_shift) -> Tensor',
    reference.ghost_features_train_backward,
    lambda grad_out, num_ghost, selection, max_shift: _empty_like(grad_out, grad_out.shape[1] - num_ghost))
_selection_grad = _define(
    'selection_grad', '(Tensor grad_out, Tensor x1, int num_groups, int max_shift) -> Tensor',
    reference.selection_grad,
    lambda grad_out, x1, num_groups, max_shift: x1.new_empty(
        (num_groups, (2 * max_shift + 1)**2), dtype=reference.opmath_dtype(x1.dtype)))


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
    grad_x1 = grad_selection = None
    if ctx.needs_input_grad[0]:
        grad_x1 = _ghost_features_train_backward(grad, ctx.num_ghost, selection, ctx.max_shift)
    if ctx.needs_input_grad[2]:
        grad_selection = _selection_grad(grad, x1, selection.shape[0], ctx.max_shift).to(selection.dtype)
    return grad_x1, None, grad_selection, None


_ghost_features_train.register_autograd(_train_backward, setup_context=_save_train_args)


def _check_groups(num_ghost, groups, what):
    if groups < 1 or num_ghost % groups:
        raise ValueError(f'{what}: {num_ghost} ghost channels cannot be split into {groups} orientation groups')


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
    _check_groups(num_ghost, offsets.shape[0], 'ghost_features')
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
    if selection.dim() != 2 or selection.shape[1] != (2 * max_shift + 1)**2:
        raise ValueError(f'ghost_features_train: selection must be (G, {(2 * max_shift + 1)**2}) for '
                         f'max_shift={max_shift}, got shape {tuple(selection.shape)}')
    _check_groups(num_ghost, selection.shape[0], 'ghost_features_train')
    return _ghost_features_train(x1, num_ghost, selection, max_shift)
