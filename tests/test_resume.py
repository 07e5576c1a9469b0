"""An interrupted `basicsr train` resumed with --auto_resume retraces the uninterrupted run."""
import re

import pytest
import torch

from .conftest import free_port, write_options


def train_options(tiny_options, name, total_iter, persistent_workers=False):
    opt = {**tiny_options, 'name': name}
    opt['datasets'] = {'train': {**tiny_options['datasets']['train'], 'num_worker_per_gpu': 1,
                                 'persistent_workers': persistent_workers}}
    opt['train'] = {**tiny_options['train'], 'total_iter': total_iter, 'orientation_lr': 10,
                    'temperature_schedule': {'type': 'exponential', 'base': 0.8, 'unit': 'iter'}}
    del opt['val']
    return opt


def logged(exp, pattern):
    text = ''.join(open(f).read() for f in sorted(exp.glob('train_*.log')))
    return re.findall(pattern, text)


@pytest.mark.parametrize('persistent_workers', [False, True], ids=['workers_per_epoch', 'persistent_workers'])
def test_resumed_run_has_the_same_temperatures_orientations_and_weights(tmp_path, tiny_options, run_cli,
                                                                         persistent_workers):
    # 8 images at batch 4: 2 iterations an epoch; the interruption falls on an epoch boundary. A persistent
    # loader worker lives through every epoch of a run but starts anew in the resumed one.
    whole = write_options(tmp_path / 'whole.yml', train_options(tiny_options, 'whole', 6, persistent_workers))
    run_cli('basicsr', 'train', '-opt', whole)
    parts = write_options(tmp_path / 'parts.yml', train_options(tiny_options, 'parts', 2, persistent_workers))
    run_cli('basicsr', 'train', '-opt', parts)
    run_cli('basicsr', 'train', '-opt', parts, '--auto_resume', '--force_yml', 'train:total_iter=6')

    exps = {name: tmp_path / 'experiments' / name for name in ('whole', 'parts')}
    temperatures = {n: logged(e, r'iter:\s+(\d+),.*temperature: ([\d.e+-]+)') for n, e in exps.items()}
    assert temperatures['parts'] == temperatures['whole']
    assert [float(t) for _, t in temperatures['whole']] == pytest.approx([0.8**i for i in range(6)])
    # the argmax orientations per logged iteration (the change counters restart with the process)
    orientations = {n: [re.sub(r' \[\d+/\d+\]', '', line)
                        for line in logged(e, r'Ghost orientations, argmax .*?: (.*)')] for n, e in exps.items()}
    assert orientations['parts'] == orientations['whole'] and len(orientations['whole']) == 6

    states = {n: torch.load(e / 'models' / 'net_g_latest.pth', weights_only=True) for n, e in exps.items()}
    # Bit for bit: both runs do the same arithmetic in the same order on this machine; resume changes none of it.
    for key in ('params', 'params_ema'):
        for name, value in states['whole'][key].items():
            assert torch.equal(states['parts'][key][name], value), f'{key}.{name}'
    # the logits' own parameter group (10 x lr) went through the resume
    optimizer = torch.load(exps['parts'] / 'training_states' / '6.state', weights_only=True)['optimizers'][0]
    assert [g['lr'] / optimizer['param_groups'][0]['lr'] for g in optimizer['param_groups']] == [1, 10]
    deploy = torch.load(exps['whole'] / 'models' / 'net_g_deploy.pth', weights_only=True)
    assert 'body.0.conv1.offsets' in deploy['params'] and 'body.0.conv1.logits' not in deploy['params']


def test_training_options_without_manual_seed_warn(tmp_path, tiny_options):
    import warnings

    from ghostsr_plugin.option_check import check_options

    with warnings.catch_warnings():
        warnings.simplefilter('error')
        check_options(write_options(tmp_path / 'seeded.yml', tiny_options), is_train=True)
    del tiny_options['manual_seed']
    unseeded = write_options(tmp_path / 'unseeded.yml', tiny_options)
    with pytest.warns(UserWarning, match=r"unseeded\.yml: no 'manual_seed'.*set manual_seed for an exact resume"):
        check_options(unseeded, is_train=True)


def _seed_worker(rank, world_size, port, out_dir):
    from torch import distributed as dist

    from ghostsr_plugin.models.ghostsr_model import rank0_seed

    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world_size)
    seed = rank0_seed(1000 + rank)  # as BasicSR draws a seed per rank when the options set none
    torch.save(seed, f'{out_dir}/seed{rank}.pth')
    dist.destroy_process_group()


def test_every_rank_seeds_the_noise_with_rank0s_seed(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_seed_worker, args=(2, free_port(), str(tmp_path)), nprocs=2)
    assert [torch.load(tmp_path / f'seed{r}.pth') for r in (0, 1)] == [1000, 1000]


def test_each_sample_draws_its_augmentation_from_seed_epoch_and_position(tiny_options):
    import random

    from basicsr.data import build_dataset
    from basicsr.data.data_sampler import EnlargedSampler

    from ghostsr_plugin.sample_seeds import EpochPositionSampler, SeededSamples

    dataset = SeededSamples(build_dataset({**tiny_options['datasets']['train'], 'phase': 'train', 'scale': 2}),
                            seed=0, rank=0)
    sampler = EnlargedSampler(dataset.dataset, num_replicas=1, rank=0)
    sampler.set_epoch(3)
    keys = list(EpochPositionSampler(sampler))
    assert [k[:2] for k in keys] == [(3, p) for p in range(8)] and sorted(k[2] for k in keys) == list(range(8))

    random.seed(5)
    expected = random.random()
    random.seed(5)
    first = dataset[(3, 0, 1)]['gt']
    assert random.random() == expected  # the process's own random state is untouched
    assert torch.equal(dataset[(3, 0, 1)]['gt'], first)  # the same key: the same crop, in any process
    crops = [dataset[(epoch, 0, 1)]['gt'] for epoch in range(4)]
    assert not all(torch.equal(c, crops[0]) for c in crops[1:])  # other epochs: other crops
