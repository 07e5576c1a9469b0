"""Convolutions computed only where an SMSR spatial mask keeps a position: gather, matmul, scatter.

SMSR's sparse channels hold values at the kept positions of their image's spatial mask only
(zero elsewhere), stored as a (channels, P) matrix, one column per kept position. A 3x3 conv
reaching them gathers each kept position's 3x3 window into columns (from a dense feature
map, or from the sparse matrix through each tap's neighbour rank, 0 for a neighbour that is
not kept) and multiplies by the weights flattened to (out, in * 9): the FLOPs are the matmul's,
so ``torch.utils.flop_counter`` counts exactly what is computed. Results for dense channels are
added into the dense map at the kept positions (an ``index_add_`` along the flattened image).
"""
import torch
from torch.nn import functional as F


class KeptPositions:
    """The kept positions of a batch's spatial masks and the gather indices a 3x3 window needs there.

    Attributes:
        index: (P,) kept positions, flat over the batch (``(n * H + h) * W + w``), in raster order.
        window: (9 * P,) each kept position's 3x3 window in the images zero-padded by one pixel, flat over the
            batch (``(n * (H + 2) + h + ky) * (W + 2) + w + kx``), tap-major: taps in (ky, kx) order, positions
            within.
        neighbour: (9 * P,) per window tap, 1 + the rank of that pixel among the kept positions, 0 where it is
            not kept (or outside its image): a column of the sparse matrix with a zero column prepended.
    """

    def __init__(self, mask):
        """``mask``: (N, H, W) bool, the positions to keep."""
        h, w = mask.shape[-2:]
        flat = mask.flatten()
        self.index = flat.nonzero().squeeze(1)
        self.count = self.index.shape[0]
        image, row = self.index // (h * w), self.index // w
        corner = self.index + 2 * row + 2 * (w + 2) * image  # the window's top left in the padded images, flat
        taps = (torch.arange(3, device=mask.device)[:, None] * (w + 2) + torch.arange(3, device=mask.device)).flatten()
        self.window = (taps[:, None] + corner).flatten()
        rank = F.pad((flat.cumsum(0) * flat).view(mask.shape), (1, 1, 1, 1))  # 1 + rank where kept, else 0
        self.neighbour = rank.flatten()[self.window]


def channels_first(x):
    """(C, N * H * W) of (N, C, H, W): a view for one image, a copy for more."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def dense_windows(x, kept):
    """(C * 9, P): the 3x3 windows of ``x`` (N, C, H, W) at the kept positions, rows ``c * 9 + tap``."""
    padded = channels_first(F.pad(x, (1, 1, 1, 1)))
    return padded.index_select(1, kept.window).view(x.shape[1] * 9, kept.count)


def sparse_windows(columns, kept):
    """(C * 9, P): the 3x3 windows at the kept positions of sparse features ``columns`` (C, P), zero where not kept."""
    padded = F.pad(columns, (1, 0))
    return padded.index_select(1, kept.neighbour).view(columns.shape[0] * 9, kept.count)


def add_at(dense, kept, columns):
    """``dense`` (N, C, H, W) plus ``columns`` (C, P) at the kept positions (in place for one image in eager)."""
    if not columns.shape[0]:
        return dense
    if not torch.compiler.is_compiling() and dense.shape[0] == 1:
        dense.view(dense.shape[1], -1).index_add_(1, kept.index, columns)
        return dense
    n, c, h, w = dense.shape
    return channels_first(dense).index_add(1, kept.index, columns).view(c, n, h, w).transpose(0, 1)
