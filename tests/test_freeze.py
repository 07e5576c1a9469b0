"""Freezing: frozen == eval-mode outputs exactly, deploy checkpoints, `ghostsr freeze`."""
import os.path as osp

import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

from ghostsr_plugin.archs import freeze, ghost_layers
from ghostsr_plugin.cli import ghostsr_main

from .conftest import write_options

NET_OPT = {'type': 'GhostEDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2,
           'orientation_groups': 2}


def trained_like_net(seed=0):
    """A small GhostEDSR whose logits point in varied directions, as after training."""
    torch.manual_seed(seed)
    net = ARCH_REGISTRY.get('GhostEDSR')(**{k: v for k, v in NET_OPT.items() if k != 'type'})
    for layer in ghost_layers(net):
        torch.nn.init.normal_(layer.logits, std=3)
    return net


def test_frozen_equals_eval_and_loads_into_deploy_arch():
    net = trained_like_net().eval()
    x = torch.rand(2, 3, 9, 7)
    expected = net(x)
    offsets = [layer.offset().clone() for layer in ghost_layers(net)]
    frozen = freeze(net)
    # Bit for bit: the same convs on the same sizes; only where the shift comes from differs (a copy).
    assert torch.equal(frozen(x), expected)
    state = frozen.state_dict()
    assert not [k for k in state if 'logits' in k]
    assert all(torch.equal(state[f'{n}.offsets'], o) for n, o in zip(
        [f'body.{i}.conv{j}' for i in range(2) for j in (1, 2)], offsets))
    deploy = ARCH_REGISTRY.get('GhostEDSR')(**{k: v for k, v in NET_OPT.items() if k != 'type'}, deploy=True)
    deploy.load_state_dict(state)  # strict
    assert torch.equal(deploy.eval()(x), expected)


def test_frozen_layer_trains_as_a_pure_shift():
    net = freeze(trained_like_net()).train()
    out = net(torch.rand(1, 3, 6, 6))
    out.mean().backward()
    layer = ghost_layers(net)[0]
    assert layer.primary.weight.grad.abs().sum() > 0 and not hasattr(layer, 'logits')


def test_ghostsr_freeze_command(tmp_path, capsys):
    net, ema = trained_like_net(0), trained_like_net(1)
    checkpoint = tmp_path / 'net_g_latest.pth'
    torch.save({'params': net.state_dict(), 'params_ema': ema.state_dict()}, checkpoint)
    opt_file = write_options(tmp_path / 'train.yml', {'name': 'x', 'network_g': NET_OPT})
    out = tmp_path / 'deploy.pth'

    ghostsr_main(['freeze', '-opt', opt_file, '--checkpoint', str(checkpoint), '--out', str(out)])
    deployed = torch.load(out, weights_only=True)
    assert set(deployed) == {'params', 'params_ema'}
    assert not [k for k in deployed['params'] if 'logits' in k]
    assert osp.getsize(out) < osp.getsize(checkpoint)
    x = torch.rand(1, 3, 8, 8)
    for key, reference in (('params', net), ('params_ema', ema)):
        deploy = ARCH_REGISTRY.get('GhostEDSR')(**{k: v for k, v in NET_OPT.items() if k != 'type'}, deploy=True)
        deploy.load_state_dict(deployed[key])
        assert torch.equal(deploy.eval()(x), reference.eval()(x))
    assert 'body.0.conv1: (dy, dx) =' in capsys.readouterr().out

    with pytest.raises(SystemExit):  # an existing --out is never replaced silently
        ghostsr_main(['freeze', '-opt', opt_file, '--checkpoint', str(checkpoint), '--out', str(out)])
    assert 'pass --overwrite' in capsys.readouterr().err


def test_freeze_rejects_a_checkpoint_of_another_arch(tmp_path, capsys):
    from basicsr.archs.edsr_arch import EDSR

    checkpoint = tmp_path / 'edsr.pth'
    torch.save({'params': EDSR(3, 3, 8, 2, 2).state_dict()}, checkpoint)
    opt_file = write_options(tmp_path / 'train.yml', {'name': 'x', 'network_g': NET_OPT})
    with pytest.raises(SystemExit):
        ghostsr_main(['freeze', '-opt', opt_file, '--checkpoint', str(checkpoint), '--out', str(tmp_path / 'o.pth')])
    assert 'does not fit GhostEDSR' in capsys.readouterr().err
    assert not (tmp_path / 'o.pth').exists()


def test_freeze_rejects_a_bare_state_dict_before_writing(tmp_path, capsys):
    checkpoint = tmp_path / 'bare.pth'
    torch.save(trained_like_net().state_dict(), checkpoint)  # no 'params' / 'params_ema' around it
    opt_file = write_options(tmp_path / 'train.yml', {'name': 'x', 'network_g': NET_OPT})
    with pytest.raises(SystemExit):
        ghostsr_main(['freeze', '-opt', opt_file, '--checkpoint', str(checkpoint), '--out', str(tmp_path / 'o.pth')])
    err = capsys.readouterr().err
    assert f"{checkpoint}: expected a BasicSR checkpoint with 'params' and/or 'params_ema'" in err
    assert "found keys ['body.0.conv1.logits'" in err
    assert not (tmp_path / 'o.pth').exists()
