"""RDN (Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR 2018), plain and Ghost.

BasicSR ships no RDN. The layout follows the paper and the reference PyTorch code
(EDSR-PyTorch's ``rdn.py``, configuration B): shallow feature extraction (two 3x3 convs),
``num_block`` residual dense blocks of ``num_layer`` densely connected 3x3 conv + ReLU
layers with 1x1 local feature fusion and a local residual, global feature fusion
(1x1 over all block outputs, then 3x3) with a global residual to the first conv's output,
sub-pixel upsampling and a last 3x3 conv.

Parameter counts (``tests/test_paper_archs.py``): 22,123,395 at x2, 22,308,035 at x3,
22,271,107 at x4 (the paper: about 22M; EDSR-PyTorch's RDN has exactly these counts).
Two differences from the reference code, neither changing a parameter count: the input
is normalized BasicSR's way (``img_range``, ``rgb_mean``; ``rgb_mean: [0, 0, 0]`` gives the
reference's plain 0-255 input), and the upsampler is BasicSR's ``Upsample`` with
``num_feat`` channels where the reference uses ``num_grow_ch`` (equal, 64, in the paper).
"""
import torch
from basicsr.archs.arch_util import Upsample
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from ghostsr_plugin.registration import register

from .arch_util import GhostBody, PixelRange, conv3x3


class RDB(nn.Module):
    """Residual dense block: layer ``i`` (3x3 conv + ReLU, ``num_feat + i * num_grow_ch -> num_grow_ch``)
    sees the block input and every earlier layer's output; a 1x1 conv fuses them all back to
    ``num_feat`` and the block input is added."""

    def __init__(self, num_feat, num_grow_ch, num_layer, body_conv):
        super().__init__()
        self.convs = nn.ModuleList(body_conv(num_feat + i * num_grow_ch, num_grow_ch) for i in range(num_layer))
        self.lff = nn.Conv2d(num_feat + num_layer * num_grow_ch, num_feat, 1)

    def forward(self, x):
        features = x
        for conv in self.convs:
            features = torch.cat([features, F.relu(conv(features))], dim=1)
        return x + self.lff(features)


@register(ARCH_REGISTRY)
class RDN(nn.Module):
    """Residual dense network.

    Args:
        num_in_ch, num_out_ch: image channels.
        num_feat: G0, channels between blocks. num_block: D, residual dense blocks.
        num_layer: C, conv layers per block. num_grow_ch: G, growth rate (channels per layer).
        upscale: 2, 3 or 4 (powers of 2 in general). img_range, rgb_mean: input normalization.
    """

    body_conv = staticmethod(conv3x3)

    def __init__(self, num_in_ch, num_out_ch, num_feat=64, num_block=16, num_layer=8, num_grow_ch=64, upscale=4,
                 img_range=255., rgb_mean=(0.4488, 0.4371, 0.4040)):
        super().__init__()
        self.pixel_range = PixelRange(img_range, rgb_mean)
        self.sfe1 = nn.Conv2d(num_in_ch, num_feat, 3, padding=1)
        self.sfe2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.rdbs = nn.ModuleList(RDB(num_feat, num_grow_ch, num_layer, self.body_conv) for _ in range(num_block))
        self.gff = nn.Sequential(nn.Conv2d(num_block * num_feat, num_feat, 1),
                                 nn.Conv2d(num_feat, num_feat, 3, padding=1))
        self.upsample = Upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, padding=1)

    def forward(self, x):
        shallow = self.sfe1(self.pixel_range(x))
        x = self.sfe2(shallow)
        block_outputs = []
        for rdb in self.rdbs:
            x = rdb(x)
            block_outputs.append(x)
        x = self.gff(torch.cat(block_outputs, dim=1)) + shallow
        return self.pixel_range.inverse(self.conv_last(self.upsample(x)))


@register(ARCH_REGISTRY)
class GhostRDN(GhostBody, RDN):
    """RDN whose dense layers (the 3x3 convs inside the residual dense blocks) are Ghost layers.

    The paper does not list which of RDN's convs it ghosts; the choice here is the rule of
    the official GhostSR code for EDSR: the 3x3 convs of the repeated blocks are ghosted,
    the convs outside them (shallow feature extraction, the 3x3 after global fusion,
    upsampler, last conv) stay plain, and so do the 1x1 fusion convs, which have no
    spatial extent for a shift to stand in for. The dense layers hold 96% of RDN's
    parameters, so ``ratio: 0.5`` removes 48% of its parameters and FLOPs (README, "The
    paper's other models"). A dense layer's input includes earlier layers' ghost channels:
    ghosts feed the dense connections like any other feature.

    Same arguments as ``RDN``, plus the Ghost layer's (see ``GhostConv2d``): ``ratio``,
    ``max_shift``, ``orientation_groups``, ``abs_argmax`` and ``deploy``.
    """

    def __init__(self, num_in_ch, num_out_ch, num_feat=64, num_block=16, num_layer=8, num_grow_ch=64, upscale=4,
                 img_range=255., rgb_mean=(0.4488, 0.4371, 0.4040), ratio=0.5, max_shift=1, orientation_groups=1,
                 abs_argmax=False, deploy=False):
        self.ghost_opt = dict(ratio=ratio, max_shift=max_shift, orientation_groups=orientation_groups,
                              abs_argmax=abs_argmax, deploy=deploy)
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, num_layer, num_grow_ch, upscale, img_range,
                         rgb_mean)
