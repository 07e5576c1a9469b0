"""RDN, CARN and CARN-M, plain and Ghost: shapes, published sizes, the Ghost archs against the
plain ones, freezing, and training through `basicsr train`."""
import copy
from pathlib import Path

import pytest
import torch
import yaml
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ghostsr_plugin import ops
from ghostsr_plugin.archs import freeze, named_ghost_layers
from ghostsr_plugin.cost import cost_input, count_params, network_cost

from .conftest import REPO_ROOT, write_options

GHOST_OF = {'RDN': 'GhostRDN', 'CARN': 'GhostCARN', 'CARN_M': 'GhostCARN_M'}
SMALL = {  # small but complete: every kind of layer, dense and cascade connections, sharing, groups
    'RDN': dict(num_feat=8, num_block=2, num_layer=3, num_grow_ch=4),
    'CARN': dict(num_feat=8, num_block=2, num_unit=2),
    'CARN_M': dict(num_feat=16, num_block=2, num_unit=3, groups=4),  # 2 ghosts per conv group: 2 orientation groups
}
GHOST_KEYS = ('ratio', 'max_shift', 'orientation_groups', 'abs_argmax', 'deploy')
GHOSTED = {  # the module paths that are Ghost layers in the small configurations
    'RDN': [f'rdbs.{b}.convs.{i}' for b in range(2) for i in range(3)],
    'CARN': [f'body.units.{b}.units.{u}.conv{c}' for b in range(2) for u in range(2) for c in (1, 2)],
    'CARN_M': [f'body.units.{b}.units.0.conv{c}' for b in range(2) for c in (1, 2)],
}


def build(arch, scale=2, **kwargs):
    plain = arch.removeprefix('Ghost')
    return ARCH_REGISTRY.get(arch)(3, 3, upscale=scale, **SMALL[plain], **kwargs)


def trained_like(arch, seed=0, **kwargs):
    """A small Ghost net whose logits point in varied directions, as after training."""
    torch.manual_seed(seed)
    net = build(arch, **kwargs)
    for _, layer in named_ghost_layers(net):
        nn.init.normal_(layer.logits, std=3)
    return net


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('arch', [*GHOST_OF, *GHOST_OF.values()])
def test_output_shapes(arch, scale):
    net = build(arch, scale)
    x = torch.rand(2, 3, 7, 5)
    assert net(x).shape == (2, 3, 7 * scale, 5 * scale)
    assert net.eval()(x).shape == (2, 3, 7 * scale, 5 * scale)


# Full-size parameter counts, verified against the papers in the archs' docstrings.
PARAMS = {
    'RDN': (22_123_395, 22_308_035, 22_271_107), 'GhostRDN': (11_503_619, 11_688_259, 11_651_331),
    'CARN': (964_163, 1_148_803, 1_111_875), 'GhostCARN': (631_973, 816_613, 779_685),
    'CARN_M': (257_027, 303_427, 294_147), 'GhostCARN_M': (229_241, 275_641, 266_361),
}


def full_size(arch, scale, **kwargs):
    with torch.device('meta'):
        return ARCH_REGISTRY.get(arch)(3, 3, upscale=scale, **kwargs)


@pytest.mark.parametrize('arch', PARAMS)
def test_parameter_counts(arch):
    assert tuple(count_params(full_size(arch, s)) for s in (2, 3, 4)) == PARAMS[arch]


def test_rdn_is_the_papers_22m():
    assert 22.0e6 < count_params(full_size('RDN', 2)) < 22.4e6


@pytest.mark.parametrize('arch, published', [('CARN', 1_592_000), ('CARN_M', 412_000)])
def test_carn_multi_scale_counts_match_the_paper(arch, published):
    """The paper's counts are of one body with x2, x3 and x4 upsamplers."""
    nets = {s: full_size(arch, s) for s in (2, 3, 4)}
    multi_scale = count_params(nets[2]) + count_params(nets[3].upsample) + count_params(nets[4].upsample)
    without_bias = multi_scale - sum(p.numel() for s, net in nets.items() for name, p in net.named_parameters()
                                     if name.endswith('bias') and (s == 2 or name.startswith('upsample.')))
    if arch == 'CARN':
        assert multi_scale == 1_591_939 and round(multi_scale, -3) == published
    else:  # 414,787 with biases; the paper's 412K matches the count without them
        assert multi_scale == 414_787 and round(without_bias, -3) == published


@pytest.mark.parametrize('arch, mult_adds', [('CARN', (222.8e9, 118.8e9, 90.9e9)),
                                             ('CARN_M', (91.2e9, 46.1e9, 32.5e9))])
def test_carn_flops_match_the_papers_mult_adds_at_720p(arch, mult_adds):
    """CARN's paper reports multiply-adds for a 1280 x 720 output; FlopCounterMode counts 2 per
    multiply-add. At x3 the input here is 426 x 240 LR pixels, where 1280 x 720 needs 426.7 x 240."""
    for scale, published in zip((2, 3, 4), mult_adds):
        flops = network_cost({'type': arch, 'num_in_ch': 3, 'num_out_ch': 3, 'upscale': scale})['flops']
        lr_pixels = cost_input(scale)[0, 0].numel()
        assert abs(flops / 2 - published * lr_pixels * scale**2 / (1280 * 720)) < 0.05e9


@pytest.mark.parametrize('plain', GHOST_OF)
def test_ghost_layers_replace_the_plain_convs_at_the_same_paths(plain):
    ghost_net, plain_net = build(GHOST_OF[plain]), build(plain)
    names = [name for name, _ in named_ghost_layers(ghost_net)]
    assert names == GHOSTED[plain]
    plain_modules = dict(plain_net.named_modules())
    for name, layer in named_ghost_layers(ghost_net):
        conv = plain_modules[name]
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
        assert (layer.primary.in_channels, layer.primary.groups) == (conv.in_channels, conv.groups)
        assert (layer.out_channels, layer.primary.out_channels) == (conv.out_channels, -(-conv.out_channels // 2))
    # Everything else is the plain arch, key for key and shape for shape.
    ghost_state = ghost_net.state_dict()
    rest = {k: v.shape for k, v in plain_net.state_dict().items() if not k.startswith(tuple(n + '.' for n in names))}
    assert rest == {k: v.shape for k, v in ghost_state.items() if not k.startswith(tuple(n + '.' for n in names))}


class ReferenceGhost(nn.Module):
    """A Ghost layer spelled out channel by channel: ``concat(x1, shift(x1[c % C]) for each ghost c)``,
    within each conv group of a group conv (``x1`` and the ghosts of that group), the groups in order."""

    def __init__(self, primary, num_ghost, offset):
        super().__init__()
        self.primary, self.num_ghost, self.offset = primary, num_ghost, offset

    def forward(self, x):
        groups = self.primary.groups
        outputs = []
        for x1 in self.primary(x).chunk(groups, dim=1):
            c = x1.shape[1]
            outputs += [x1, *(ops.shift(x1[:, [k % c]], self.offset) for k in range(self.num_ghost // groups))]
        return torch.cat(outputs, dim=1)


@pytest.mark.parametrize('plain', GHOST_OF)
def test_ghost_arch_in_eval_is_the_plain_arch_with_reference_ghost_layers(plain):
    ghost_net = trained_like(GHOST_OF[plain]).eval()
    reference = build(plain).eval()
    for name, layer in named_ghost_layers(ghost_net):
        parent, _, child = name.rpartition('.')
        offset = layer.offset()[0].tolist()
        setattr(reference.get_submodule(parent), child, ReferenceGhost(copy.deepcopy(layer.primary), layer.num_ghost,
                                                                       offset))
    reference.load_state_dict({k: v for k, v in ghost_net.state_dict().items() if not k.endswith('.logits')})
    assert len({tuple(layer.offset()[0].tolist()) for _, layer in named_ghost_layers(ghost_net)}) > 1
    x = torch.rand(2, 3, 9, 8)
    # Bit for bit: the same convs on the same sizes; the Ghost op and shift + cat are pure copies.
    assert torch.equal(ghost_net(x), reference(x))


def test_carn_m_shares_one_unit_within_each_cascading_block():
    net = build('GhostCARN_M')
    block = net.body.units[0]
    assert len(block.units) == 1 and len(block.fuse) == 3
    calls = []
    block.units[0].conv1.register_forward_hook(lambda *_: calls.append(1))
    net(torch.rand(1, 3, 6, 6)).mean().backward()
    assert len(calls) == 3 and block.units[0].conv1.logits.grad.abs().sum() > 0


@pytest.mark.parametrize('arch', GHOST_OF.values())
def test_frozen_equals_eval_and_loads_into_the_deploy_arch(arch):
    net = trained_like(arch, orientation_groups=2).eval()
    x = torch.rand(2, 3, 8, 7)
    expected = net(x)
    frozen = freeze(copy.deepcopy(net))
    assert torch.equal(frozen(x), expected)  # the same arithmetic: only the offset's source differs
    deploy = build(arch, orientation_groups=2, deploy=True)
    deploy.load_state_dict(frozen.state_dict())  # strict
    assert all(layer.frozen for _, layer in named_ghost_layers(deploy))
    assert torch.equal(deploy.eval()(x), expected)


@pytest.mark.parametrize('arch', GHOST_OF.values())
def test_ghost_arch_trains_through_basicsr(arch, tmp_path, tiny_options, run_cli):
    tiny_options['name'] = f'tiny_{arch}'
    tiny_options['network_g'] = {'type': arch, 'num_in_ch': 3, 'num_out_ch': 3, 'upscale': 2,
                                 **SMALL[arch.removeprefix('Ghost')]}
    tiny_options['train']['total_iter'] = 2
    run_cli('basicsr', 'train', '-opt', write_options(tmp_path / 'tiny.yml', tiny_options))
    models = tmp_path / 'experiments' / tiny_options['name'] / 'models'
    state = torch.load(models / 'net_g_latest.pth', weights_only=True)['params']
    assert state.keys() == build(arch).state_dict().keys()
    deploy = build(arch, deploy=True)
    deploy.load_state_dict(torch.load(models / 'net_g_deploy.pth', weights_only=True)['params'])  # strict


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('model', ['RDN', 'CARN', 'CARN_M'])
def test_plain_and_ghost_options_differ_only_in_the_ghost_settings(model, scale):
    plain, ghost = (yaml.safe_load(Path(REPO_ROOT, 'options', 'train', arch, f'train_{arch}_x{scale}.yml').read_text())
                    for arch in (model, f'Ghost{model}'))
    assert (plain['model_type'], ghost['model_type']) == ('SRModel', 'GhostSRModel')
    assert plain['network_g'] == {**{k: v for k, v in ghost['network_g'].items() if k not in GHOST_KEYS},
                                  'type': ghost['network_g']['type'].removeprefix('Ghost')}
    assert ghost['train'].pop('temperature_schedule')['period'] == 1000
    for section in ('scale', 'datasets', 'path', 'train', 'val', 'logger'):
        assert plain[section] == ghost[section]
