"""InMemoryPairedImageDataset gives BasicSR's PairedImageDataset's samples, from pairs decoded once."""
import os
import random
import shutil

import pytest
import torch
from basicsr.data.paired_image_dataset import PairedImageDataset

from ghostsr_plugin.data.in_memory_dataset import InMemoryPairedImageDataset, load_pairs
from ghostsr_plugin.option_check import OptionError, check_options

from .conftest import write_options


def options(tiny_pairs, phase='train', **extra):
    folder = 'train' if phase == 'train' else 'val'
    return {'dataroot_gt': tiny_pairs[f'{folder}_hr'], 'dataroot_lq': tiny_pairs[f'{folder}_lr'],
            'io_backend': {'type': 'disk'}, 'scale': 2, 'phase': phase, 'gt_size': 32, 'use_hflip': True,
            'use_rot': True, **extra}


def samples(dataset, draws):
    """``{gt file name: [sample of each random seed]}``: each index drawn with ``random`` seeded 0, 1, ..."""
    out = {}
    for index in range(len(dataset)):
        for seed in range(draws):
            random.seed(seed)
            sample = dataset[index]
            out.setdefault(sample['gt_path'].rsplit('/', 1)[-1], []).append(sample)
    return out


@pytest.mark.parametrize('phase', ['train', 'val'])
def test_samples_equal_paired_image_datasets_for_the_same_random_state(tiny_pairs, phase):
    draws = 6 if phase == 'train' else 1  # repeated draws: a flip must not change the pair held in memory
    want = samples(PairedImageDataset(options(tiny_pairs, phase)), draws)
    got = samples(InMemoryPairedImageDataset(options(tiny_pairs, phase)), draws)
    assert got.keys() == want.keys() and len(got) == (8 if phase == 'train' else 2)
    for name in want:
        for g, w in zip(got[name], want[name]):
            assert g['gt'].dtype == torch.float32 and g['lq_path'] == w['lq_path']
            assert torch.equal(g['gt'], w['gt']) and torch.equal(g['lq'], w['lq']), name
    if phase == 'train':
        crops = [s['gt'] for s in got['astronaut0.png']]
        assert not all(torch.equal(c, crops[0]) for c in crops[1:])  # the seeds drew different crops


def test_without_lq_folder_the_lr_is_matlab_bicubic_of_the_hr(tiny_pairs):
    """The fixture's LR files were made by the same MATLAB bicubic (then PNG): identical pairs."""
    want = samples(PairedImageDataset(options(tiny_pairs, 'val')), 1)
    got = samples(InMemoryPairedImageDataset(options(tiny_pairs, 'val', dataroot_lq=None)), 1)
    for name in want:
        assert torch.equal(got[name][0]['lq'], want[name][0]['lq']) and torch.equal(got[name][0]['gt'],
                                                                                     want[name][0]['gt'])


def test_lmdb_pairs_equal_the_folders(tiny_pairs, tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    roots = {}
    for kind in ('hr', 'lr'):
        names = sorted(os.listdir(tiny_pairs[f'train_{kind}']))
        roots[kind] = str(tmp_path / f'{kind}.lmdb')
        make_lmdb_from_imgs(tiny_pairs[f'train_{kind}'], roots[kind], names, [n.rsplit('.', 1)[0] for n in names])
    lmdb = InMemoryPairedImageDataset(options(tiny_pairs, dataroot_gt=roots['hr'], dataroot_lq=roots['lr'],
                                              io_backend={'type': 'lmdb'}))
    folder = InMemoryPairedImageDataset(options(tiny_pairs))
    assert len(lmdb) == len(folder) == 8
    for (_, _, hr, lr), (_, _, want_hr, want_lr) in zip(lmdb.pairs, folder.pairs):
        assert (hr == want_hr).all() and (lr == want_lr).all()


def test_a_second_dataset_with_the_same_options_reuses_the_decoded_pairs(tiny_pairs):
    first = InMemoryPairedImageDataset(options(tiny_pairs, gt_size=16))
    misses = load_pairs.cache_info().misses
    second = InMemoryPairedImageDataset(options(tiny_pairs, gt_size=32))
    assert second.pairs is first.pairs and load_pairs.cache_info().misses == misses


def test_the_option_check_accepts_a_gt_folder_alone_and_names_an_empty_one(tmp_path, tiny_options, tiny_pairs):
    train = tiny_options['datasets']['train']
    gt = tmp_path / 'gt'
    shutil.copytree(tiny_pairs['train_hr'], gt)
    train.update(type='InMemoryPairedImageDataset', dataroot_gt=str(gt), dataroot_lq=None)
    check_options(write_options(tmp_path / 'o.yml', tiny_options), is_train=True)
    for image in gt.iterdir():
        image.unlink()
    with pytest.raises(OptionError, match=f"key 'datasets.train.dataroot_gt': folder '{gt}' holds no images"):
        check_options(write_options(tmp_path / 'o.yml', tiny_options), is_train=True)
