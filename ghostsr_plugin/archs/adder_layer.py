"""The adder layer (AdderNet, Chen et al. CVPR 2020) with AdderSR's changes (Song et al. CVPR 2021).

An ``AdderConv2d`` stands in for a k x k 'same' conv ``c_in -> c_out`` (docs/peers.md):

    y = P(BN(A(x)) + x)        A(x) = -sum |window - filter|   (ghostsr_plugin.ops.adder2d)

* ``A``: AdderNet's adder, no multiplication; trained by AdderNet's rule (the full-precision
  filter gradient, the HardTanh-clipped input gradient) with its layer-adaptive learning rate,
  the filter gradient rescaled to norm ``eta * sqrt(k)`` (``eta`` 0.2 as in the official code;
  0 turns it off);
* ``BN``: batch normalization after the adder, as AdderNet's code puts after every adder layer
  (its output, a negative sum of distances, is far from the scale of a conv's);
* ``+ x``: AdderSR's self-shortcut, where ``c_in == c_out`` (an adder layer cannot learn the
  identity by itself);
* ``P``: AdderSR's learnable power activation ``sign(y) |y|^alpha``, one ``alpha`` per layer
  starting at 1.
"""
import torch
from torch import nn

from ghostsr_plugin import ops
from ghostsr_plugin.ops import adder_reference


class PowerActivation(nn.Module):
    """AdderSR's ``sign(x) |x|^alpha`` with a learned ``alpha`` (starting at 1: the identity).

    ``|x|`` is kept above the dtype's smallest normal number so that the gradients stay finite at 0
    (where the output is 0 whatever alpha is).
    """

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x):
        return torch.sign(x) * x.abs().clamp(min=torch.finfo(x.dtype).tiny).pow(self.alpha)


class AdderConv2d(nn.Module):
    """An adder layer with batch norm, AdderSR's self-shortcut and power activation.

    Args:
        in_channels, out_channels, kernel_size: as ``nn.Conv2d`` (stride 1, 'same' zero padding).
        shortcut: add the input (AdderSR's self-shortcut) where ``in_channels == out_channels``.
        power_activation: apply AdderSR's learnable power activation last.
        eta: AdderNet's layer-adaptive learning-rate scale (0: the plain full-precision gradient).

    Attributes:
        weight: the filters (out_channels, in_channels, k, k), drawn from N(0, 1) as AdderNet's code does.
        norm: the batch norm after the adder.
        power: the power activation, or None.
    """

    KIND = 'Adder'  # the layer kind's name, for the conversion's messages (archs/conversion.py)

    def __init__(self, in_channels, out_channels, kernel_size=3, shortcut=True, power_activation=True, eta=0.2,
                 device=None, dtype=None):
        super().__init__()
        if eta < 0:
            raise ValueError(f'AdderConv2d: eta must be >= 0, got {eta}')
        self.padding, self.eta = kernel_size // 2, eta
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size, device=device,
                                               dtype=dtype))
        nn.init.normal_(self.weight)
        self.norm = nn.BatchNorm2d(out_channels, device=device, dtype=dtype)
        self.shortcut = shortcut and in_channels == out_channels
        self.power = PowerActivation().to(device, dtype) if power_activation else None

    @staticmethod
    def refuses(conv):
        """Why an adder layer cannot stand in for the 'same' conv ``conv``, or None."""
        return f'the Adder layer needs groups 1, found {conv.groups}' if conv.groups != 1 else None

    @classmethod
    def from_conv(cls, conv, **options):
        """An adder layer standing in for ``conv`` (on its device and dtype), its filters drawn afresh: a conv's
        filters are no templates for an L1 distance."""
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], device=conv.weight.device,
                   dtype=conv.weight.dtype, **options)

    def adder(self, x, weight):
        """The adder alone, ``-sum |window - filter|``; in an ONNX export, in standard ops."""
        if torch.onnx.is_in_onnx_export():
            return adder_reference.adder2d_graph(x, weight, self.padding)
        if self.training and self.eta:
            weight = ops.adaptive_gradient(weight, self.eta)
        return ops.adder2d(x, weight, self.padding)

    def normalized(self, x):
        """``BN(A(x))`` in the batch norm's dtype (float32: see ``_apply``), returned in ``x``'s dtype, or in the
        filters' under autocast (float32 filters, a bfloat16 input)."""
        if self.weight.dtype == self.norm.weight.dtype:
            return self.norm(self.adder(x.to(self.weight.dtype), self.weight))
        dtype = self.norm.weight.dtype
        return self.norm(self.adder(x.to(dtype), self.weight.to(dtype))).to(x.dtype)

    def _apply(self, fn, recurse=True):
        """As ``nn.Module._apply``, except that a cast to float16 or bfloat16 (``.half()``) leaves the batch norm in
        float32: its statistics, of sums of ``9 c`` distances of features in the hundreds, outgrow float16."""
        norm = self._modules.pop('norm')
        try:
            super()._apply(fn, recurse)
        finally:
            self._modules['norm'] = norm
        probe = fn(torch.zeros(1, dtype=norm.weight.dtype, device=norm.weight.device))
        if probe.dtype in (torch.float16, torch.bfloat16):
            norm._apply(lambda t: t.to(probe.device))
        else:
            norm._apply(fn, recurse)
        return self

    def forward(self, x):
        y = self.normalized(x)
        if self.shortcut:
            y = y + x
        return self.power(y) if self.power is not None else y

    def extra_repr(self):
        o, c, k, _ = self.weight.shape
        return f'{c}, {o}, kernel_size={k}, shortcut={self.shortcut}, eta={self.eta}'


def adder_layers(net):
    """Every adder layer of ``net``, in module order."""
    return [m for m in net.modules() if isinstance(m, AdderConv2d)]
