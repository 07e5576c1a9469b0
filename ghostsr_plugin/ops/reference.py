"""The shift that makes ghost features, in pure PyTorch.

This is the reference implementation: the CPU kernel of the registered ops (see
``library.py``), the CUDA fallback, and what the fused CUDA kernels are tested against.
Convention: shifting by the integer offset ``(dy, dx)`` gives
``out[..., i, j] = x[..., i - dy, j - dx]`` where that index lies inside the image, and 0
elsewhere (zero fill).

Orientation index ``k`` of a layer with maximum shift ``d`` enumerates the
``(2d+1)^2`` offsets row-major: ``(dy, dx) = (k // (2d+1) - d, k % (2d+1) - d)``.

Outputs are channels_last exactly when the input is (4-D, channels_last and not also
contiguous), else contiguous: the rule :func:`memory_format` shares with the CUDA kernels.
"""
import torch


def offset_table(max_shift, device=None):
    """All offsets with ``|dy|, |dx| <= max_shift`` as a ``((2d+1)^2, 2)`` long tensor."""
    span = torch.arange(-max_shift, max_shift + 1, device=device)
    return torch.cartesian_prod(span, span)


def memory_format(x):
    """The memory format of an op's output for input ``x``: channels_last or contiguous."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def opmath_dtype(dtype):
    """The dtype sums run in: float64 for float64 inputs, else float32 (as CUDA's opmath)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _overlap(size, delta):
    """Slices ``(out, src)`` of one axis such that ``out[i] = src[i - delta]``, or None."""
    if abs(delta) >= size:
        return None
    return slice(max(delta, 0), size + min(delta, 0)), slice(max(-delta, 0), size - max(delta, 0))


def _overlaps(x, offset):
    """Per-axis slice pairs of a shift by ``offset`` over ``x``'s last two axes, or None."""
    rows, cols = _overlap(x.shape[-2], int(offset[0])), _overlap(x.shape[-1], int(offset[1]))
    return None if rows is None or cols is None else (rows, cols)


def shift(x, offset):
    """Shift ``x`` (..., H, W) by the integer pair ``offset = (dy, dx)`` with zero fill.

    Differentiable in ``x``; its gradient is the opposite shift.
    """
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=memory_format(x)).zero_()
    overlap = _overlaps(x, offset)
    if overlap is not None:
        (out_rows, src_rows), (out_cols, src_cols) = overlap
        out[..., out_rows, out_cols] = x[..., src_rows, src_cols]
    return out


def _correlate(grad, x, offset):
    """``sum(grad * shift(x, offset))`` without materializing the shift, in :func:`opmath_dtype`."""
    dtype = opmath_dtype(x.dtype)
    overlap = _overlaps(x, offset)
    if overlap is None:
        return grad.new_zeros((), dtype=dtype)
    (out_rows, src_rows), (out_cols, src_cols) = overlap
    return (grad[..., out_rows, out_cols].to(dtype) * x[..., src_rows, src_cols].to(dtype)).sum()


def ghost_source(x1, num_ghost):
    """The intrinsic channels each ghost channel copies: ``x1[:, c % c_intrinsic]``.

    With ``num_ghost <= c_intrinsic`` (lambda >= 0.5) that is the first ``num_ghost``
    channels; with fewer intrinsic channels they are reused in order.
    """
    c_intrinsic = x1.shape[1]
    if num_ghost <= c_intrinsic:
        return x1[:, :num_ghost]
    return x1.repeat(1, -(-num_ghost // c_intrinsic), 1, 1)[:, :num_ghost]


def _grouped(x, groups):
    """View (N, C, H, W) as (N, groups, C // groups, H, W)."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w)


def _concat(x1, ghosts):
    """``concat(x1, *ghosts)`` along channels, in ``x1``'s memory format."""
    return torch.cat([x1, *ghosts], dim=1).contiguous(memory_format=memory_format(x1))


def _scatter_to_sources(grad_out, num_ghost, grad_src):
    """Gradient of x1: its own upstream gradient plus each ghost's, added to its source channel."""
    c_intrinsic = grad_out.shape[1] - num_ghost
    grad_x1 = grad_out[:, :c_intrinsic].clone()
    source_channel = torch.arange(num_ghost, device=grad_out.device) % c_intrinsic
    grad_x1.index_add_(1, source_channel, grad_src.flatten(1, 2))
    return grad_x1.contiguous(memory_format=memory_format(grad_out))


def ghost_features(x1, num_ghost, offsets):
    """Whole Ghost layer output ``concat(x1, shift(ghost_source(x1), offset_g))``.

    ``offsets``: integer (dy, dx) per orientation group, shape (G, 2); ghost channels are
    split into G equal consecutive groups, each shifted by its own offset. Written straight
    into the output: one copy of ``x1``, one of each ghost's overlap, zeros only on the
    border the shift uncovers.
    """
    offsets = torch.as_tensor(offsets).reshape(-1, 2).tolist()
    n, c_intrinsic, h, w = x1.shape
    out = torch.empty((n, c_intrinsic + num_ghost, h, w), dtype=x1.dtype, device=x1.device,
                      memory_format=memory_format(x1))
    out[:, :c_intrinsic] = x1
    per_group = num_ghost // len(offsets)
    for g, offset in enumerate(offsets):
        start, end = g * per_group, (g + 1) * per_group
        while start < end:  # ghost channel c copies intrinsic channel c % c_intrinsic
            stop = min(end, (start // c_intrinsic + 1) * c_intrinsic)
            src = x1[:, start % c_intrinsic:start % c_intrinsic + stop - start]
            _shift_into(out[:, c_intrinsic + start:c_intrinsic + stop], src, offset)
            start = stop
    return out


def _shift_into(out, x, offset):
    """``out[:] = shift(x, offset)``, zero-filling only what the shift uncovers."""
    overlap = _overlaps(x, offset)
    if overlap is None:
        out.zero_()
        return
    (out_rows, src_rows), (out_cols, src_cols) = overlap
    out[..., out_rows, out_cols] = x[..., src_rows, src_cols]
    h, w = out.shape[-2:]
    for rows in (slice(0, out_rows.start), slice(out_rows.stop, h)):
        out[..., rows, :] = 0
    for cols in (slice(0, out_cols.start), slice(out_cols.stop, w)):
        out[..., out_rows, cols] = 0


def ghost_features_backward(grad_out, num_ghost, offsets):
    """Gradient of :func:`ghost_features` with respect to ``x1``, given ``grad_out``."""
    offsets = torch.as_tensor(offsets).reshape(-1, 2).tolist()
    grad_ghost = _grouped(grad_out[:, grad_out.shape[1] - num_ghost:], len(offsets))
    grad_src = torch.stack([shift(grad_ghost[:, g], (-dy, -dx)) for g, (dy, dx) in enumerate(offsets)], 1)
    return _scatter_to_sources(grad_out, num_ghost, grad_src)


def ghost_features_train_forward(x1, num_ghost, selection, max_shift):
    """Forward of ``ops.ghost_features_train`` (no autograd): the ghosts under ``selection``.

    ``sum_k selection[g, k] * shift(src_g, offset_k)`` over the nonzero entries only, so a
    (straight-through) one-hot selection costs one shift.
    """
    table = offset_table(max_shift).tolist()
    src = _grouped(ghost_source(x1, num_ghost), selection.shape[0])
    ghosts = []
    for g, weights in enumerate(selection.tolist()):
        ghost = src.new_zeros(src[:, g].shape)
        for k in (k for k, w in enumerate(weights) if w != 0):
            ghost += weights[k] * shift(src[:, g], table[k])
        ghosts.append(ghost)
    return _concat(x1, ghosts)


def ghost_features_train_backward(grad_out, num_ghost, selection, max_shift):
    """Gradient of ``ops.ghost_features_train`` with respect to ``x1``, given ``grad_out``."""
    table = offset_table(max_shift).tolist()
    grad_ghost = _grouped(grad_out[:, grad_out.shape[1] - num_ghost:], selection.shape[0])
    grad_src = torch.zeros_like(grad_ghost)
    for g, weights in enumerate(selection.tolist()):
        for k in (k for k, w in enumerate(weights) if w != 0):
            grad_src[:, g] += weights[k] * shift(grad_ghost[:, g], [-v for v in table[k]])
    return _scatter_to_sources(grad_out, num_ghost, grad_src)


def selection_grad(grad_out, x1, num_groups, max_shift):
    """Gradient of ``ops.ghost_features_train`` with respect to ``selection``, (G, (2d+1)^2).

    Entry (g, k) is the correlation of group g's upstream gradient with its sources shifted
    by ``offset_k``; in :func:`opmath_dtype`.
    """
    num_ghost = grad_out.shape[1] - x1.shape[1]
    src = _grouped(ghost_source(x1, num_ghost), num_groups)
    grad_ghost = _grouped(grad_out[:, x1.shape[1]:], num_groups)
    table = offset_table(max_shift).tolist()
    return torch.stack([
        torch.stack([_correlate(grad_ghost[:, g], src[:, g], off) for off in table]) for g in range(num_groups)
    ])
