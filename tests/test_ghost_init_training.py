"""The ghost_init option section: `basicsr train` hook, `ghostsr cluster-init`, checks, distributed.

No module-level basicsr import: the spawned distributed workers import this module, and
ghostsr_plugin must be imported before basicsr (it applies the torchvision shim).
"""
import copy
import math
import os
import re

import pytest
import torch
import torch.multiprocessing as mp

from ghostsr_plugin.archs.ghost_edsr_arch import GhostEDSR
from ghostsr_plugin.cli import basicsr_main, ghostsr_main

from .conftest import free_port, write_options

PLAIN = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2,
         'res_scale': 1, 'img_range': 255.}


def save_plain(path, seed=0, **changes):
    """A plain EDSR checkpoint in BasicSR's format; returns its path as str."""
    from basicsr.archs.edsr_arch import EDSR

    torch.manual_seed(seed)
    net = EDSR(**{k: v for k, v in {**PLAIN, **changes}.items() if k != 'type'})
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict()}, path)
    return str(path)


@pytest.fixture
def init_options(tmp_path, tiny_options):
    """Tiny GhostEDSR training options with a ghost_init section from a plain checkpoint (lr 0)."""
    opt = copy.deepcopy(tiny_options)
    opt['ghost_init'] = {'network': dict(PLAIN), 'checkpoint': save_plain(tmp_path / 'plain.pth'),
                         'param_key': 'params_ema', 'method': 'cluster', 'seed': 0}
    opt['train']['optim_g']['lr'] = 0  # the weights stay what the init made them
    opt['train']['total_iter'] = 2
    return opt


def training_log(tmp_path, name):
    logs = sorted((tmp_path / 'experiments' / name).glob('train_*.log'))
    return logs[-1].read_text()


def test_train_runs_the_init_once_and_resume_skips_it(tmp_path, init_options, run_cli):
    opt_file = write_options(tmp_path / 'o.yml', init_options)
    run_cli('basicsr', 'train', '-opt', opt_file)
    log = training_log(tmp_path, init_options['name'])
    assert log.count('Ghost init by cluster (seed 0, orientation fit) from') == 1  # fit: the default
    assert len(re.findall(r'body\.\d\.conv\d: 8 filters -> 4 clusters, sizes min \d', log)) == 4
    assert log.index('Ghost init done.') < log.index('Use Exponential Moving Average')

    # The same weights as the offline command, logits included; the EMA starts from them.
    ghostsr_main(['cluster-init', '-opt', opt_file, '--out', str(tmp_path / 'init.pth')])
    offline = torch.load(tmp_path / 'init.pth', weights_only=True)['params']
    trained = torch.load(tmp_path / 'experiments' / init_options['name'] / 'models' / 'net_g_2.pth',
                         weights_only=True)
    for name, value in offline.items():  # bit for bit: the same code on the same data, then copies
        assert torch.equal(trained['params'][name], value), name
        assert torch.allclose(trained['params_ema'][name], value, atol=1e-6), name

    run_cli('basicsr', 'train', '-opt', opt_file, '--auto_resume', '--force_yml', 'train:total_iter=4')
    log = training_log(tmp_path, init_options['name'])
    assert 'Resuming training from epoch' in log
    assert 'Ghost init skipped: resuming from' in log and 'Ghost init by' not in log


def test_cluster_init_writes_a_checkpoint_stock_basicsr_loads(tmp_path, init_options, capsys):
    opt_file = write_options(tmp_path / 'o.yml', init_options)
    out = str(tmp_path / 'out' / 'init.pth')
    ghostsr_main(['cluster-init', '-opt', opt_file, '--out', out])
    printed = capsys.readouterr()
    assert 'body.1.conv2: 8 filters -> 4 clusters' in printed.out and 'ghost init (cluster)' in printed.err
    state = torch.load(out, weights_only=True)
    net = GhostEDSR(**{k: v for k, v in init_options['network_g'].items() if k != 'type'})
    net.load_state_dict(state['params_ema'])  # strict, as BasicSR's pretrain_network_g
    plain = torch.load(init_options['ghost_init']['checkpoint'], weights_only=True)['params_ema']
    assert torch.equal(state['params']['conv_last.weight'], plain['conv_last.weight'])

    with pytest.raises(SystemExit) as exit_info:
        ghostsr_main(['cluster-init', '-opt', opt_file, '--out', out])
    assert exit_info.value.code == 2 and 'exists; pass --overwrite' in capsys.readouterr().err
    ghostsr_main(['cluster-init', '-opt', opt_file, '--out', out, '--overwrite'])


def test_wrong_checkpoint_fails_and_writes_nothing(tmp_path, init_options, capsys):
    init_options['ghost_init']['checkpoint'] = save_plain(tmp_path / 'wide.pth', num_feat=16)
    opt_file = write_options(tmp_path / 'o.yml', init_options)
    with pytest.raises(SystemExit) as exit_info:
        ghostsr_main(['cluster-init', '-opt', opt_file, '--out', str(tmp_path / 'init.pth')])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "wide.pth does not fit EDSR: key 'conv_first.weight' has shape (16, 3, 3, 3)" in message
    assert 'expects (8, 3, 3, 3)' in message and 'Traceback' not in message
    assert not (tmp_path / 'init.pth').exists()


@pytest.mark.parametrize('change, fragments', [
    ({'methd': 'cluster'}, ["'ghost_init.methd'", "unknown key (did you mean 'method'?)"]),
    ({'method': 'kmeans'}, ["'ghost_init.method'", "expected one of cluster, order, found 'kmeans'"]),
    ({'param_key': 'ema'}, ["'ghost_init.param_key'", 'expected one of params, params_ema']),
    ({'orientation': 'fitted'}, ["'ghost_init.orientation'", "expected one of fit, random, zero, found 'fitted'"]),
    ({'checkpoint': 'nope.pth'}, ["'ghost_init.checkpoint'", "file 'nope.pth' does not exist"]),
    ({'network': {**PLAIN, 'type': 'EDSRR'}}, ["'ghost_init.network.type'", "unknown arch 'EDSRR'"]),
    ({'network': {**PLAIN, 'num_feats': 8}}, ["'ghost_init.network.num_feats'", 'not an argument of EDSR']),
    ({'network': {**PLAIN, 'num_block': 3}}, ["'ghost_init.network.num_block'", '3 differs from network_g.num_block']),
])
def test_bad_ghost_init_section_fails_before_training(tmp_path, init_options, capsys, change, fragments):
    init_options['ghost_init'].update(change)
    with pytest.raises(SystemExit) as exit_info:
        basicsr_main(['train', '-opt', write_options(tmp_path / 'o.yml', init_options)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in message, message


def _with_pretrained_weights(opt):
    opt['path']['pretrain_network_g'] = opt['ghost_init']['checkpoint']


def _with_plain_model(opt):
    opt['model_type'] = 'SRModel'


@pytest.mark.parametrize('change, fragment', [
    (_with_pretrained_weights, "'path.pretrain_network_g': must be empty (~) with ghost_init"),
    (_with_plain_model, "'model_type': 'SRModel' ignores the ghost_init section; use GhostSRModel"),
])
def test_options_that_would_ignore_ghost_init_fail(tmp_path, init_options, capsys, change, fragment):
    change(init_options)
    with pytest.raises(SystemExit):
        basicsr_main(['train', '-opt', write_options(tmp_path / 'o.yml', init_options)])
    assert fragment in capsys.readouterr().err


def _distributed_worker(rank, world_size, port, section, datasets, out_dir):
    """Run the training hook on every rank: first as ``section`` says, then from a missing checkpoint."""
    from torch import distributed as dist

    from ghostsr_plugin.init import ghost_init_for_training

    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world_size)
    torch.manual_seed(100 + rank)  # every rank starts different; only rank 0 reads the checkpoint
    net = GhostEDSR(**{k: v for k, v in PLAIN.items() if k != 'type'})
    for name, checkpoint in (('good', section['checkpoint']), ('missing', os.path.join(out_dir, 'gone.pth'))):
        opt = {'ghost_init': {**section, 'checkpoint': checkpoint if rank == 0 else 'not read on this rank'},
               'path': {'resume_state': None}, 'datasets': datasets, 'scale': 2}
        try:
            ghost_init_for_training(opt, net)
            torch.save(net.state_dict(), os.path.join(out_dir, f'{name}{rank}.pth'))
        except Exception as err:
            with open(os.path.join(out_dir, f'{name}{rank}.err'), 'w') as f:
                f.write(f'{type(err).__name__}: {err}')
    dist.destroy_process_group()


def test_rank0_computes_and_every_rank_receives(tmp_path, init_options):
    section = {**init_options['ghost_init'], 'orientation': 'fit'}  # rank 0 alone reads the calibration batch
    mp.spawn(_distributed_worker, args=(2, free_port(), section, init_options['datasets'], str(tmp_path)), nprocs=2)
    rank0, rank1 = (torch.load(tmp_path / f'good{r}.pth', weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # logits included: they were broadcast
    assert rank1['body.0.conv1.logits'].max() == pytest.approx(math.log(8))  # the fit's margin
    plain = torch.load(section['checkpoint'], weights_only=True)['params_ema']
    assert torch.equal(rank1['conv_first.weight'], plain['conv_first.weight'])

    # An error on rank 0 reaches every rank instead of leaving them waiting.
    errors = [(tmp_path / f'missing{r}.err').read_text() for r in (0, 1)]
    assert 'gone.pth' in errors[0] and 'ghost_init failed on rank 0' in errors[1] and 'gone.pth' in errors[1]


def test_the_plain_network_defaults_to_network_g_without_the_ghost_keys(tmp_path, init_options):
    from ghostsr_plugin.init.from_options import plain_network

    explicit = init_options['ghost_init']['network']
    ghost = {**init_options['network_g'], 'ratio': 0.5, 'max_shift': 1, 'orientation_groups': 1}
    assert plain_network(ghost) == {**explicit, 'type': 'EDSR'}
    assert plain_network({**ghost, 'type': 'ghostsr.GhostRDN', 'num_block': 2})['type'] == 'ghostsr.RDN'

    # An option file without ghost_init.network initializes exactly as the explicit one.
    outputs = {}
    for name, section in (('explicit', init_options['ghost_init']),
                          ('derived', {k: v for k, v in init_options['ghost_init'].items() if k != 'network'})):
        opt_file = write_options(tmp_path / f'{name}.yml', {**init_options, 'network_g': ghost, 'ghost_init': section})
        outputs[name] = tmp_path / f'{name}.pth'
        ghostsr_main(['cluster-init', '-opt', opt_file, '--out', str(outputs[name])])
    explicit_state, derived_state = (torch.load(outputs[n], weights_only=True)['params'] for n in outputs)
    for key, value in explicit_state.items():
        if not key.endswith('logits'):
            assert torch.equal(derived_state[key], value), key
