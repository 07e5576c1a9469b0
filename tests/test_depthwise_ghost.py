"""Ghosts by a depthwise conv (GhostNet's cheap operation, the GhostSR paper's ablation): an option of the one Ghost
layer that trains, freezes and exports like the shift, its FLOPs counted."""
import pytest
import torch
from torch.nn import functional as F

from ghostsr_plugin.archs import GhostConv2d, freeze, shift_layers
from ghostsr_plugin.archs.ghost_edsr_arch import GhostEDSR
from ghostsr_plugin.cli import ghostsr_main
from ghostsr_plugin.cost import count_flops
from ghostsr_plugin.evaluate import load_model
from ghostsr_plugin.option_check import OptionError, check_options

from .conftest import write_options


def test_each_ghost_is_its_intrinsic_channel_through_a_3x3_depthwise_conv():
    torch.manual_seed(0)
    layer = GhostConv2d(6, 8, ratio=0.25, cheap_op='depthwise')  # 2 intrinsic channels, 6 ghosts: reused in order
    x = torch.rand(2, 6, 7, 9)
    with torch.no_grad():
        out = layer(x)
        intrinsic = layer.primary(x)
        ghosts = [F.conv2d(intrinsic[:, c % 2:c % 2 + 1], layer.cheap.weight[c:c + 1], layer.cheap.bias[c:c + 1],
                           padding=1) for c in range(6)]
    assert torch.allclose(out, torch.cat([intrinsic, *ghosts], 1), atol=1e-6)
    assert not hasattr(layer, 'logits') and layer.frozen and not shift_layers(layer)
    with pytest.raises(ValueError, match='conv_groups=1'):
        GhostConv2d(8, 8, conv_groups=2, cheap_op='depthwise')
    with pytest.raises(ValueError, match="cheap_op must be one of \\('shift', 'depthwise'\\)"):
        GhostConv2d(8, 8, cheap_op='dw')


def test_flops_count_the_depthwise_conv():
    common = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, upscale=2)
    x = torch.rand(1, 3, 10, 12)
    shift, depthwise = GhostEDSR(**common).eval(), GhostEDSR(**common, cheap_op='depthwise').eval()
    # 4 Ghost layers, 4 ghosts each: a 3x3 depthwise conv is 2 * 9 FLOPs per ghost value; a shift counts none
    assert count_flops(depthwise, x) - count_flops(shift, x) == 4 * 4 * 2 * 9 * 10 * 12


def test_trains_freezes_and_exports_like_the_shift(tmp_path, tiny_options, run_cli, capsys):
    opt = {**tiny_options, 'name': 'dw', 'network_g': {**tiny_options['network_g'], 'cheap_op': 'depthwise'}}
    opt['train'] = {**opt['train'], 'total_iter': 2}
    del opt['val']
    options = write_options(tmp_path / 'dw.yml', opt)
    run_cli('basicsr', 'train', '-opt', options)
    models = tmp_path / 'experiments' / 'dw' / 'models'
    net = load_model(opt['network_g'], str(models / 'net_g_latest.pth'))
    assert len(list(net.parameters())) == len(net.state_dict())  # nothing learned beyond the weights
    deploy = load_model({**opt['network_g'], 'deploy': True}, str(models / 'net_g_deploy.pth'))
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(deploy(x), freeze(net)(x))
    ghostsr_main(['export', '-opt', options, '--checkpoint', str(models / 'net_g_latest.pth'),
                  '--out', str(tmp_path / 'dw.onnx'), '--check'])
    printed = capsys.readouterr().out
    assert 'freezing' not in printed  # depthwise ghosts: nothing to freeze
    assert max(float(line.rsplit(' ', 1)[1]) for line in printed.splitlines() if 'largest difference' in line) < 1e-5


def test_the_clustering_init_is_refused_naming_the_key(tmp_path, tiny_options):
    opt = {**tiny_options, 'network_g': {**tiny_options['network_g'], 'cheap_op': 'depthwise'},
           'ghost_init': {'checkpoint': str(tmp_path / 'teacher.pth')}}
    with pytest.raises(OptionError, match="key 'network_g.cheap_op': 'depthwise': the clustering init"):
        check_options(write_options(tmp_path / 'o.yml', opt), is_train=True)
