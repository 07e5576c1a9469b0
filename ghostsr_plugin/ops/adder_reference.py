"""The adder layer's ops in pure PyTorch: the reference of the compiled CPU kernels, and the path of any other device.

AdderNet's definitions (Chen et al., CVPR 2020; the official code's ``adder.py``), for a 'same'
stride-1 layer on ``x`` zero-padded by ``padding`` (``xp``) and filters ``weight`` (O, C, k, k):

* output ``out[n, o, h, w] = -sum_{c, i, j} |xp[n, c, h + i, w + j] - weight[o, c, i, j]|``;
* the input gradient, HardTanh-clipped: ``sum_o clamp(weight - xp, -1, 1) * grad`` over the
  windows that read each input value (a padded position's gradient is dropped);
* the filter gradient, full precision: ``sum (xp - weight) * grad`` over batch and positions,
  which is a convolution's filter gradient less ``weight`` times the sum of ``grad``.

Each window offset (and block of output channels) is one pass of element-wise ops over the
input, so memory stays within a few inputs' worth: the window x output-channel tensor of
``unfold`` is never made whole.
"""
import torch
from torch.nn import functional as F

BLOCK_ELEMENTS = 2**24  # the largest (N, output channels, C, H, W) temporary of one pass


def _geometry(x, weight, padding):
    k = weight.shape[-1]
    return k, x.shape[2] + 2 * padding - k + 1, x.shape[3] + 2 * padding - k + 1


def _channel_blocks(x, weight, h, w):
    per_channel = x.shape[0] * x.shape[1] * h * w
    step = max(1, BLOCK_ELEMENTS // max(per_channel, 1))
    return [slice(o, o + step) for o in range(0, weight.shape[0], step)]


def adder2d(x, weight, padding):
    """``-sum |window - filter|`` for every window of ``x`` (N, C, H, W) and filter of ``weight`` (O, C, k, k)."""
    k, h, w = _geometry(x, weight, padding)
    xp = F.pad(x, [padding] * 4)
    out = x.new_zeros(x.shape[0], weight.shape[0], h, w)
    blocks = _channel_blocks(x, weight, h, w)
    for i in range(k):
        for j in range(k):
            window = xp[:, None, :, i:i + h, j:j + w]  # (N, 1, C, h, w)
            for block in blocks:
                out[:, block] -= (window - weight[None, block, :, i, j, None, None]).abs().sum(2)
    return out


def weight_grad(grad_out, x, weight, padding):
    """AdderNet's full-precision filter gradient: ``sum (xp - weight) * grad_out``."""
    conv_grad = torch.ops.aten.convolution_backward(grad_out, x, weight, None, [1, 1], [padding, padding], [1, 1],
                                                    False, [0, 0], 1, [False, True, False])[1]
    return conv_grad - weight * grad_out.sum((0, 2, 3))[:, None, None, None]


def grad_input(grad_out, x, weight, padding):
    """AdderNet's HardTanh-clipped input gradient: ``sum_o clamp(weight - xp, -1, 1) * grad_out`` per window."""
    k, h, w = _geometry(x, weight, padding)
    xp = F.pad(x, [padding] * 4)
    grad_xp = torch.zeros_like(xp)
    blocks = _channel_blocks(x, weight, h, w)
    for i in range(k):
        for j in range(k):
            window = xp[:, None, :, i:i + h, j:j + w]
            for block in blocks:
                clipped = (weight[None, block, :, i, j, None, None] - window).clamp(-1, 1)
                grad_xp[:, :, i:i + h, j:j + w] += (clipped * grad_out[:, block, None]).sum(1)
    return grad_xp[:, :, padding:padding + x.shape[2], padding:padding + x.shape[3]]


def adder2d_backward(grad_out, x, weight, padding):
    """``(grad_x, grad_weight)`` of :func:`adder2d` by AdderNet's training rule."""
    return grad_input(grad_out, x, weight, padding), weight_grad(grad_out, x, weight, padding)


def adder2d_graph(x, weight, padding):
    """:func:`adder2d` in standard ONNX ops: the k x k shifted copies of ``x`` stacked over channels (an im2col by
    slicing), then per output channel a subtraction, an absolute value and a sum over channels."""
    k, h, w = _geometry(x, weight, padding)
    xp = F.pad(x, [padding] * 4)
    columns = torch.cat([xp[:, :, i:i + h, j:j + w] for i in range(k) for j in range(k)], 1)  # (N, k k C, h, w)
    filters = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1, 1, 1)  # the same (i, j, c) order
    return torch.cat([-(columns - filters[o]).abs().sum(1, keepdim=True) for o in range(weight.shape[0])], 1)
