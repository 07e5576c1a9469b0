"""The adder ops: ``torch.ops.ghostsr.adder2d`` and its backward, one schema each, and every kernel of them.

``adder2d(x, weight, padding)`` is AdderNet's layer, ``-sum |window - filter|`` over each
k x k window of ``x`` zero-padded by ``padding`` (stride 1) and each filter of ``weight``;
its gradient (``adder2d_backward``) is AdderNet's training rule: the full-precision filter
gradient ``sum (x - w) * grad`` and the HardTanh-clipped input gradient
``sum clamp(w - x, -1, 1) * grad`` (:mod:`.adder_reference` writes them out). The layer-adaptive
learning-rate scale of the filter gradient is a separate step, :func:`adaptive_gradient`.

On the CPU the compiled kernels of ``csrc/adder_cpu.cpp`` run in float32 and float64
(:mod:`.cpu_kernels`: built on first use, the reference where they cannot be); on every other
device and dtype the pure-PyTorch reference. Every argument is checked here, in Python, from
sizes, dtypes and devices alone, before any kernel. Fake kernels let ``torch.compile`` and
``torch.export`` trace through the ops, and ``torch.utils.flop_counter`` counts 2 FLOPs per
term (a subtraction and an addition), as it counts a multiply-add.
"""
import math

import torch
from torch.utils.flop_counter import register_flop_formula

from . import adder_reference, cpu_kernels

SCHEMAS = {
    'adder2d': '(Tensor x, Tensor weight, int padding) -> Tensor',
    'adder2d_backward': '(Tensor grad_out, Tensor x, Tensor weight, int padding) -> (Tensor, Tensor)',
}
# the compiled CPU kernels' schemas (csrc/adder_cpu.cpp implements them): the forward and the input gradient
_COMPILED = torch.library.Library('ghostsr_kernels', 'FRAGMENT')  # (kept alive: it owns the definitions)
_COMPILED.define('adder2d(Tensor x, Tensor weight, int padding) -> Tensor')
_COMPILED.define('adder2d_grad_input(Tensor grad_out, Tensor x, Tensor weight, int padding) -> Tensor')


def _fail(op, message):
    raise ValueError(f'ghostsr::{op}: {message}')


def _output_size(op, x, weight, padding):
    """The (H, W) of the output, after checking every argument."""
    for what, t in (('x', x), ('weight', weight)):
        if not t.is_floating_point():
            _fail(op, f'{what} must be a floating-point tensor, got {t.dtype}')
        if t.dim() != 4:
            _fail(op, f'{what} must have 4 dimensions, got shape {tuple(t.shape)}')
    if weight.dtype != x.dtype or weight.device != x.device:
        _fail(op, f'weight must be {x.dtype} on {x.device} like x, got {weight.dtype} on {weight.device}')
    k = weight.shape[-1]
    if weight.shape[-2] != k or weight.shape[1] != x.shape[1]:
        _fail(op, f'weight must be (O, {x.shape[1]}, k, k) for x of {x.shape[1]} channels, got {tuple(weight.shape)}')
    if padding < 0:
        _fail(op, f'padding must be >= 0, got {padding}')
    h, w = x.shape[2] + 2 * padding - k + 1, x.shape[3] + 2 * padding - k + 1
    if isinstance(h, int) and isinstance(w, int) and min(h, w) < 1:
        _fail(op, f'a {k}x{k} window does not fit x of {x.shape[2]}x{x.shape[3]} padded by {padding}')
    return h, w


def _check_backward(grad_out, x, weight, padding):
    h, w = _output_size('adder2d_backward', x, weight, padding)
    expected = (x.shape[0], weight.shape[0], h, w)
    if tuple(grad_out.shape) != expected or grad_out.dtype != x.dtype or grad_out.device != x.device:
        _fail('adder2d_backward', f'grad_out must be {x.dtype} {expected} on {x.device}, got {grad_out.dtype} '
                                  f'{tuple(grad_out.shape)} on {grad_out.device}')


def _compiled(x):
    """Whether the compiled CPU kernels run for ``x`` (float32 and float64; other dtypes: the reference)."""
    return x.dtype in (torch.float32, torch.float64) and cpu_kernels.active()


def _forward_cpu(x, weight, padding):
    if _compiled(x):
        return torch.ops.ghostsr_kernels.adder2d(x, weight, padding)
    return adder_reference.adder2d(x, weight, padding)


def _backward_cpu(grad_out, x, weight, padding):
    if _compiled(x):
        grad_x = torch.ops.ghostsr_kernels.adder2d_grad_input(grad_out, x, weight, padding)
        return grad_x, adder_reference.weight_grad(grad_out, x, weight, padding)
    return adder_reference.adder2d_backward(grad_out, x, weight, padding)


@torch.library.custom_op('ghostsr::adder2d', mutates_args=(), schema=SCHEMAS['adder2d'])
def _adder2d(x, weight, padding):
    _output_size('adder2d', x, weight, padding)
    return (_forward_cpu if x.device.type == 'cpu' else adder_reference.adder2d)(x, weight, padding)


@torch.library.custom_op('ghostsr::adder2d_backward', mutates_args=(), schema=SCHEMAS['adder2d_backward'])
def _adder2d_backward(grad_out, x, weight, padding):
    _check_backward(grad_out, x, weight, padding)
    run = _backward_cpu if x.device.type == 'cpu' else adder_reference.adder2d_backward
    return tuple(t.contiguous() for t in run(grad_out.contiguous(), x.contiguous(), weight.contiguous(), padding))


@_adder2d.register_fake
def _(x, weight, padding):
    h, w = _output_size('adder2d', x, weight, padding)
    return x.new_empty(x.shape[0], weight.shape[0], h, w)


@_adder2d_backward.register_fake
def _(grad_out, x, weight, padding):
    _check_backward(grad_out, x, weight, padding)
    return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(weight)


def _save(ctx, inputs, output):
    x, weight, ctx.padding = inputs
    ctx.save_for_backward(x, weight)


def _backward(ctx, grad):
    x, weight = ctx.saved_tensors
    grad_x, grad_weight = _adder2d_backward(grad, x, weight, ctx.padding)
    return grad_x, grad_weight, None


_adder2d.register_autograd(_backward, setup_context=_save)


@register_flop_formula(torch.ops.ghostsr.adder2d)
def _flops(x_shape, weight_shape, padding, out_shape=None, **kwargs):
    """Two FLOPs per term (subtract, accumulate), as the counter counts a multiply-add."""
    return 2 * math.prod(out_shape) * math.prod(weight_shape[1:])


class _AdaptiveGradient(torch.autograd.Function):
    """Identity forward; backward scales the gradient to norm ``eta * sqrt(numel)`` (AdderNet's adaptive rate)."""

    @staticmethod
    def forward(weight, eta):
        return weight.view_as(weight)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.eta = inputs[1]

    @staticmethod
    def backward(ctx, grad):
        return grad * (ctx.eta * math.sqrt(grad.numel()) / grad.norm().clamp(min=1e-12)), None


def adaptive_gradient(weight, eta):
    """``weight``, whose gradient AdderNet's layer-adaptive learning rate rescales: ``g * eta sqrt(k) / ||g||_2``
    (``k`` the number of filter values; the official code's ``eta`` is 0.2). The scale depends on this
    step's gradient alone: there is no state to save or resume."""
    return _AdaptiveGradient.apply(weight, eta)


def adder2d(x, weight, padding):
    """AdderNet's layer: ``-sum |window - filter|`` over every k x k window of ``x`` (N, C, H, W) zero-padded by
    ``padding``, stride 1, and every filter of ``weight`` (O, C, k, k); (N, O, H', W')."""
    return _adder2d(x, weight, padding)
