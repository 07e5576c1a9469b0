"""GhostEDSR: BasicSR's EDSR with every 3x3 conv of its residual body a Ghost layer."""
from basicsr.archs.arch_util import make_layer
from basicsr.archs.edsr_arch import EDSR
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ghostsr_plugin.registration import register

from .ghost_layer import GhostConv2d


class GhostResidualBlock(nn.Module):
    """BasicSR's ``ResidualBlockNoBN`` (conv-ReLU-conv, scaled residual) with Ghost convs.

    Submodule names match it (``conv1``, ``conv2``), so a plain EDSR's ``body.N.conv1``
    corresponds to ``body.N.conv1.primary`` here.
    """

    def __init__(self, num_feat=64, res_scale=1, **ghost_opt):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = GhostConv2d(num_feat, num_feat, 3, **ghost_opt)
        self.conv2 = GhostConv2d(num_feat, num_feat, 3, **ghost_opt)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


@register(ARCH_REGISTRY)
class GhostEDSR(EDSR):
    """EDSR whose residual body is Ghost layers; head, upsampler and tail stay plain.

    Same arguments as BasicSR's ``EDSR``, plus the Ghost layer's (see ``GhostConv2d``):
    ``ratio`` (lambda), ``max_shift`` (d), ``orientation_groups``, ``abs_argmax``, ``deploy``
    (frozen integer shifts, for checkpoints written by ``ghostsr freeze``) and ``cheap_op``
    (``'depthwise'``: ghosts by a 3x3 depthwise conv, the GhostSR paper's GhostNet ablation).
    """

    def __init__(self, num_in_ch, num_out_ch, num_feat=64, num_block=16, upscale=4, res_scale=1, img_range=255.,
                 rgb_mean=(0.4488, 0.4371, 0.4040), ratio=0.5, max_shift=1, orientation_groups=1, abs_argmax=False,
                 deploy=False, cheap_op='shift'):
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, upscale, res_scale, img_range, rgb_mean)
        self.body = make_layer(GhostResidualBlock, num_block, num_feat=num_feat, res_scale=res_scale, ratio=ratio,
                               max_shift=max_shift, orientation_groups=orientation_groups, abs_argmax=abs_argmax,
                               deploy=deploy, cheap_op=cheap_op)
