"""An Adder network through the commands: basicsr train (the loss falls; --auto_resume retraces the uninterrupted
run bit for bit, batch-norm statistics and EMA included), export to ONNX in standard ops, upscale, benchmark."""
import json
import re

import pytest
import torch
from basicsr.archs import build_network

from ghostsr_plugin.onnx_export import onnx_op_types

from .conftest import write_options

BASE = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2,
        'img_range': 255.}


def adder_options(tiny_options, name, total_iter):
    opt = {**tiny_options, 'name': name, 'model_type': 'FastSRModel', 'network_g': {'type': 'Adder', 'base': BASE}}
    # 8 images x 3 at batch 4: 6 iterations an epoch, so iteration 50 falls in the middle of one
    opt['datasets'] = {'train': {**tiny_options['datasets']['train'], 'num_worker_per_gpu': 1,
                                 'dataset_enlarge_ratio': 3}}
    opt['train'] = {**tiny_options['train'], 'total_iter': total_iter,
                    'scheduler': {'type': 'MultiStepLR', 'milestones': [1000], 'gamma': 0.5}}
    opt['logger'] = {**tiny_options['logger'], 'print_freq': 10, 'save_checkpoint_freq': 50}
    del opt['val']
    return opt


def losses(exp):
    text = ''.join(open(f).read() for f in sorted(exp.glob('train_*.log')))
    found = re.findall(r'iter:\s*([\d,]+), lr.*l_pix: ([\d.e+-]+)', text)
    return [(int(i.replace(',', '')), float(loss)) for i, loss in found]


def test_a_trained_adder_run_lowers_its_loss_and_resumes_bit_for_bit_from_the_middle_of_an_epoch(
        tmp_path, tiny_options, run_cli):
    whole = write_options(tmp_path / 'whole.yml', adder_options(tiny_options, 'whole', 100))
    run_cli('basicsr', 'train', '-opt', whole)
    parts = write_options(tmp_path / 'parts.yml', adder_options(tiny_options, 'parts', 50))
    run_cli('basicsr', 'train', '-opt', parts)
    run_cli('basicsr', 'train', '-opt', parts, '--auto_resume', '--force_yml', 'train:total_iter=100')

    exps = {name: tmp_path / 'experiments' / name for name in ('whole', 'parts')}
    logged = losses(exps['whole'])
    assert [i for i, _ in logged] == list(range(10, 101, 10))
    first, last = sum(v for _, v in logged[:3]) / 3, sum(v for _, v in logged[-3:]) / 3
    assert last < 0.8 * first, logged
    assert losses(exps['parts']) == logged  # the resumed run logs the same losses (it draws the same batches)
    states = {n: torch.load(e / 'models' / 'net_g_latest.pth', weights_only=True) for n, e in exps.items()}
    for key in ('params', 'params_ema'):  # (batch norm's running statistics and the power activations included)
        assert 'body.0.conv1.norm.running_var' in states['whole'][key]
        for name, value in states['whole'][key].items():
            assert torch.equal(states['parts'][key][name], value), f'{key}.{name}'
    # net_g_ema's batch norm carries the trained statistics, not its initial ones
    assert not torch.equal(states['whole']['params_ema']['body.0.conv1.norm.running_var'], torch.ones(8))


def test_an_adder_model_goes_through_every_command(tmp_path, tiny_options, run_cli, tiny_pairs):
    opt = adder_options(tiny_options, 'adder', 2)
    options = write_options(tmp_path / 'adder.yml', opt)
    run_cli('basicsr', 'train', '-opt', options)
    run_cli('ghostsr', 'export', '-opt', options, '--out', 'm.onnx', '--check')
    assert {op for _, op in onnx_op_types(str(tmp_path / 'm.onnx'))} >= {'Abs', 'ReduceSum', 'Conv'}
    assert all(domain in ('', 'ai.onnx') for domain, _ in onnx_op_types(str(tmp_path / 'm.onnx')))
    run_cli('ghostsr', 'upscale', tiny_pairs['val_lr'], '-opt', options, '--out', 'up', '--tile', '9',
            '--tile_overlap', '12')
    assert len(list((tmp_path / 'up').iterdir())) == 2
    printed = run_cli('ghostsr', 'benchmark', options, '--latency_only', '--latency_size', '8', '8', '--warmup', '0',
                      '--repeats', '1', '--out', 'bench').stdout
    assert 'adder x2' in printed
    from ghostsr_plugin.cost import cost_input, model_cost

    result = json.loads((tmp_path / 'bench' / 'adder_x2.json').read_text())
    plain = model_cost(build_network(BASE).eval(), cost_input(2))
    # The 4 body convs' 8 x 9 x 8 multiplications per LR pixel are gone; each adder layer has 2 per output
    # value instead (its batch norm's scale, the power activation's sign); the head's and tail's stay.
    pixels = 360 * 640
    assert plain['mults'] - result['mults'] == 4 * 8 * pixels * (72 - 2)
    assert result['energy_pj'] == pytest.approx(3.7 * result['mults'] + 0.9 * result['adds'])
    assert result['outside_energy']['special'] == {'pow': 4 * 8 * pixels}  # the power activations
