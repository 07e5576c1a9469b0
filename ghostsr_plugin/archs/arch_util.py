"""What plain archs and their Ghost versions share: the convs a Ghost version ghosts.

The plain archs defined here (RDN, CARN) build each conv that their Ghost version replaces
with ``self.body_conv``; the Ghost version inherits the plain arch and overrides only that
method (``GhostBody``). GhostEDSR cannot: BasicSR's EDSR builds its convs directly, so it
rebuilds ``self.body`` from Ghost residual blocks (``ghost_edsr_arch``). Either way the
two have the same submodules at the same paths: the Ghost layer at path ``P`` replaces
the plain conv at ``P`` (its real conv is ``P.primary``), and everything else is the
plain arch's own code.
"""
import torch
from torch import nn

from .ghost_layer import GhostConv2d


def conv3x3(in_channels, out_channels, groups=1):
    """The plain arch's ``body_conv``: a 3x3 conv with 'same' padding."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, groups=groups)


class GhostBody:
    """Mixin that makes a plain arch's ``body_conv`` convs Ghost layers.

    The Ghost arch sets ``self.ghost_opt`` (``GhostConv2d``'s keyword arguments) before
    calling the plain arch's ``__init__``, which builds the network through ``body_conv``.
    """

    def body_conv(self, in_channels, out_channels, groups=1):
        return GhostConv2d(in_channels, out_channels, 3, conv_groups=groups, **self.ghost_opt)


class PixelRange(nn.Module):
    """BasicSR's input normalization (as in its EDSR): ``(x - rgb_mean) * img_range`` and back."""

    def __init__(self, img_range, rgb_mean):
        super().__init__()
        self.img_range = img_range
        self.register_buffer('mean', torch.tensor(rgb_mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) * self.img_range

    def inverse(self, x):
        return x / self.img_range + self.mean
