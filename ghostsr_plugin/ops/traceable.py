"""The frozen Ghost layer in plain tensor ops, for graphs (torch.export, ONNX, torch.compile).

A frozen layer's offsets are constants, so its shift is a crop and a zero pad that every
backend knows (ONNX: Slice, Pad, Concat; no custom domain), and inductor fuses them with the
ops around them instead of stopping at an opaque custom op. Same convention as the
reference: ``out[..., i, j] = x[..., i - dy, j - dx]`` inside the image, 0 elsewhere.
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


def ghost_features(x1, num_ghost, offsets):
    """``ops.ghost_features`` with ``offsets`` a sequence of Python ``(dy, dx)`` pairs.

    ``x1`` may carry leading dims before the channel axis (a Ghost layer over a group conv
    passes (N, groups, C, H, W)); channels are the third-last axis.
    """
    c_intrinsic = x1.shape[-3]
    source = x1 if num_ghost <= c_intrinsic else torch.cat([x1] * -(-num_ghost // c_intrinsic), -3)
    source = source[..., :num_ghost, :, :]  # ghost channel c copies intrinsic channel c % c_intrinsic
    per_group = num_ghost // len(offsets)
    ghosts = [shift(source[..., g * per_group:(g + 1) * per_group, :, :], dy, dx) for g, (dy, dx) in enumerate(offsets)]
    return torch.cat([x1, *ghosts], dim=-3)
