"""FastSRModel's options (amp, channels_last, compile, time budget): the same training, faster; exact resumes."""
import copy
import json
import re

import pytest
import torch
from basicsr.archs import build_network
from basicsr.models import build_model

from ghostsr_plugin.archs import ghost_layers
from ghostsr_plugin.models.fast_sr_model import fast_options
from ghostsr_plugin.option_check import OptionError, check_options

from .conftest import write_options


def model_options(tiny_options, model_type, network=None, **train):
    """Options ``build_model`` takes directly (what BasicSR's parse_options adds, for the CPU, one process)."""
    opt = copy.deepcopy(tiny_options)
    opt.update(model_type=model_type, is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt['network_g'] = network or opt['network_g']
    opt['train'].update(train)
    return opt


def batches(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [{'lq': torch.rand(2, 3, 12, 12, generator=generator), 'gt': torch.rand(2, 3, 24, 24, generator=generator)}
            for _ in range(count)]


def trained(opt, data):
    torch.manual_seed(0)
    model = build_model(opt)
    for i, batch in enumerate(data, 1):
        model.feed_data(batch)
        model.optimize_parameters(i)
    return model


PLAIN_EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2,
              'res_scale': 1, 'img_range': 255.}


def test_with_every_option_off_a_step_is_srmodels(tiny_options):
    """BasicSR's SRModel is the reference: the same weights, EMA and logged loss after three steps."""
    data = batches(3)
    reference = trained(model_options(tiny_options, 'SRModel', PLAIN_EDSR), data)
    fast = trained(model_options(tiny_options, 'FastSRModel', PLAIN_EDSR), data)
    for net in ('net_g', 'net_g_ema'):
        for (name, want), got in zip(getattr(reference, net).state_dict().items(),
                                     getattr(fast, net).state_dict().values()):
            assert torch.equal(got, want), f'{net}.{name}'
    assert fast.get_current_log() == reference.get_current_log()


def test_bf16_autocast_keeps_the_orientation_in_fp32(tiny_options):
    """Under amp: bf16 the convs compute in bf16; logits, noise, selection and their gradients stay fp32."""
    opt = model_options(tiny_options, 'GhostSRModel', amp='bf16', channels_last=True)
    torch.manual_seed(0)
    model = build_model(opt)
    layer = ghost_layers(model.net_g)[0]
    seen, selection = {}, layer.selection
    layer.primary.register_forward_hook(lambda module, args, out: seen.update(x1=out.dtype))
    layer.selection = lambda: seen.setdefault('selection', selection())
    model.feed_data(batches(1)[0])
    model.optimize_parameters(1)
    assert seen['x1'] == torch.bfloat16 and seen['selection'].dtype == torch.float32
    assert layer.logits.dtype == layer.logits.grad.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.net_g.parameters())
    assert layer.primary.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(torch.tensor(model.get_current_log()['l_pix']))


def train_options(tiny_options, name, total_iter, **train):
    opt = {**copy.deepcopy(tiny_options), 'name': name}
    opt['datasets'] = {'train': {**tiny_options['datasets']['train'], 'type': 'InMemoryPairedImageDataset',
                                 'num_worker_per_gpu': 1, 'persistent_workers': True}}
    opt['train'].update(total_iter=total_iter, orientation_lr=10, **train,
                        temperature_schedule={'type': 'exponential', 'base': 0.8, 'unit': 'iter'})
    del opt['val']
    return opt


RESUMED = {  # (aot_eager: torch.compile's graph capture without inductor's code generation, minutes on a CPU)
    'bf16_channels_last': {'amp': 'bf16', 'channels_last': True},
    'fp16_scaler_compiled': {'amp': 'fp16', 'compile': {'backend': 'aot_eager', 'fullgraph': True}},
}


@pytest.mark.parametrize('fast', RESUMED.values(), ids=RESUMED.keys())
def test_a_resumed_fast_run_ends_with_the_uninterrupted_runs_weights(tmp_path, tiny_options, run_cli, fast):
    # 8 images at batch 4: 2 iterations an epoch; the interruption falls on an epoch boundary, the in-memory
    # dataset's persistent worker starts anew in the resumed run.
    whole = write_options(tmp_path / 'whole.yml', train_options(tiny_options, 'whole', 6, **fast))
    run_cli('basicsr', 'train', '-opt', whole)
    parts = write_options(tmp_path / 'parts.yml', train_options(tiny_options, 'parts', 2, **fast))
    run_cli('basicsr', 'train', '-opt', parts)
    run_cli('basicsr', 'train', '-opt', parts, '--auto_resume', '--force_yml', 'train:total_iter=6')

    exps = {name: tmp_path / 'experiments' / name for name in ('whole', 'parts')}
    states = {n: torch.load(e / 'models' / 'net_g_latest.pth', weights_only=True) for n, e in exps.items()}
    for key in ('params', 'params_ema'):
        for name, value in states['whole'][key].items():
            assert value.dtype == torch.float32 and torch.equal(states['parts'][key][name], value), f'{key}.{name}'
    # a checkpoint loads into the network built plainly (NCHW, uncompiled), BasicSR's keys
    net = build_network(copy.deepcopy(tiny_options['network_g']))
    net.load_state_dict(states['whole']['params'])
    resume_state = torch.load(exps['parts'] / 'training_states' / '2.state', weights_only=True)
    assert ('grad_scaler' in resume_state) == (fast.get('amp') == 'fp16')
    if 'grad_scaler' in resume_state:
        assert resume_state['grad_scaler']['_growth_tracker'] == 2
    summary = json.loads((exps['whole'] / 'training.json').read_text())
    assert summary['last_iter'] == 6 and summary['amp'] == fast.get('amp') and not summary['stopped_at_budget']
    assert summary['dataset'] == 'InMemoryPairedImageDataset' and summary['device'] and summary['seconds'] > 0


def test_a_spent_time_budget_ends_the_run_as_its_last_iteration_would(tmp_path, tiny_options, run_cli):
    opt = train_options(tiny_options, 'budget', 1000, time_budget=1e-6, progress_seconds=1e-6)
    done = run_cli('basicsr', 'train', '-opt', write_options(tmp_path / 'budget.yml', opt))
    assert done.returncode == 0
    exp = tmp_path / 'experiments' / 'budget'
    log = ''.join(f.read_text() for f in exp.glob('train_*.log'))
    assert re.search(r'progress: iter 1/1,000, [\d.]+ it/s', log)
    assert 'Time budget of 1e-06 s spent at iteration 1 of 1,000' in log
    assert {p.name for p in (exp / 'models').iterdir()} == {'net_g_latest.pth', 'net_g_deploy.pth'}
    summary = json.loads((exp / 'training.json').read_text())
    assert summary['stopped_at_budget'] and summary['last_iter'] == 1 and summary['total_iter'] == 1000


@pytest.mark.parametrize('train, model_type, message', [
    ({'amp': 'fp32'}, 'GhostSRModel', "key 'train.amp': expected bf16, fp16 or false, found str 'fp32'"),
    ({'compile': 'yes'}, 'GhostSRModel', "key 'train.compile': expected true, false or a mapping"),
    ({'channels_last': 1}, 'GhostSRModel', "key 'train.channels_last': expected true or false, found 1"),
    ({'time_budget': -5}, 'GhostSRModel', "key 'train.time_budget': expected a positive number of seconds"),
    ({'amp': 'bf16'}, 'SRModel', "key 'model_type': 'SRModel' ignores train.amp; use FastSRModel"),
])
def test_fast_options_are_checked(tmp_path, tiny_options, train, model_type, message):
    opt = copy.deepcopy(tiny_options)
    opt['train'].update(train)
    opt['model_type'] = model_type
    if model_type == 'SRModel':
        opt['network_g'] = PLAIN_EDSR
    with pytest.raises(OptionError, match=re.escape(message)):
        check_options(write_options(tmp_path / 'x.yml', opt), is_train=True)


@pytest.mark.parametrize('compile_opt, want', [
    (True, {'dynamic': False}),
    ({'mode': 'max-autotune'}, {'dynamic': False, 'mode': 'max-autotune'}),
    ({'dynamic': True}, {'dynamic': True}),
])
def test_training_compiles_for_one_patch_shape_unless_told(compile_opt, want):
    assert fast_options({'compile': compile_opt}).compile == want


def test_an_inductor_compiled_step_trains_as_the_eager_one(tiny_options):
    """train.compile: true (inductor, the GPU default) on a tiny GhostEDSR: the same weights as eager, within
    rounding (noise off, so both pick the argmax orientation; the compiled graph reorders sums)."""
    data = batches(2)
    zero_noise = {'type': 'constant', 'start': 0.0}
    nets = {}
    for compiled in (False, True):
        opt = model_options(tiny_options, 'GhostSRModel', compile=compiled, temperature_schedule=zero_noise)
        opt['network_g'] = {**opt['network_g'], 'num_block': 1}
        model = trained(opt, data)
        assert isinstance(model.train_net, torch._dynamo.eval_frame.OptimizedModule) == compiled
        nets[compiled] = model.net_g.state_dict()
    for name, want in nets[False].items():
        torch.testing.assert_close(nets[True][name], want, rtol=1e-4, atol=1e-6, msg=name)
