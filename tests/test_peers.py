"""The peers' scripts: SMSR's sparse-against-dense measurement, and docs/peers.md's table generated from results."""
import importlib.util
import json
import os.path as osp
import sys

import pytest
import torch

from .conftest import REPO_ROOT, write_options
from .test_benchmark import one_thread, tiny_benchmark  # noqa: F401  (fixtures)
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


def result(option_file, engine, counted, seconds, psnr=None, network=None, **latency):
    return {'format': 'ghostsr-benchmark/1', 'name': option_file or 'EDSR', 'flops': counted,
            'model': {'option_file': option_file, 'network_g': network or {}},
            'sets': {'Set5': {'psnr': psnr}} if psnr else {},
            'latency': {'engine': engine, 'seconds': seconds, 'device': 'cpu', 'threads': 1, 'repeats': 3,
                        'input': [1, 3, 360, 640], 'input_kind': 'Set14', **latency}}


def test_the_peers_table_from_results(tmp_path):
    timed, trained = tmp_path / 'peers', tmp_path / 'trained'
    timed.mkdir()
    trained.mkdir()
    edsr = {'type': 'EDSR', 'num_feat': 32, 'num_block': 4, 'upscale': 2}
    ghost, smsr = 'options/demo/ghost_edsr_x2_demo.yml', 'options/test/SMSR/test_SMSR_demo_x2'
    records = {
        'edsr': result(None, 'eager', 100e9, 1.0, network=edsr), 'edsr_ort': result(None, 'onnxruntime', 100e9, 0.8,
                                                                                      network=edsr),
        'ghost': result(ghost, 'eager', 50e9, 0.75), 'ghost_ort': result(ghost, 'onnxruntime', 50e9, 0.6),
        'sparse': result(smsr + '.yml', 'eager', 99e9, 0.9, flops=40e9, spatial_sparsity=0.7, channel_sparsity=0.5),
        'dense': result(smsr + '_dense.yml', 'eager', 99e9, 0.8, flops=80e9),
    }
    for name, record in records.items():
        (timed / f'{name}.json').write_text(json.dumps(record))
    (trained / 'ghost.json').write_text(json.dumps(result(ghost, 'eager', 50e9, 1, psnr=33.5)))
    doc = tmp_path / 'peers.md'
    peers = load_script('peers_table')
    doc.write_text(f'intro\n{peers.BEGIN}\nold\n{peers.END}\nend\n')
    text = peers.table(str(timed), str(trained))
    lines = {line.split(' | ')[0].lstrip('| '): line.split(' | ') for line in text.splitlines() if line.startswith('|')}
    ghost_row = lines['GhostEDSR demo (shift) vs EDSR demo']
    assert ghost_row[1:] == ['33.50 / –', '50.0 / 100.0', '50.0%', '25.0%', '25.0%', '0.50', '0.50 |']
    smsr_row = lines['SMSR demo: sparse vs dense']  # FLOPs from the masks on the timed frame; no onnxruntime run
    assert smsr_row[3:] == ['50.0%', '-12.5%', '–', '-0.25', '– |']
    assert 'GhostEDSR demo, depthwise ghosts vs EDSR demo' not in lines and "skip 70.0% of the timed frame's" in text
    peers.write_between(str(doc), text, peers.BEGIN, peers.END)
    assert doc.read_text() == f'intro\n{peers.BEGIN}\n{text}{peers.END}\nend\n'
