"""The Ghost layer in plain tensor ops, for graphs (torch.export, ONNX, torch.compile).

A frozen layer's offsets are constants, so its shift is a zero pad with a negative far
side (a crop), which inductor fuses with the ops around it instead of stopping at an opaque
custom op. A layer in eval mode that is not frozen has its offsets as a tensor (the argmax
of its logits): its shift is a gather at ``(i - dy, j - dx)``, masked to zero outside the
image (:func:`ghost_features_at`), which inductor fuses the same way with no host sync and
no recompilation when the logits change. For ONNX a frozen shift is a depthwise convolution
with a one-hot kernel instead (the official code's form): ONNX runtimes keep convolutions in
their blocked layouts (onnxruntime's NCHWc) and fuse them, while a Pad between two
convolutions makes them convert the layout back and forth; the extra cost, 2 (2d+1)^2 FLOPs
per ghost value, is about 2% of the layer's. Same convention as the reference:
``out[..., i, j] = x[..., i - dy, j - dx]`` inside the image, 0 elsewhere.
"""
import torch
from torch.nn import functional as F


def shift(x, dy, dx):
    """Shift ``x`` (..., H, W) by the Python ints ``(dy, dx)`` with zero fill.

    One pad whose far side is negative (a crop): no size appears in the graph, so H and W
    stay dynamic, and ONNX gets a single Pad.
    """
    if dy == 0 and dx == 0:
        return x
    return F.pad(x, (dx, -dx, dy, -dy))


def ghost_source(x1, num_ghost):
    """Ghost channel ``c`` copies intrinsic channel ``c % c_intrinsic`` (channels: the third-last axis)."""
    c_intrinsic = x1.shape[-3]
    source = x1 if num_ghost <= c_intrinsic else torch.cat([x1] * -(-num_ghost // c_intrinsic), -3)
    return source[..., :num_ghost, :, :]


def shift_kernel(offsets, num_ghost, max_shift):
    """The depthwise kernel (num_ghost, 1, 2d+1, 2d+1) whose convolution shifts each ghost by its group's offset."""
    side = 2 * max_shift + 1
    kernel = torch.zeros(num_ghost, 1, side, side)
    per_group = num_ghost // len(offsets)
    for g, (dy, dx) in enumerate(offsets):
        kernel[g * per_group:(g + 1) * per_group, 0, max_shift - dy, max_shift - dx] = 1
    return kernel


def ghost_features_by_conv(x1, kernel):
    """``ghost_features`` with the shifts as one depthwise convolution by :func:`shift_kernel` (N, C, H, W)."""
    source = ghost_source(x1, kernel.shape[0])
    ghosts = F.conv2d(source, kernel.to(x1.dtype), padding=kernel.shape[-1] // 2, groups=kernel.shape[0])
    return torch.cat([x1, ghosts], dim=1)


def ghost_features(x1, num_ghost, offsets):
    """``ops.ghost_features`` with ``offsets`` a sequence of Python ``(dy, dx)`` pairs.

    ``x1`` may carry leading dims before the channel axis (a Ghost layer over a group conv
    passes (N, groups, C, H, W)); channels are the third-last axis.
    """
    source = ghost_source(x1, num_ghost)
    per_group = num_ghost // len(offsets)
    ghosts = [shift(source[..., g * per_group:(g + 1) * per_group, :, :], dy, dx) for g, (dy, dx) in enumerate(offsets)]
    return torch.cat([x1, *ghosts], dim=-3)


def shift_at(x, offset):
    """Shift ``x`` (..., H, W) by ``offset``, a (2,) integer tensor ``(dy, dx)``, with zero fill.

    A gather from ``x`` flattened over (H, W) at the clamped source index, then zeros where the
    source lies outside the image: one index per output element, so the offset never leaves
    the device.
    """
    h, w = x.shape[-2:]
    rows = torch.arange(h, device=x.device) - offset[0]
    cols = torch.arange(w, device=x.device) - offset[1]
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))
    source = (rows[:, None] * w + cols).clamp(0, h * w - 1)
    return torch.where(inside, x.flatten(-2)[..., source], 0)


def ghost_features_at(x1, num_ghost, offsets):
    """:func:`ghost_features` with ``offsets`` a (G, 2) integer tensor, as ``ops.ghost_features`` takes them."""
    source = ghost_source(x1, num_ghost)
    per_group = num_ghost // offsets.shape[0]
    ghosts = [shift_at(source[..., g * per_group:(g + 1) * per_group, :, :], offsets[g])
              for g in range(offsets.shape[0])]
    return torch.cat([x1, *ghosts], dim=-3)
