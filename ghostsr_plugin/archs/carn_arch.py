"""CARN and CARN-M (Ahn et al., "Fast, Accurate, and Lightweight Super-Resolution with Cascading
Residual Network", ECCV 2018), plain and Ghost.

BasicSR ships neither. The layout follows the paper and the authors' code
(nmhkahn/CARN-pytorch, ``carn.py``, ``carn_m.py``, ``ops.py``): a 3x3 entry conv, three
cascading blocks joined by cascading 1x1 fusions, a sub-pixel upsampler whose convs are
followed by ReLU, and a 3x3 exit conv, with no global residual. Each cascading block is
itself a cascade of three residual units. CARN's unit is the residual block
(conv-ReLU-conv, identity, ReLU); CARN-M's is the efficient residual block (two 3x3 group
convs and a 1x1 conv) with group convs in the upsampler too, and one unit shared by the
three positions of a cascading block (recursion).

Parameter counts (``tests/test_paper_archs.py``). The paper's figures (CARN 1,592K, CARN-M
412K) are of its multi-scale model: one body with x2, x3 and x4 upsamplers. The archs here
are single-scale, as BasicSR trains them: CARN has 964,163 (x2), 1,148,803 (x3) and
1,111,875 (x4) parameters, and body + the three upsamplers = 1,591,939, the paper's 1,592K.
CARN-M: 257,027 / 303,427 / 294,147, multi-scale total 414,787 against the paper's 412K
(414,787 counts the biases; without them, 412,032).
"""
import math

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from ghostsr_plugin.registration import register

from .arch_util import GhostBody, PixelRange, conv3x3


class ResidualBlock(nn.Module):
    """CARN's residual block: ``relu(x + conv2(relu(conv1(x))))``."""

    def __init__(self, num_feat, body_conv):
        super().__init__()
        self.conv1 = body_conv(num_feat, num_feat)
        self.conv2 = body_conv(num_feat, num_feat)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class EfficientResidualBlock(nn.Module):
    """CARN-M's residual-E block: ``relu(x + conv3(relu(conv2(relu(conv1(x))))))``, ``conv1`` and
    ``conv2`` 3x3 group convs, ``conv3`` a 1x1 conv."""

    def __init__(self, num_feat, groups, body_conv):
        super().__init__()
        self.conv1 = body_conv(num_feat, num_feat, groups)
        self.conv2 = body_conv(num_feat, num_feat, groups)
        self.conv3 = nn.Conv2d(num_feat, num_feat, 1)

    def forward(self, x):
        return F.relu(x + self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))


class Cascade(nn.Module):
    """Cascading connections: after unit ``i``, a 1x1 conv + ReLU (``fuse[i]``) fuses the input and
    every unit output so far into the next unit's input. With a single unit, that unit is
    applied at every position (CARN-M's recursion)."""

    def __init__(self, units, num_feat, num_positions):
        super().__init__()
        self.units = nn.ModuleList(units)
        self.fuse = nn.ModuleList(nn.Conv2d((i + 2) * num_feat, num_feat, 1) for i in range(num_positions))

    def forward(self, x):
        concat = x
        for i, fuse in enumerate(self.fuse):
            concat = torch.cat([concat, self.units[i % len(self.units)](x)], dim=1)
            x = F.relu(fuse(concat))
        return x


class CARNUpsample(nn.Sequential):
    """CARN's upsampler: (3x3 conv to ``s^2`` times the channels, ReLU, pixel shuffle by ``s``),
    once with s = 3 for x3 and log2(scale) times with s = 2 for powers of 2."""

    def __init__(self, scale, num_feat, groups=1):
        if scale & (scale - 1) == 0:
            steps = [2] * int(math.log2(scale))
        elif scale == 3:
            steps = [3]
        else:
            raise ValueError(f'scale {scale} is not supported; supported scales: 2^n and 3')
        layers = []
        for s in steps:
            layers += [nn.Conv2d(num_feat, s * s * num_feat, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
                       nn.PixelShuffle(s)]
        super().__init__(*layers)


class _CascadingResidualNetwork(nn.Module):
    """What CARN and CARN-M share; ``units`` says what a cascading block cascades."""

    body_conv = staticmethod(conv3x3)

    def __init__(self, num_in_ch, num_out_ch, num_feat, num_block, num_unit, upscale, img_range, rgb_mean, groups):
        super().__init__()
        self.pixel_range = PixelRange(img_range, rgb_mean)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, padding=1)
        blocks = [Cascade(self.units(num_feat, num_unit, groups), num_feat, num_unit) for _ in range(num_block)]
        self.body = Cascade(blocks, num_feat, num_block)
        self.upsample = CARNUpsample(upscale, num_feat, groups)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, padding=1)

    def forward(self, x):
        x = self.body(self.conv_first(self.pixel_range(x)))
        return self.pixel_range.inverse(self.conv_last(self.upsample(x)))


@register(ARCH_REGISTRY)
class CARN(_CascadingResidualNetwork):
    """Cascading residual network.

    Args:
        num_in_ch, num_out_ch: image channels. num_feat: channels (64 in the paper).
        num_block: cascading blocks (3). num_unit: residual blocks per cascading block (3).
        upscale: 2, 3 or 4 (powers of 2 in general).
        img_range, rgb_mean: input normalization; CARN works on [0, 1] images minus the mean.
    """

    def __init__(self, num_in_ch, num_out_ch, num_feat=64, num_block=3, num_unit=3, upscale=4, img_range=1.,
                 rgb_mean=(0.4488, 0.4371, 0.4040)):
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, num_unit, upscale, img_range, rgb_mean, groups=1)

    def units(self, num_feat, num_unit, groups):
        return [ResidualBlock(num_feat, self.body_conv) for _ in range(num_unit)]


@register(ARCH_REGISTRY)
class CARN_M(_CascadingResidualNetwork):
    """CARN-M, the mobile CARN: efficient residual blocks, group convs (``groups``, 4 in the paper)
    in them and in the upsampler, and one residual block shared within each cascading block.

    Same arguments as ``CARN`` plus ``groups``.
    """

    def __init__(self, num_in_ch, num_out_ch, num_feat=64, num_block=3, num_unit=3, upscale=4, groups=4,
                 img_range=1., rgb_mean=(0.4488, 0.4371, 0.4040)):
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, num_unit, upscale, img_range, rgb_mean, groups)

    def units(self, num_feat, num_unit, groups):
        return [EfficientResidualBlock(num_feat, groups, self.body_conv)]


@register(ARCH_REGISTRY)
class GhostCARN(GhostBody, CARN):
    """CARN whose residual blocks' 3x3 convs are Ghost layers.

    The paper does not list which of CARN's convs it ghosts; the choice here is the rule of
    the official GhostSR code for EDSR: the 3x3 convs of the repeated blocks are ghosted;
    the entry conv, upsampler and exit conv stay plain, and so do the 1x1 cascading
    fusions, which have no spatial extent for a shift to stand in for. The ghosted convs
    hold 69% of CARN's parameters at x2, so ``ratio: 0.5`` removes 34% of parameters and
    FLOPs (README, "The paper's other models").

    Same arguments as ``CARN``, plus the Ghost layer's (see ``GhostConv2d``): ``ratio``,
    ``max_shift``, ``orientation_groups``, ``abs_argmax`` and ``deploy``.
    """

    def __init__(self, num_in_ch, num_out_ch, num_feat=64, num_block=3, num_unit=3, upscale=4, img_range=1.,
                 rgb_mean=(0.4488, 0.4371, 0.4040), ratio=0.5, max_shift=1, orientation_groups=1, abs_argmax=False,
                 deploy=False):
        self.ghost_opt = dict(ratio=ratio, max_shift=max_shift, orientation_groups=orientation_groups,
                              abs_argmax=abs_argmax, deploy=deploy)
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, num_unit, upscale, img_range, rgb_mean)


@register(ARCH_REGISTRY)
class GhostCARN_M(GhostBody, CARN_M):
    """CARN-M whose efficient residual block's two 3x3 group convs are Ghost layers.

    The same rule as ``GhostCARN``. The Ghost layer's real conv stays a group conv
    (``groups`` groups, each computing ``ratio`` of its group's outputs) and the output is
    laid out per conv group (see ``GhostConv2d``'s ``conv_groups``): each group's ghosts
    follow that group's intrinsic channels, so every output channel stays in the plain
    group conv's group, and the next group conv's group ``g`` reads group ``g``'s intrinsic
    channels and their shifted copies, as CARN-M's does. CARN-M keeps most of its parameters
    in 1x1 convs (62% at x2) and its group-conv upsampler (14%), which stay plain, so the
    reduction is smaller than CARN's: 11% of parameters and 21% of FLOPs at x2 (README,
    "The paper's other models").

    Same arguments as ``CARN_M``, plus the Ghost layer's (see ``GhostConv2d``).
    """

    def __init__(self, num_in_ch, num_out_ch, num_feat=64, num_block=3, num_unit=3, upscale=4, groups=4,
                 img_range=1., rgb_mean=(0.4488, 0.4371, 0.4040), ratio=0.5, max_shift=1, orientation_groups=1,
                 abs_argmax=False, deploy=False):
        self.ghost_opt = dict(ratio=ratio, max_shift=max_shift, orientation_groups=orientation_groups,
                              abs_argmax=abs_argmax, deploy=deploy)
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, num_unit, upscale, groups, img_range, rgb_mean)
