"""A real 2-process `torchrun ... basicsr train --launcher pytorch` on CPU (gloo): clustering init, warm-up."""
import copy
import os
import os.path as osp
import re
import subprocess

import pytest
import torch

from .conftest import BIN, REPO_ROOT, write_options
from .test_ghost_init_training import PLAIN, save_plain


def test_two_process_run_with_cluster_init_and_warmup(tmp_path, tiny_options):
    opt = copy.deepcopy(tiny_options)
    opt['name'] = 'ddp'
    opt['num_gpu'] = 'auto'  # as the shipped files: no GPU here, so the CPU
    del opt['val']
    opt['datasets']['train']['batch_size_per_gpu'] = 2  # 8 images, 2 ranks: 2 iterations an epoch
    opt['ghost_init'] = {'network': dict(PLAIN), 'checkpoint': save_plain(tmp_path / 'plain.pth'),
                         'param_key': 'params_ema', 'method': 'cluster', 'seed': 0}
    # In the warm-up iterations the logits get no gradient: DDP must be told they may be unused.
    opt['train'] = {**opt['train'], 'total_iter': 4, 'temperature_schedule': {
        'type': 'exponential', 'base': 0.8, 'unit': 'iter', 'warmup': 2}}
    opt['logger']['save_checkpoint_freq'] = 4
    options = write_options(tmp_path / 'ddp.yml', opt)

    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': REPO_ROOT, 'PYTHONUNBUFFERED': '1',
           'CUDA_VISIBLE_DEVICES': ''}  # the CPU path, also where GPUs are
    proc = subprocess.run(
        [osp.join(BIN, 'torchrun'), '--standalone', '--nproc_per_node=2',
         osp.join(REPO_ROOT, 'tests', 'distributed_train.py'), str(tmp_path),
         'train', '-opt', options, '--launcher', 'pytorch'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    exp = tmp_path / 'experiments' / 'ddp'
    log = open(next(exp.glob('train_*.log'))).read()
    assert 'World size (gpu number): 2' in log and log.count('Ghost init by cluster') == 1
    temperatures = [float(t) for t in re.findall(r'temperature: ([\d.e+-]+)', log)]
    assert temperatures == [1.0, 1.0, 1.0, 0.8]  # two iterations of warm-up, then the schedule

    ranks = [torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in (0, 1)]
    saved = torch.load(exp / 'models' / 'net_g_latest.pth', weights_only=True)
    plain = torch.load(opt['ghost_init']['checkpoint'], weights_only=True)['params_ema']
    single_process_keys = set(ranks[0]['params'])
    assert not [k for k in single_process_keys if k.startswith('module.')]
    for key in ('params', 'params_ema'):
        assert set(saved[key]) == single_process_keys
        for name, value in ranks[0][key].items():
            assert torch.equal(ranks[1][key][name], value), f'rank 1 {key}.{name}'
            assert torch.equal(saved[key][name], value), f'saved {key}.{name}'
    # trained from the clustering init: the tail conv started as the plain model's and has moved since
    assert not torch.equal(saved['params']['conv_last.weight'], plain['conv_last.weight'])
    assert torch.allclose(saved['params']['conv_last.weight'], plain['conv_last.weight'], atol=0.05)


@pytest.mark.parametrize('hold', [{'warmup': 2}, {'hold_from': 3}])
def test_a_hold_with_find_unused_parameters_false_fails_the_option_check(tmp_path, tiny_options, hold):
    from ghostsr_plugin.option_check import OptionError, check_options

    tiny_options['train']['temperature_schedule'] = {'type': 'exponential', 'unit': 'iter', **hold}
    check_options(write_options(tmp_path / 'unset.yml', tiny_options), is_train=True)
    tiny_options['find_unused_parameters'] = False
    with pytest.raises(OptionError, match=r"'find_unused_parameters': false, but a hold of the orientation"):
        check_options(write_options(tmp_path / 'false.yml', tiny_options), is_train=True)
