"""The ghost-feature ops: one schema each, ``torch.ops.ghostsr.*``, and every kernel of it.

Each op is defined once here (``torch.library.custom_op``), the way torchvision.ops does it:
the pure-PyTorch reference (:mod:`.reference`) is its default kernel (CPU, and CUDA until the
compiled kernels are loaded); ``csrc/ghost_ops.cu`` registers the fused CUDA kernels against
the same schema (``TORCH_LIBRARY_IMPL(ghostsr, CUDA)``) when :mod:`.extension` loads it, on the
first CUDA call. Fake kernels let ``torch.compile`` and ``torch.export`` trace through the ops,
``register_autograd`` gives their gradients, and ``torch.utils.flop_counter`` counts them as
zero FLOPs: a shift moves data, it computes nothing. On CUDA no op reads a tensor back to the
host, so the Ghost layer never syncs. To run the reference on CUDA (comparisons, benchmarks),
call the functions of :mod:`.reference` themselves.
"""
import torch

from . import extension, reference


def _define(name, fake_fn):
    """``ghostsr::name``: its schema, its reference as default kernel, and ``fake_fn`` as its fake one."""
    reference_fn = REFERENCE_KERNELS[name]

    def default_kernel(*args, **kwargs):
        # Reached on CUDA only while no compiled kernel is registered: the first call loads them
        # (after which CUDA calls go straight to them), or they are unavailable.
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if any(t.is_cuda for t in tensors) and extension.load():
            return op._opoverload(*args, **kwargs)
        return reference_fn(*args, **kwargs)

    op = torch.library.custom_op(f'ghostsr::{name}', default_kernel, mutates_args=(), schema=SCHEMAS[name])
    op.register_fake(fake_fn)
    return op


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
SCHEMAS = {
    'shift': '(Tensor x, int[] offset) -> Tensor',
    'ghost_features': '(Tensor x1, int num_ghost, Tensor offsets) -> Tensor',
    'ghost_features_backward': '(Tensor grad_out, int num_ghost, Tensor offsets) -> Tensor',
    'ghost_features_train': '(Tensor x1, int num_ghost, Tensor selection, int max_shift) -> Tensor',
    # the input gradient and the selection's, in one pass
    'ghost_features_train_backward':
        '(Tensor grad_out, Tensor x1, int num_ghost, Tensor selection, int max_shift) -> (Tensor, Tensor)',
}
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
