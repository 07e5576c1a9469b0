"""The peers' scripts: SMSR's sparse-against-dense measurement, and docs/peers.md's tables generated from results."""
import importlib.util
import json
import os.path as osp
import sys

import pytest
import torch

from .conftest import REPO_ROOT, write_options
from .test_benchmark import one_thread, tiny_benchmark  # noqa: F401  (fixtures)
from .test_leaderboard import GHOST, LATENCY, PLAIN, write_results
from .test_smsr import TINY, tiny_smsr


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO_ROOT, 'scripts', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_sparse_times_three_forms_of_one_network(tiny_benchmark, tmp_path, monkeypatch):  # noqa: F811
    torch.save({'params': tiny_smsr().state_dict()}, tmp_path / 'smsr.pth')
    options = write_options(tmp_path / 'smsr.yml', {'name': 'smsr', 'scale': 2, 'network_g': TINY,
                                                    'path': {'pretrain_network_g': str(tmp_path / 'smsr.pth')}})
    out = tmp_path / 'speed.json'
    monkeypatch.setattr(sys, 'argv', ['benchmark_sparse.py', '-opt', options, '--data', tiny_benchmark['data'],
                                      '--set', 'Tiny', '--sets', 'Tiny', '--repeats', '1', '--warmup', '0',
                                      '--keep', '0.25', '--frame', '30', '40', '--json', str(out)])
    load_script('benchmark_sparse').main()
    record = json.loads(out.read_text())
    assert record['flops']['sparse'] < record['flops']['dense'] == record['flops']['open']
    assert max(record['largest_difference'].values()) < 1e-5
    assert record['input']['size'] == [1, 3, 30, 40] and set(record['seconds']) == {'sparse', 'dense', 'open'}
    turned = (1 - record['seconds']['sparse'] / record['seconds']['dense']) / record['flops_saved']
    assert record['saving_turned_into_time'] == pytest.approx(turned)
    assert record['target_met'] == (turned >= 0.5) and 'gather' in record['profile']['sparse']['by_kind_ms']
    forced = record['at_spatial_keep'][0]  # the learned ranking, a quarter of the positions kept
    assert forced['spatial_keep'] == 0.25 and forced['largest_difference'] < 1e-5 and 0 < forced['flops_saved'] < 1


def result(option_file, engine, counted, seconds, psnr=None, **latency):
    return {'format': 'ghostsr-benchmark/1', 'name': option_file or 'EDSR', 'flops': counted,
            'model': {'option_file': option_file},
            'sets': {'Set5': {'psnr': psnr}} if psnr else {},
            'latency': {'engine': engine, 'seconds': seconds, 'device': 'cpu', 'threads': 1, 'repeats': 3,
                        'input': [1, 3, 360, 640], 'input_kind': 'Set14', **latency}}


def test_the_saving_table_from_results(tmp_path):
    timed, trained = tmp_path / 'peers', tmp_path / 'trained'
    timed.mkdir()
    trained.mkdir()
    edsr = 'options/demo/edsr_x2_demo.yml'
    ghost, smsr = 'options/demo/ghost_edsr_x2_demo.yml', 'options/test/SMSR/test_SMSR_demo_x2'
    records = {
        'edsr': result(edsr, 'eager', 100e9, 1.0), 'edsr_ort': result(edsr, 'onnxruntime', 100e9, 0.8),
        'ghost': result(ghost, 'eager', 50e9, 0.75), 'ghost_ort': result(ghost, 'onnxruntime', 50e9, 0.6),
        'sparse': result(smsr + '.yml', 'eager', 99e9, 0.9, flops=40e9, spatial_sparsity=0.7, channel_sparsity=0.5),
        'dense': result(smsr + '_dense.yml', 'eager', 99e9, 0.8, flops=80e9),
        'adder': result('options/demo/adder_edsr_x2_demo.yml', 'eager', 100e9, 3.0),  # (as many FLOPs as EDSR's)
    }
    for name, record in records.items():
        (timed / f'{name}.json').write_text(json.dumps(record))
    (trained / 'ghost.json').write_text(json.dumps(result(ghost, 'eager', 50e9, 1, psnr=33.5)))
    doc = tmp_path / 'peers.md'
    peers = load_script('peers_table')
    begin, end = peers.SAVING_MARKERS
    doc.write_text(f'intro\n{begin}\nold\n{end}\nend\n')
    text = peers.saving_table(str(timed), str(trained))
    lines = {line.split(' | ')[0].lstrip('| '): line.split(' | ') for line in text.splitlines() if line.startswith('|')}
    ghost_row = lines['GhostEDSR demo (shift) vs EDSR demo']
    assert ghost_row[1:] == ['33.50 / –', '50.0 / 100.0', '50.0%', '25.0%', '25.0%', '0.50', '0.50 |']
    smsr_row = lines['SMSR demo: sparse vs dense']  # FLOPs from the masks on the timed frame; no onnxruntime run
    assert smsr_row[3:] == ['50.0%', '-12.5%', '–', '-0.25', '– |']
    assert lines['AdderEDSR demo vs EDSR demo'][3:] == ['0.0%', '-200.0%', '–', '–', '– |']
    assert 'GhostEDSR demo, depthwise ghosts vs EDSR demo' not in lines and "skip 70.0% of the timed frame's" in text
    peers.write_between(str(doc), text, begin, end)
    assert doc.read_text() == f'intro\n{begin}\n{text}{end}\nend\n'


def test_the_peers_tables_are_generated_from_the_result_jsons(tmp_path):
    """Each demo model against the plain one, and the kernel against nn.Conv2d."""
    script = load_script('peers_table')
    cost = {'cost_input': [1, 3, 360, 640], 'model': {'training': {'iterations_per_second': 3.25}}}
    plain, ghost = ({**r, **cost, 'name': n} for r, n in ((PLAIN, script.ROWS[0]), (GHOST, script.ROWS[1])))
    adder = {**plain, 'name': script.ROWS[2], 'mults': 31_600_000_000, 'adds': 606_000_000_000,
             'energy_pj': 662_320_000_000.0, 'latency': {**LATENCY, 'seconds': 0.0369}}
    write_results(tmp_path, ghost, adder, plain, {'format': 'something else'})
    row = {'seconds': 0.01, 'peak_bytes': 2**21, 'time_ratio': 1.0, 'memory_ratio': 1.0}
    kernel = {'shape': {'batch': 16, 'in_channels': 32, 'out_channels': 32, 'size': [32, 32], 'kernel': 3},
              'threads': 1, 'device': 'a CPU', 'repeats': 20, 'date': '2026-12-06', 'command': 'python x.py',
              'forward': {'conv': row, 'adder': {**row, 'seconds': 0.02, 'time_ratio': 2.0}, 'method': 'wall clock'},
              'forward_backward': {'conv': row, 'method': 'wall clock'},
              'targets': {'forward': {'ratio_to_conv': 2.0, 'at_most': 3, 'met': True}}}
    (tmp_path / 'adder').mkdir()
    (tmp_path / 'adder' / 'kernel_a-cpu_2026-12-06.json').write_text(json.dumps(kernel))
    lines = script.demo_tables(str(tmp_path)).splitlines()
    assert lines[4] == ('| EDSR demo (32f/4b) | 35.12 / 0.9432 | 31.50 / 0.8900 | 1,370,000 | 158.0 | 158.1 | 727.0 | '
                        '1.00 | 12 | 1.00 | 3.25 |')
    assert lines[6] == ('| AdderEDSR demo (32f/4b) | 35.12 / 0.9432 | 31.50 / 0.8900 | 1,370,000 | 31.6 | 606.0 | '
                        '662.3 | 0.91 | 37 | 3.00 | 3.25 |')
    assert '| forward | adder | 20.00 | 2.00 | 2.00 | 1.00 |' in lines
    assert any(line.startswith('Shape: batch 16, 32 -> 32 channels') and 'forward 2.00x (at most 3x): met' in line
               for line in lines)
