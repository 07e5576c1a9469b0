"""GhostEDSR: shapes, parameter counts (paper: EDSR-L x2 loses about 46%), layer layout."""
import pytest
import torch
from basicsr.archs.edsr_arch import EDSR
from basicsr.utils.registry import ARCH_REGISTRY

from ghostsr_plugin.archs import GhostConv2d


def num_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_output_shapes(scale):
    net = ARCH_REGISTRY.get('GhostEDSR')(3, 3, num_feat=16, num_block=2, upscale=scale)
    x = torch.rand(2, 3, 11, 9)
    assert net(x).shape == (2, 3, 11 * scale, 9 * scale)
    assert net.eval()(x).shape == (2, 3, 11 * scale, 9 * scale)


def test_edsr_l_x2_parameter_counts():
    plain = EDSR(3, 3, num_feat=256, num_block=32, upscale=2, res_scale=0.1)
    ghost = ARCH_REGISTRY.get('GhostEDSR')(3, 3, num_feat=256, num_block=32, upscale=2, res_scale=0.1)
    assert num_params(plain) == 40_729_603
    assert num_params(ghost) == 21_847_619  # 64 body convs halved; 64 x 9 orientation logits
    assert 0.46 < 1 - num_params(ghost) / num_params(plain) < 0.47


def test_only_the_residual_body_is_ghosted():
    net = ARCH_REGISTRY.get('GhostEDSR')(3, 3, num_feat=16, num_block=3, upscale=2)
    ghosts = [name for name, m in net.named_modules() if isinstance(m, GhostConv2d)]
    assert ghosts == [f'body.{i}.conv{j}' for i in range(3) for j in (1, 2)]
    plain = EDSR(3, 3, num_feat=16, num_block=3, upscale=2).state_dict()
    for key, value in net.state_dict().items():
        if not key.startswith('body.'):
            assert plain[key].shape == value.shape
    assert net.state_dict()['body.0.conv1.primary.weight'].shape == (8, 16, 3, 3)
