"""Multiplications and additions of one forward pass, counted op by op as the network runs.

The energy of a network (``cost.py``) is the sum over its arithmetic of a per-operation
energy, so this counts every floating-point operation a forward pass performs, as two kinds:
multiplications (a division counts as one: a multiplication by a reciprocal) and additions
(a subtraction, and a comparison, which is a subtraction whose sign is kept, count as one).
Moving data (views, padding, concatenation, pixel shuffle, gathers, a Ghost layer's shift)
costs no arithmetic, nor do integer and boolean ops (indices, masks: SMSR's positions).
Functions that are neither (exp, log, a power with a learned exponent, square roots) are
counted apart as *special* evaluations, by name: no figure of the energy table stands for them.
An op this module has no formula for is listed as *uncounted*, so a count never misses
arithmetic silently.

Counting runs under a ``TorchDispatchMode``: it sees the ATen ops (and the plugin's custom
ops) that actually run, on any device including ``meta``, whatever the architecture. Per op:

* convolution: per output value ``K = c_in / groups * k_h * k_w`` multiplications and
  ``K - 1`` additions, plus one for a bias (a multiply-accumulate: one of each); matrix
  products likewise (``K`` the inner size);
* the adder layer (``ghostsr::adder2d``): per output value ``K`` subtractions and ``K - 1``
  additions, no multiplication (``|.|`` clears a sign bit);
* element-wise ops per output value: add/sub 1 addition, mul/div 1 multiplication, ReLU and
  max/min 1 comparison, leaky ReLU 1 comparison and 1 multiplication, hardtanh/clamp 2
  comparisons; batch norm in eval 1 multiplication and 1 addition (a per-channel scale and
  shift, folded); layer norm as written out below; reductions one addition per element summed;
* upsampling: bilinear 4 multiplications and 3 additions per output value, bicubic 16 and
  15, nearest none.

A module may replace the count of its whole forward by defining ``count_ops(inputs, output)``
returning an :class:`OpCount` (for example where a mask decides which products run): the ops
inside it are then not counted.
"""
import collections
import math
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode


@dataclass
class OpCount:
    """Multiplications, additions, special-function evaluations (by name) and ops without a formula (by name)."""

    mults: int = 0
    adds: int = 0
    special: collections.Counter = field(default_factory=collections.Counter)
    uncounted: collections.Counter = field(default_factory=collections.Counter)

    def __add__(self, other):
        return OpCount(self.mults + other.mults, self.adds + other.adds, self.special + other.special,
                       self.uncounted + other.uncounted)


def _numel(t):
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        return next((t for t in map(_first_tensor, value) if t is not None), None)
    return None


def _conv(args, out):
    x, weight, bias = args[0], args[1], args[2]
    transposed = len(args) > 6 and args[6]
    per_value = weight[0].numel()  # (c_in / groups) * k_h * k_w of a conv; c_out / groups * k of a transposed one
    values = x.numel() // x.shape[1] * weight.shape[0] if transposed else out.numel()
    mults = values * per_value
    adds = values * (per_value - 1) + (out.numel() if bias is not None else 0)
    return mults, adds


def _matmul(args, out, bias_index=None):
    a = args[-2] if bias_index is not None else args[0]
    inner = a.shape[-1]
    mults = out.numel() * inner
    adds = out.numel() * (inner - 1) + (out.numel() if bias_index is not None else 0)
    return mults, adds


def _adder(args, out):
    per_value = args[1][0].numel()
    return 0, out.numel() * (2 * per_value - 1)


def _elementwise(mults, adds, special=None):
    """Per output value: ``mults`` multiplications, ``adds`` additions, one ``special`` evaluation (a name)."""
    def count(args, out):
        n = _numel(_first_tensor(out))
        return n * mults, n * adds, ({special: n} if special else None)
    return count


def _reduction(mults_per_output=0):
    """Summing reductions: one addition per element beyond one per output (``mean``: and a multiplication)."""
    def count(args, out):
        summed, outputs = _numel(args[0]), _numel(_first_tensor(out))
        return outputs * mults_per_output, summed - outputs
    return count


def _comparisons(args, out):
    """argmax, max over a dim: one comparison per element beyond one per output; max of two tensors: one each."""
    if len(args) > 1 and isinstance(args[1], torch.Tensor):
        return 0, _numel(out)
    return 0, _numel(args[0]) - _numel(_first_tensor(out))


def _layer_norm(args, out):
    """Mean (1 add), centred square (1 add, 1 mult), accumulated (1 add), normalized (1 add, 1 mult),
    affine (1 mult, 1 add) per value; a reciprocal square root per normalized row."""
    x, shape = args[0], args[1]
    rows = x.numel() // max(math.prod(shape), 1)
    return 3 * x.numel(), 5 * x.numel(), {'rsqrt': rows}


def _batch_norm(args, out):
    """In eval, a per-channel scale and shift (folded): 1 mult, 1 add per value; in training, as a layer norm
    (mean, variance, normalize, affine) and a reciprocal square root per channel."""
    x = args[0]
    if not args[5]:
        return x.numel(), x.numel()
    return 3 * x.numel(), 5 * x.numel(), {'rsqrt': x.shape[1]}


def _softmax(args, out):
    """Max (1 comparison), subtract (1 add), exp, sum (1 add), divide (1 mult) per value."""
    return out.numel(), 3 * out.numel(), {'exp': out.numel()}


def _add(args, out):
    alpha = args[2] if len(args) > 2 else 1
    n = _numel(out)
    return (n if alpha != 1 else 0), n


def _pow(args, out):
    exponent = args[1]
    if isinstance(exponent, (int, float)) and float(exponent).is_integer() and 0 <= exponent <= 4:
        return _numel(out) * max(int(exponent) - 1, 0), 0  # x^2 = x * x, ...
    return 0, 0, {'pow': _numel(out)}


def _avg_pool(args, out):
    """Per output value: the window's values summed (k_h * k_w - 1 additions) and scaled (1 multiplication)."""
    kernel = args[1] if isinstance(args[1], (list, tuple)) else [args[1]] * 2
    window = kernel[0] * (kernel[-1] if len(kernel) > 1 else kernel[0])
    return out.numel(), out.numel() * (window - 1)


def _index_put(args, out):
    """Values written (data movement), or with ``accumulate`` added: one addition each."""
    return 0, (_numel(args[2]) if len(args) > 3 and args[3] else 0)


def _upsample(taps):
    return lambda args, out: (out.numel() * taps, out.numel() * (taps - 1)) if taps else (0, 0)


aten = torch.ops.aten
FORMULAS = {
    aten.convolution: _conv, aten._convolution: _conv,
    aten.mm: _matmul, aten.bmm: _matmul,
    aten.addmm: lambda args, out: _matmul(args, out, bias_index=0),
    aten.baddbmm: lambda args, out: _matmul(args, out, bias_index=0),
    aten.add: _add, aten.add_: _add, aten.sub: _add, aten.sub_: _add, aten.rsub: _add,
    aten.mul: _elementwise(1, 0), aten.mul_: _elementwise(1, 0), aten.div: _elementwise(1, 0),
    aten.div_: _elementwise(1, 0), aten.reciprocal: _elementwise(1, 0),
    aten.relu: _elementwise(0, 1), aten.relu_: _elementwise(0, 1), aten.threshold: _elementwise(0, 1),
    aten.maximum: _elementwise(0, 1), aten.minimum: _elementwise(0, 1),
    aten.clamp_min: _elementwise(0, 1), aten.clamp_max: _elementwise(0, 1),
    aten.clamp: _elementwise(0, 2), aten.hardtanh: _elementwise(0, 2), aten.hardtanh_: _elementwise(0, 2),
    aten.leaky_relu: _elementwise(1, 1), aten.leaky_relu_: _elementwise(1, 1), aten.prelu: _elementwise(1, 1),
    aten._prelu_kernel: _elementwise(1, 1),
    aten.sigmoid: _elementwise(1, 1, 'exp'), aten.tanh: _elementwise(0, 0, 'tanh'),
    aten.gelu: _elementwise(2, 1, 'erf'), aten.silu: _elementwise(2, 1, 'exp'),
    aten.exp: _elementwise(0, 0, 'exp'), aten.log: _elementwise(0, 0, 'log'),
    aten.sqrt: _elementwise(0, 0, 'sqrt'), aten.rsqrt: _elementwise(0, 0, 'rsqrt'),
    aten.pow: _pow,
    aten.abs: _elementwise(0, 0), aten.neg: _elementwise(0, 0), aten.sign: _elementwise(0, 0),
    aten.sgn: _elementwise(0, 0),
    aten._native_batch_norm_legit_no_training: _elementwise(1, 1), aten.native_batch_norm: _batch_norm,
    aten.native_layer_norm: _layer_norm, aten._softmax: _softmax,
    aten.sum: _reduction(), aten.mean: _reduction(1), aten.argmax: _comparisons, aten.max: _comparisons,
    aten.min: _comparisons, aten.argmin: _comparisons,
    aten.eq: _elementwise(0, 1), aten.ne: _elementwise(0, 1), aten.lt: _elementwise(0, 1),
    aten.gt: _elementwise(0, 1), aten.le: _elementwise(0, 1), aten.ge: _elementwise(0, 1),
    aten.upsample_bilinear2d: _upsample(4), aten.upsample_bicubic2d: _upsample(16),
    aten.upsample_nearest2d: _upsample(0), aten._upsample_nearest_exact2d: _upsample(0),
    aten.avg_pool2d: _avg_pool, aten.index_add: lambda args, out: (0, _numel(args[3])),
    aten.index_add_: lambda args, out: (0, _numel(args[3])),
    aten.index_put: _index_put, aten.index_put_: _index_put,
}
# Ops that only move, make or reinterpret data: no arithmetic.
DATA_MOVEMENT = {
    aten.view, aten._unsafe_view, aten.reshape, aten.expand, aten.permute, aten.transpose, aten.t, aten.clone,
    aten.contiguous, aten.detach, aten.alias, aten.unsqueeze, aten.squeeze, aten.select, aten.slice, aten.split,
    aten.split_with_sizes, aten.chunk, aten.unbind, aten.cat, aten.stack, aten.index, aten.index_select, aten.gather,
    aten.roll, aten.flip, aten.pixel_shuffle, aten.pixel_unshuffle, aten.constant_pad_nd, aten.pad,
    aten.reflection_pad2d, aten.replication_pad2d, aten.copy_, aten._to_copy, aten.lift_fresh, aten.arange,
    aten.empty, aten.empty_like, aten.empty_strided, aten.new_empty, aten.new_empty_strided, aten.zeros,
    aten.zeros_like, aten.ones, aten.ones_like, aten.full, aten.full_like, aten.fill_, aten.zero_, aten.rand,
    aten.randn, aten.rand_like, aten.randn_like, aten.masked_fill, aten.where, aten.col2im, aten.im2col,
    aten.unfold, aten.as_strided, aten.bitwise_and, aten.bitwise_or, aten.logical_and, aten.logical_or,
    aten.logical_not, aten._local_scalar_dense,
    aten.one_hot, aten.scalar_tensor, aten.sym_size, aten.sym_stride, aten.sym_numel,
    aten.new_zeros, aten.new_ones, aten.new_full, aten.nonzero,
}
PLUGIN_FORMULAS = {'adder2d': _adder}  # torch.ops.ghostsr.*: every other plugin op moves data (the shifts)


class OpCounter(TorchDispatchMode):
    """Counts the multiplications and additions of the ops run inside it (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.count = OpCount()
        self.override_depth = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.override_depth:
            self.count = self.count + _count(func, args, out)
        return out


def _count(func, args, out):
    packet = func.overloadpacket
    namespace = func.namespace
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if tensors and not any(t.is_floating_point() or t.is_complex() for t in tensors):
        return OpCount()  # integer and boolean arithmetic: indices and masks, no floating-point operation
    if namespace == 'ghostsr':
        formula = PLUGIN_FORMULAS.get(packet.__name__)
        if formula is None:
            return OpCount()
    else:
        if packet in DATA_MOVEMENT:
            return OpCount()
        formula = FORMULAS.get(packet)
        if formula is None:
            return OpCount(uncounted=collections.Counter({str(packet): 1}))
    counted = formula(args, out)
    mults, adds, special = (*counted, None) if len(counted) == 2 else counted
    return OpCount(int(mults), int(adds), collections.Counter(special or {}))


def count_ops(net, *inputs):
    """The :class:`OpCount` of one forward pass ``net(*inputs)`` (no gradient is recorded)."""
    counter = OpCounter()

    def enter(module, args):
        if hasattr(module, 'count_ops'):
            counter.override_depth += 1

    def leave(module, args, output):
        if hasattr(module, 'count_ops'):
            counter.override_depth -= 1
            if not counter.override_depth:
                counter.count = counter.count + module.count_ops(args, output)

    hooks = [torch.nn.modules.module.register_module_forward_pre_hook(enter),
             torch.nn.modules.module.register_module_forward_hook(leave)]
    try:
        with torch.no_grad(), counter:
            net(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return counter.count
