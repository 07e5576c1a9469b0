"""The Ghost wrapper: any registered arch's convs as Ghost layers, from the option file alone."""
import copy
import os.path as osp

import pytest
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from ghostsr_plugin.archs import GhostConv2d, freeze, ghost_layers, named_ghost_layers
from ghostsr_plugin.archs.conversion import ConversionError, select_convs
from ghostsr_plugin.cost import count_params, network_cost
from ghostsr_plugin.init import init_from_plain
from ghostsr_plugin.init.orientation import fit_orientations
from ghostsr_plugin.onnx_export import check_onnx, export_onnx, onnx_op_types
from ghostsr_plugin.option_check import OptionError, check_network_options

from .conftest import write_options

SMALL = {  # BasicSR's archs, small: every kind of layer their full sizes have
    'MSRResNet': dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_block=2, upscale=4),
    'RCAN': dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_group=2, num_block=2, squeeze_factor=4, upscale=2),
    'RRDBNet': dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_block=1, num_grow_ch=8, scale=4),
    'SwinIR': dict(img_size=16, embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4, mlp_ratio=2,
                   upscale=2, upsampler='pixelshuffle'),
}
BODY = {  # what convert: body picks in them (docs/any_arch.md), written out
    'MSRResNet': [f'body.{b}.conv{c}' for b in range(2) for c in (1, 2)],
    'RCAN': [p for g in range(2) for p in (*(f'body.{g}.residual_group.{b}.rcab.{i}' for b in range(2) for i in (0, 2)),
                                           f'body.{g}.conv')],
    'RRDBNet': [f'body.0.rdb{r}.conv{c}' for r in (1, 2, 3) for c in range(1, 6)],
    'SwinIR': ['layers.0.conv', 'layers.1.conv'],
}
HAND_WRITTEN = {  # the paper's archs, written by hand: (plain arch, small arguments, convert)
    'GhostEDSR': ('EDSR', dict(num_feat=16, num_block=2), 'body'),
    'GhostRDN': ('RDN', dict(num_feat=8, num_block=2, num_layer=3, num_grow_ch=8), 'body'),
    'GhostCARN': ('CARN', dict(num_feat=8, num_block=2, num_unit=2), 'body'),
    'GhostCARN_M': ('CARN_M', dict(num_feat=16, num_block=2), ['body.units.*.units.*.conv[12]']),
}


def ghost(arch, seed=0, **ghost_opt):
    torch.manual_seed(seed)
    return build_network({'type': 'Ghost', 'base': {'type': arch, **SMALL[arch]}, **ghost_opt})


def plain(arch, seed=0):
    torch.manual_seed(seed)
    return build_network({'type': arch, **SMALL[arch]})


def plain_at_full_strength(arch, seed):
    """``arch`` (small) with every conv at Kaiming's scale and random biases, so that the body shapes the output.

    (MSRResNet's own init scales its residual convs by 0.1 and zeroes biases: its output is nearly its bilinear skip.)
    """
    net = plain(arch, seed).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
            torch.nn.init.normal_(module.bias, std=0.1)
    return net


@pytest.mark.parametrize('arch', list(SMALL))
def test_convert_body_picks_the_body_convs(arch):
    assert [path for path, _ in named_ghost_layers(ghost(arch))] == BODY[arch]


@pytest.mark.parametrize('arch', list(SMALL))
def test_conversion_keeps_every_other_tensor_and_starts_from_the_first_filters(arch):
    """The wrapper builds the base as the base builds itself, then only swaps convs (its own init kept)."""
    reference, net = plain(arch).state_dict(), ghost(arch)
    layers = dict(named_ghost_layers(net))
    for key, value in net.state_dict().items():
        path, _, name = key.rpartition('.')
        if path in layers:  # the logits: fresh
            assert name == 'logits'
        elif path.endswith('.primary'):
            rows = layers[path[:-len('.primary')]].primary.out_channels
            assert torch.equal(value, reference[f"{path[:-len('.primary')]}.{name}"][:rows]), key
        else:
            assert torch.equal(value, reference[key]), key


@pytest.mark.parametrize('ghost_type', list(HAND_WRITTEN))
def test_the_wrapper_is_the_hand_written_ghost_arch(ghost_type):
    plain_type, kwargs, convert = HAND_WRITTEN[ghost_type]
    hand_written = ARCH_REGISTRY.get(ghost_type)(3, 3, upscale=2, **kwargs).eval()
    for layer in ghost_layers(hand_written):  # orientations pointing in varied directions, as after training
        torch.nn.init.normal_(layer.logits, std=3)
    wrapped = build_network({'type': 'Ghost', 'base': {'type': plain_type, 'num_in_ch': 3, 'num_out_ch': 3,
                                                       'upscale': 2, **kwargs}, 'convert': convert}).eval()
    assert count_params(wrapped) == count_params(hand_written)
    assert {k: v.shape for k, v in wrapped.state_dict().items()} == \
        {k: v.shape for k, v in hand_written.state_dict().items()}
    wrapped.load_state_dict(hand_written.state_dict())
    x = torch.rand(1, 3, 10, 9)
    with torch.no_grad():
        assert torch.equal(wrapped(x), hand_written(x))


@pytest.mark.parametrize('ghost_type, plain_section', [
    ('GhostEDSR', dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=256, num_block=32, upscale=2, res_scale=0.1)),
    ('GhostRDN', dict(type='RDN', num_in_ch=3, num_out_ch=3, upscale=2)),
    ('GhostCARN', dict(type='CARN', num_in_ch=3, num_out_ch=3, upscale=2)),
])
def test_full_size_counts_equal_the_hand_written_ones(ghost_type, plain_section):
    hand_written = {**plain_section, 'type': ghost_type}
    assert network_cost({'type': 'Ghost', 'base': plain_section}) == network_cost(hand_written)


def duplicated(arch):
    """``arch`` (small, full strength) whose converted convs hold filter p + C/2 = filter p, biases too."""
    net = plain_at_full_strength(arch, seed=0)
    state = net.state_dict()
    for path in BODY[arch]:
        half = state[f'{path}.weight'].shape[0] // 2
        for key in (f'{path}.weight', f'{path}.bias'):
            state[key][half:] = state[key][:half]
    net.load_state_dict(state)
    return net


@pytest.mark.parametrize('arch', ['MSRResNet', 'RCAN'])
def test_cluster_init_with_orientation_fit_computes_the_plain_function_of_duplicated_filters(arch):
    reference = duplicated(arch)
    net = ghost(arch, seed=1).eval()
    choices = init_from_plain(net, reference.state_dict(), 'cluster', seed=0)
    fits = fit_orientations(net, reference, choices, torch.rand(2, 3, 12, 12))
    assert set(fits) == set(BODY[arch])
    assert all(layer.offset().abs().sum() == 0 for layer in ghost_layers(net))  # the unshifted copies fit best
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        assert (net(x) - reference(x)).abs().max() < 1e-4
        unrelated = plain_at_full_strength(arch, seed=2)  # the same init from filters that do not repeat: far off
        init_from_plain(net, unrelated.state_dict(), 'cluster', seed=0)
        assert (net(x) - unrelated(x)).abs().max() > 1e-2


@pytest.mark.parametrize('arch', list(SMALL))
def test_every_converted_arch_freezes_and_exports_to_onnx_with_standard_ops(arch, tmp_path):
    net = ghost(arch)
    for layer in ghost_layers(net):
        torch.nn.init.normal_(layer.logits, std=3)
    net = freeze(net.eval())
    deploy = build_network({'type': 'Ghost', 'base': {'type': arch, **SMALL[arch]}, 'deploy': True})
    deploy.load_state_dict(net.state_dict())  # strict: a frozen checkpoint loads into the deploy form
    x = torch.rand(1, 3, 16, 12)
    with torch.no_grad():
        assert torch.equal(deploy.eval()(x), net(x))
    # SwinIR (plain as well) exports at one input size only: torch.export cannot trace its windows at any size
    sizes, dynamic = (((1, 3, 16, 16),), False) if arch == 'SwinIR' else (((1, 3, 9, 7), (2, 3, 16, 21)), True)
    path = export_onnx(net, str(tmp_path / f'{arch}.onnx'), example_size=sizes[0], dynamic=dynamic)
    assert all(d <= 1e-5 for _, d in check_onnx(net, path, sizes=sizes))
    assert {domain for domain, _ in onnx_op_types(path)} == {''}  # the standard domain only


def test_compiled_frozen_converted_arch_equals_eager():
    net = freeze(ghost('RCAN').eval())  # channel attention, and a forward that assigns to its module
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(net, fullgraph=True)(x), net(x), atol=1e-5, rtol=0)


def checked(section):
    return check_network_options('x.yml', {'network_g': section})


GOOD = {'type': 'Ghost', 'base': {'type': 'MSRResNet', **SMALL['MSRResNet']}}


@pytest.mark.parametrize('change, fragments', [
    ({'base': {**GOOD['base'], 'type': 'MSRResNett'}}, ["'network_g.base.type'", "unknown arch 'MSRResNett' (did "
                                                        "you mean 'MSRResNet'?)"]),
    ({'base': {**GOOD['base'], 'num_feet': 8}}, ["'network_g.base.num_feet'", 'not an argument of MSRResNet',
                                                 "(did you mean 'num_feat'?)"]),
    ({'ratoi': 0.5}, ["'network_g.ratoi'", "not an argument of Ghost (did you mean 'ratio'?)"]),
    ({'ratio': 1.5}, ["'network_g.ratio'", 'expected a number in (0, 1], found 1.5']),
    ({'max_shift': 1.0}, ["'network_g.max_shift'", 'expected an integer >= 0, found 1.0']),
    ({'convert': ['body.*.conv9']}, ["'network_g.convert'", "pattern 'body.*.conv9' matches no conv of MSRResNet; "
                                                            'its convs: conv_first, body.0.conv1']),
    ({'base': {'type': 'VGGStyleDiscriminator', 'num_in_ch': 3, 'num_feat': 8}, 'convert': ['conv0_1']},
     ["'network_g.convert'", "cannot convert 'conv0_1' (Conv2d 8->8 4x4, stride=(2, 2), padding=(1, 1))",
      'the Ghost layer needs a square kernel of odd size']),
    ({'convert': 7}, ["'network_g.convert'", "expected 'body' or a list of module-name patterns, found 7"]),
    ({'orientation_groups': 3}, ["'network_g'", "cannot convert 'body.0.conv1' (Conv2d 16->16 3x3)",
                                 'cannot be split into orientation_groups=3']),
    ({'base': {'type': 'CARN_M', 'num_in_ch': 3, 'num_out_ch': 3}}, ["'network_g.convert'", 'CARN_M has no body '
                                                                     'conv by the rule of convert: body']),
    ({'base': {'type': 'GhostEDSR', 'num_in_ch': 3, 'num_out_ch': 3}}, ["'network_g.base'", 'GhostEDSR already has '
                                                                        'Ghost layers; convert its plain arch']),
    ({'base': {**GOOD['base'], 'upscale': 5}}, ["'network_g.base'", 'MSRResNet cannot be built']),
])
def test_bad_wrapper_sections_fail_naming_the_key_and_the_module(change, fragments):
    section = {**copy.deepcopy(GOOD), **change}
    with pytest.raises(OptionError) as error:
        checked(section)
    for fragment in fragments:
        assert fragment in str(error.value)
    assert '\n' not in str(error.value)


def test_a_good_wrapper_section_passes_and_a_pattern_converts_group_convs():
    assert checked(GOOD) == GOOD
    section = {'type': 'Ghost', 'base': {'type': 'CARN_M', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 16},
               'convert': ['body.units.*.units.*.conv[12]']}
    assert checked(section) == section


class Branching(torch.nn.Module):
    """Branches on a tensor's value, which fx cannot trace."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1)))

    def forward(self, x):
        return self.body(x) if x.mean() > 0 else x


def test_an_untraceable_network_needs_patterns_for_its_body():
    with pytest.raises(ConversionError, match=r"Branching cannot be traced \(TraceError: .*\); convert: body needs "
                                              'the trace'):
        select_convs(Branching(), 'body', GhostConv2d)
    assert select_convs(Branching(), ['body.*'], GhostConv2d) == ['body.0.0']


def test_the_wrapper_goes_through_every_command(tmp_path, tiny_options, run_cli):
    """basicsr train with ghost_init from a plain checkpoint (its network: network_g's base), then freeze,
    export and benchmark, all from the option file."""
    base = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2}
    torch.manual_seed(0)
    teacher = build_network(base)
    torch.save({'params': teacher.state_dict()}, tmp_path / 'plain.pth')
    tiny_options['network_g'] = {'type': 'Ghost', 'base': base}
    tiny_options['ghost_init'] = {'checkpoint': str(tmp_path / 'plain.pth'), 'method': 'cluster'}
    tiny_options['train']['total_iter'] = 2
    options = write_options(tmp_path / 'ghost.yml', tiny_options)
    run_cli('basicsr', 'train', '-opt', options)
    log = next((tmp_path / 'experiments' / tiny_options['name']).glob('train_*.log')).read_text()
    assert 'Ghost init by cluster (seed 0, orientation fit)' in log
    assert log.count(': 8 filters -> 4 clusters') == 4  # body.0.conv1 ... body.1.conv2

    run_cli('ghostsr', 'freeze', '-opt', options, '--out', 'deploy.pth')
    deploy = build_network({**tiny_options['network_g'], 'deploy': True})
    deploy.load_state_dict(torch.load(tmp_path / 'deploy.pth', weights_only=True)['params'])  # strict
    run_cli('ghostsr', 'export', '-opt', options, '--checkpoint', 'deploy.pth', '--out', 'm.onnx', '--check')
    printed = run_cli('ghostsr', 'benchmark', options, '--latency_only', '--latency_size', '8', '8', '--warmup', '0',
                      '--repeats', '1', '--out', 'bench').stdout
    assert f"{tiny_options['name']} x2" in printed  # the scale read from network_g.base.upscale
    bad = {**tiny_options, 'network_g': {**tiny_options['network_g'], 'convert': ['body.*.conv3']}}
    failed = run_cli('basicsr', 'train', '-opt', write_options(tmp_path / 'bad.yml', bad), check=False)
    assert failed.returncode == 2 and 'Traceback' not in failed.stderr
    assert "key 'network_g.convert': pattern 'body.*.conv3' matches no conv of MSRResNet" in failed.stderr


def test_a_resumed_wrapper_run_retraces_the_uninterrupted_one(tmp_path, tiny_options, run_cli):
    """--auto_resume with a temperature schedule, as tests/test_resume.py checks for the hand-written archs."""
    tiny_options['network_g'] = {'type': 'Ghost', 'base': {'type': 'RCAN', **SMALL['RCAN'], 'num_feat': 8,
                                                           'squeeze_factor': 2}}
    tiny_options['train']['temperature_schedule'] = {'type': 'exponential', 'base': 0.8, 'unit': 'iter'}
    del tiny_options['val']
    files = {name: write_options(tmp_path / f'{name}.yml', {**tiny_options, 'name': name, 'train': {
        **tiny_options['train'], 'total_iter': total}}) for name, total in (('whole', 4), ('parts', 2))}
    run_cli('basicsr', 'train', '-opt', files['whole'])
    run_cli('basicsr', 'train', '-opt', files['parts'])
    run_cli('basicsr', 'train', '-opt', files['parts'], '--auto_resume', '--force_yml', 'train:total_iter=4')
    states = {name: torch.load(tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth', weights_only=True)
              for name in files}
    assert any(key.endswith('.logits') for key in states['whole']['params'])
    for key in ('params', 'params_ema'):
        for name, value in states['whole'][key].items():
            assert torch.equal(states['parts'][key][name], value), f'{key}.{name}'


def test_the_cost_table_is_generated_from_the_measured_jsons(tmp_path):
    import importlib.util
    import json

    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'scripts', 'any_arch_table.py')
    spec = importlib.util.spec_from_file_location('any_arch_table', path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    record = {'format': script.FORMAT, 'model': 'MSRResNet_x4', 'note': 'published size', 'ghost_layers': 32,
              'params': {'plain': 1000, 'ghost': 600}, 'flops': {'plain': 4e9, 'ghost': 3e9}, 'device': 'a CPU',
              'latency': {e: {'plain': 2.0, 'ghost': s, 'input': [1, 3, 64, 48], 'warmup': 1, 'repeats': 5}
                          for e, s in (('eager', 1.5), ('onnxruntime', 1.0))}}
    (tmp_path / 'MSRResNet_x4.json').write_text(json.dumps(record))
    (tmp_path / 'other.json').write_text(json.dumps({'format': 'something else'}))  # not a cost record: skipped
    lines = script.table(str(tmp_path)).splitlines()
    assert lines[0].endswith('| latency Ghost/plain, eager | latency Ghost/plain, onnxruntime | LR timed |')
    assert lines[2] == '| MSRResNet x4 | 32 | 1,000 | 600 | 40.0% | 4.0 | 3.0 | 25.0% | 0.75 | 0.50 | 64x48 |'
    assert lines[4] == '- MSRResNet x4: published size.'
    assert 'median of 5 forward passes' in lines[-1] and 'a CPU' in lines[-1]
