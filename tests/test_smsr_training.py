"""SMSR through `basicsr train`: the demo run learns and reports its masks, its schedules follow the iteration count,
a resumed run retraces an uninterrupted one bit for bit, and the trained masks' sparse inference equals the dense."""
import glob
import json
import os.path as osp
import re

import cv2
import pytest
import torch

from ghostsr_plugin.evaluate import load_model, network_input
from ghostsr_plugin.option_check import load_option_file
from ghostsr_plugin.schedules import build_schedule

from .conftest import REPO_ROOT, write_options
from .test_resume import logged
from .test_smsr import smsr_options

DEMO = osp.join(REPO_ROOT, 'options', 'demo', 'smsr_x2_demo.yml')
NUMBER = r'([\d.e+-]+)'


def demo_options(tiny_options):
    """The demo's options on the tiny pairs: its network, optimizer and schedules; batch 4 of 32 px."""
    opt = json.loads(json.dumps(load_option_file(DEMO)))  # (plain dicts, for the YAML writer)
    for phase in ('train', 'val'):
        opt['datasets'][phase].update({k: tiny_options['datasets'][phase][k] for k in ('dataroot_gt', 'dataroot_lq')})
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=4, num_worker_per_gpu=0, persistent_workers=False,
                                    dataset_enlarge_ratio=1)
    opt['num_gpu'] = 0
    opt['val']['val_freq'], opt['logger']['print_freq'], opt['logger']['save_checkpoint_freq'] = 1000, 20, 1000
    return opt


def test_the_demo_run_lowers_the_loss_follows_its_schedules_and_reports_its_sparsity(tmp_path, tiny_options,
                                                                                       run_cli):
    opt = demo_options(tiny_options)
    # the demo's 1,500 iterations moved to 100: the spans stay in iterations (temperature: 450, weight: 75)
    run_cli('basicsr', 'train', '-opt', write_options(tmp_path / 'demo.yml', opt), '--force_yml',
            'train:total_iter=100')
    exp = tmp_path / 'experiments' / opt['name']
    lines = logged(exp, rf'iter:\s+(\d+),.*l_pix: {NUMBER} l_sparsity: {NUMBER} temperature: {NUMBER} '
                        rf'sparsity_weight: {NUMBER} density: {NUMBER} spatial_sparsity: {NUMBER} '
                        rf'channel_sparsity: {NUMBER}')
    assert [int(line[0]) for line in lines] == [20, 40, 60, 80, 100]
    temperature = build_schedule(opt['train']['temperature_schedule'])
    weight = build_schedule(opt['train']['sparsity_schedule'])
    for it, _, l_sparsity, tau, lam, density, spatial, channel in ((int(v[0]), *map(float, v[1:])) for v in lines):
        assert tau == pytest.approx(temperature(it, 100), rel=1e-4) and tau == pytest.approx(1 - 0.6 * (it - 1) / 450,
                                                                                            rel=1e-4)
        assert lam == pytest.approx(weight(it, 100), rel=1e-4) and lam == pytest.approx(min((it - 1) / 75, 1), rel=1e-4)
        assert l_sparsity == pytest.approx(opt['train']['sparsity_opt']['loss_weight'] * lam * density, rel=1e-3)
        assert 0 <= spatial <= 1 and 0 <= channel <= 1
    first, last = float(lines[0][1]), float(lines[-1][1])
    assert last < first  # the loss fell
    end = logged(exp, r'SMSR masks at the end of training: channel sparsity ([\d.]+), spatial sparsity')
    assert len(end) == 1 and 0 <= float(end[0]) <= 1
    deploy = torch.load(exp / 'models' / 'net_g_deploy.pth', weights_only=True)['params']
    assert 'body.0.body.channel_mask.sparse_channels' in deploy and not any(k.endswith('logits') for k in deploy)

    # The trained masks: the sparse form equals the dense computation on the held-out images.
    net = load_model(opt['network_g'], str(exp / 'models' / 'net_g_latest.pth'))
    for path in sorted(glob.glob(osp.join(opt['datasets']['val']['dataroot_lq'], '*.png'))):
        x = network_input(cv2.imread(path))
        with torch.no_grad():
            net.inference = 'sparse'
            sparse = net(x)
            net.inference = 'dense'
            assert (net(x) - sparse).abs().max() < 1e-5


def test_resumed_run_has_the_same_temperatures_sparsity_weights_and_weights(tmp_path, tiny_options, run_cli):
    def options(name, total_iter):
        opt = smsr_options(tiny_options, total_iter=total_iter)
        opt['name'] = name
        opt['datasets'] = {'train': {**opt['datasets']['train'], 'num_worker_per_gpu': 1}}
        del opt['val']
        return write_options(tmp_path / f'{name}.yml', opt)

    run_cli('basicsr', 'train', '-opt', options('whole', 6))
    parts = options('parts', 2)  # 8 images at batch 4: the interruption falls on an epoch boundary
    run_cli('basicsr', 'train', '-opt', parts)
    run_cli('basicsr', 'train', '-opt', parts, '--auto_resume', '--force_yml', 'train:total_iter=6')
    exps = {name: tmp_path / 'experiments' / name for name in ('whole', 'parts')}
    pattern = rf'iter:\s+(\d+),.*temperature: {NUMBER} sparsity_weight: {NUMBER} density: {NUMBER}'
    schedules = {n: logged(e, pattern) for n, e in exps.items()}
    assert schedules['parts'] == schedules['whole'] and len(schedules['whole']) == 6
    assert [float(s[1]) for s in schedules['whole']] == pytest.approx([1, 0.8, 0.6, 0.4, 0.4, 0.4])
    states = {n: torch.load(e / 'models' / 'net_g_latest.pth', weights_only=True) for n, e in exps.items()}
    for key in ('params', 'params_ema'):  # bit for bit: the same arithmetic, the same noise, resumed or not
        for name, value in states['whole'][key].items():
            assert torch.equal(states['parts'][key][name], value), f'{key}.{name}'
    assert re.search(r'channel_mask\.logits', ' '.join(states['whole']['params']))
