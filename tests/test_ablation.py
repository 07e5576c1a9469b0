"""scripts/ablation.py: a dry run through `basicsr train` and `ghostsr benchmark`, and its table."""
import copy
import importlib.util
import json
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest

from .conftest import write_options
from .test_ghost_init_training import PLAIN, save_plain

SCRIPT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'scripts', 'ablation.py')


def ablation_module():
    spec = importlib.util.spec_from_file_location('ablation', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('orientation', ['fit', 'random'])
def test_dry_run_records_every_stage_and_the_moved_argmax(tmp_path, tiny_options, tiny_pairs, orientation):
    opt = copy.deepcopy(tiny_options)
    opt['ghost_init'] = {'network': dict(PLAIN), 'checkpoint': save_plain(tmp_path / 'plain.pth'),
                         'param_key': 'params_ema', 'method': 'cluster', 'orientation': orientation}
    opt['train']['optim_g']['lr'] = 0  # nothing moves: the trained model is the initialized one
    del opt['val']
    options = write_options(tmp_path / f'tiny_{orientation}.yml', opt)
    for folder, source in (('GTmod2', 'val_hr'), ('LRbicx2', 'val_lr')):
        shutil.copytree(tiny_pairs[source], tmp_path / 'bench' / 'Tiny' / folder)

    proc = subprocess.run([sys.executable, SCRIPT, 'run', '--configs', options, '--seeds', '0', '1', '--iters', '2',
                           '--data', 'bench', '--sets', 'Tiny', '--results', 'out'], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads((tmp_path / 'out' / f'tiny_{orientation}_s{seed}.json').read_text()) for seed in (0, 1)]
    for seed, record in enumerate(records):
        assert record['seed'] == seed and f'manual_seed={seed}' in record['force_yml']
        assert set(record['stages']) == {'init', '2'} and record['final_stage'] == '2'
        # The offline init (ghostsr cluster-init --seed) and the training hook's give the same model,
        # random orientations included: the same draw as the training run of that seed (which needs
        # --force_yml manual_seed=S to seed the network: ghostsr_plugin.forced_seed).
        assert record['stages']['2']['Tiny']['psnr'] == pytest.approx(record['stages']['init']['Tiny']['psnr'],
                                                                      abs=1e-3)
        assert (record['argmax_moved'], record['ghost_layers']) == (0, 4)
        assert (tmp_path / 'experiments' / f'ablation_tiny_{orientation}_s{seed}' / 'models' /
                'net_g_latest.pth').is_file()
    if orientation == 'random':  # each seed its own draw
        assert records[0]['stages']['init']['Tiny']['psnr'] != records[1]['stages']['init']['Tiny']['psnr']

    again = subprocess.run([sys.executable, SCRIPT, 'run', '--configs', options, '--seeds', '0', '--iters', '2',
                            '--data', 'bench', '--sets', 'Tiny', '--results', 'out'], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and f'tiny_{orientation}_s0.json exists: skipped' in again.stdout


def test_table_gives_mean_and_sample_std_over_seeds(tmp_path):
    psnrs = {'a': [30.0, 30.5, 31.25], 'b': [28.0]}
    for config, values in psnrs.items():
        for seed, value in enumerate(values):
            record = {'format': 'ghostsr-ablation/1', 'config': config, 'seed': seed,
                      'stages': {'1500': {'Set5': {'psnr': value, 'ssim': 0.9}}},
                      'argmax_moved': seed if config == 'a' else None, 'ghost_layers': 8 if config == 'a' else None}
            (tmp_path / f'{config}_s{seed}.json').write_text(json.dumps(record))
    tuned = {'format': 'ghostsr-ablation/1', 'config': 'c', 'seed': 0, 'argmax_moved': 2, 'ghost_layers': 8,
             'stages': {st: {'Set5': {'psnr': p, 'ssim': 0.9}} for st, p in (('1500', 33), ('init', 31), ('300', 32))}}
    (tmp_path / 'c_s0.json').write_text(json.dumps(tuned))
    (tmp_path / 'other.json').write_text('{"format": "ghostsr-benchmark/1"}')  # not an ablation run: ignored
    text = ablation_module().table(str(tmp_path))
    first, second = text.split('\n\n')
    lines = first.splitlines()
    assert lines[0] == '| config | seeds | Set5 @1500 it | argmax moved |'
    a = np.array(psnrs['a'])
    assert lines[2] == f'| a | 0, 1, 2 | {a.mean():.2f} ± {a.std(ddof=1):.2f} | 1.00 ± 1.00 / 8 |'
    assert lines[3] == '| b | 0 | 28.00 | — |' and len(lines) == 4
    # Configs evaluated at other stages get their own table, stages in training order.
    assert second.splitlines()[0] == '| config | seeds | Set5 @init | Set5 @300 it | Set5 @1500 it | argmax moved |'
    assert second.splitlines()[2] == '| c | 0 | 31.00 | 32.00 | 33.00 | 2.00 / 8 |'


def test_verdict_applies_the_two_sigma_rule_against_both_baselines(tmp_path):
    psnrs = {'scratch_copy': [(35.5, 31.7), (35.52, 31.72), (35.48, 31.68)],  # std 0.02 on both sets
             'scratch_fixed_random': [(35.3, 31.6), (35.5, 31.7), (35.4, 31.65)],  # std 0.1, 0.05
             'win': [(35.75, 31.9), (35.7, 31.85), (35.8, 31.95)],  # beats both on both
             'close': [(35.6, 31.9), (35.6, 31.9), (35.6, 31.9)],  # Set5: +0.1 over copy but not > 2 x 0.1 over random
             'one_seed': [(36.0, 32.5)]}
    for config, values in psnrs.items():
        for seed, (set5, set14) in enumerate(values):
            record = {'format': 'ghostsr-ablation/1', 'config': config, 'seed': seed, 'final_stage': '1500',
                      'stages': {'1500': {'Set5': {'psnr': set5, 'ssim': 0.9}, 'Set14': {'psnr': set14, 'ssim': 0.9}}},
                      'argmax_moved': 0, 'ghost_layers': 8}
            (tmp_path / f'{config}_s{seed}.json').write_text(json.dumps(record))
    lines = ablation_module().verdict(str(tmp_path)).splitlines()
    assert lines[0] == ('| config | seeds | Set5 vs scratch_copy | Set5 vs scratch_fixed_random | '
                        'Set14 vs scratch_copy | Set14 vs scratch_fixed_random | beats both by > 2σ |')
    rows = {line.split(' | ')[0][2:]: line for line in lines[2:]}
    assert set(rows) == {'win', 'close', 'one_seed'}
    assert rows['win'].startswith('| win | 0, 1, 2 | +0.25 (2σ 0.10) | +0.35 (2σ 0.20) |')  # 2 x max(std)
    assert rows['win'].endswith('| **yes** |') and rows['close'].endswith('| no |')
    assert rows['one_seed'].endswith('| no |')  # one seed has no spread to test against
    (tmp_path / 'scratch_copy_s0.json').unlink(), (tmp_path / 'scratch_copy_s1.json').unlink()
    (tmp_path / 'scratch_copy_s2.json').unlink()
    assert ablation_module().verdict(str(tmp_path)) == ''


def test_table_goes_into_a_document_between_its_markers(tmp_path):
    module = ablation_module()
    doc = tmp_path / 'doc.md'
    doc.write_text(f'# Title\n\ntext\n{module.BEGIN}\nold table\n{module.END}\n\nmore text\n')
    module.write_into(str(doc), '| new |\n')
    module.write_into(str(doc), '| newer |\n')  # again: replaced, not appended
    assert doc.read_text() == f'# Title\n\ntext\n{module.BEGIN}\n| newer |\n{module.END}\n\nmore text\n'

    doc.write_text('no markers\n')
    with pytest.raises(module.InputError, match='expected one'):
        module.write_into(str(doc), '| new |\n')
    assert doc.read_text() == 'no markers\n'


def test_plot_draws_the_runs_evaluated_after_their_init(tmp_path):
    module = ablation_module()
    scratch = {'format': 'ghostsr-ablation/1', 'config': 's', 'seed': 0, 'argmax_moved': 0, 'ghost_layers': 8,
               'stages': {'1500': {'Set5': {'psnr': 30.0, 'ssim': 0.9}}}}
    (tmp_path / 's_s0.json').write_text(json.dumps(scratch))
    with pytest.raises(module.InputError, match='nothing to plot'):
        module.plot(str(tmp_path), str(tmp_path / 'plot.png'))
    assert not (tmp_path / 'plot.png').exists()
    for seed in (0, 1):
        tuned = {**scratch, 'config': 't', 'seed': seed,
                 'stages': {st: {'Set5': {'psnr': p + seed, 'ssim': 0.9}} for st, p in (('init', 31), ('1500', 33))}}
        (tmp_path / f't_s{seed}.json').write_text(json.dumps(tuned))
    module.plot(str(tmp_path), str(tmp_path / 'plot.png'))
    assert (tmp_path / 'plot.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
