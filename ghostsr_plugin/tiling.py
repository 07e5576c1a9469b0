"""Super-resolve a large image in overlapping tiles, for little memory.

Each tile's core (``tile`` x ``tile`` LR pixels) is run with ``overlap`` extra LR pixels of
context on every side, and only the core's output is kept. An output pixel depends only
on input pixels within the network's receptive-field radius, and zero padding at a crop
edge disturbs outputs only up to that radius inside it; so when ``overlap`` is at least
the radius, every kept pixel equals whole-image inference up to float rounding (the
convolution kernels may sum in another order for another input size).
"""
import torch


@torch.no_grad()
def tiled_forward(net, x, scale, tile, overlap):
    """``net(x)`` for an (N, C, H, W) batch, computed tile by tile (sizes in LR pixels)."""
    if tile < 1 or overlap < 0:
        raise ValueError(f'tile must be >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}')
    h, w = x.shape[-2:]
    out = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            in_top, in_left = max(top - overlap, 0), max(left - overlap, 0)
            y = net(x[..., in_top:min(bottom + overlap, h), in_left:min(right + overlap, w)])
            if out is None:
                out = y.new_zeros(*y.shape[:-2], h * scale, w * scale)
            rows, cols = slice(top - in_top, bottom - in_top), slice(left - in_left, right - in_left)
            out[..., top * scale:bottom * scale, left * scale:right * scale] = y[
                ..., rows.start * scale:rows.stop * scale, cols.start * scale:cols.stop * scale]
    return out
