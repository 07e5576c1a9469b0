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


def receptive_radius(net):
    """How far (LR pixels) an output pixel of ``net`` can see: the radius tiles need as overlap; None if unbounded.

    The sum over every convolution (and adder layer) of its kernel's radius (and over every Ghost
    layer of its largest shift), each at the resolution it runs at: an upper bound, reached by chains of
    convolutions with skip connections (EDSR, RDN, CARN). A global pooling (channel attention)
    sees the whole image: unbounded.
    """
    from torch import nn

    from ghostsr_plugin.archs import AdderConv2d, GhostConv2d

    width, radius, unbounded = 16, [], []

    def hook(module, inputs, output):
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            unbounded.append(module)
            return
        if isinstance(module, GhostConv2d):  # (a learned shift may still move: its largest)
            if module.cheap_op != 'shift' or not module.num_ghost:
                reach = 0  # (depthwise ghosts: their conv is hooked itself)
            else:
                reach = int(module.offset().abs().max()) if 'offsets' in module._buffers else module.max_shift
        elif isinstance(module, AdderConv2d):
            reach = module.padding
        else:
            reach = max(d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size))
        factor = inputs[0].shape[-1] / width
        radius.append(-(-reach // factor) if factor < 1 else -(-reach // int(factor)))

    kinds = (nn.Conv2d, GhostConv2d, AdderConv2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    parameter = next(net.parameters())
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, width, width, dtype=parameter.dtype, device=parameter.device))
    finally:
        for handle in handles:
            handle.remove()
    return None if unbounded else int(sum(radius))


def overlap_warning(net, overlap):
    """A warning to print when ``overlap`` LR pixels of context leave seams between tiles, else None."""
    radius = receptive_radius(net)
    if radius is None:
        return ('warning: the model pools over the whole image (channel attention): tiled outputs differ from '
                'whole-image inference at any --tile_overlap')
    if overlap < radius:
        return (f'warning: --tile_overlap {overlap} is below the receptive-field radius of the model, {radius} LR '
                f'pixels: tiles will not match whole-image inference and seams may show (pass --tile_overlap {radius})')
    return None
