"""Shared fixtures: a tiny paired LR/HR set cut from scikit-image photos, and option files."""
import copy
import os
import os.path as osp
import sys
import tempfile

import cv2
import pytest
import yaml

# torch.compile's on-disk caches outlive a change of the ops' schemas: a compiled graph cached by
# an earlier version of the plugin calls the ops with their old arguments. Tests compile afresh.
os.environ['TORCHINDUCTOR_CACHE_DIR'] = tempfile.mkdtemp(prefix='ghostsr_tests_inductor_')

import ghostsr_plugin  # noqa: F401, E402  (must precede any basicsr import: applies the compat fixes)
from ghostsr_plugin.data_prep import bicubic_downscale, mod_crop

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(REPO_ROOT, '..', 'shared', 'data')
BIN = osp.dirname(sys.executable)


def _photo(name):
    import skimage.data

    return getattr(skimage.data, name)()[..., ::-1]  # RGB -> BGR, as cv2 writes


@pytest.fixture(scope='session')
def tiny_pairs(tmp_path_factory):
    """x2 pairs: 8 training crops (64 px HR) and 2 validation crops (48 px HR) in BasicSR's layout."""
    root = tmp_path_factory.mktemp('tiny_pairs')
    folders = {k: root / k for k in ('train_hr', 'train_lr', 'val_hr', 'val_lr')}
    for folder in folders.values():
        folder.mkdir()
    for name in ('astronaut', 'coffee'):
        img = _photo(name)
        for i in range(4):
            hr = mod_crop(img[40 * i:40 * i + 64, 60 * i:60 * i + 64], 2)
            cv2.imwrite(str(folders['train_hr'] / f'{name}{i}.png'), hr)
            cv2.imwrite(str(folders['train_lr'] / f'{name}{i}.png'), bicubic_downscale(hr, 2))
        hr = img[200:248, 200:248]
        cv2.imwrite(str(folders['val_hr'] / f'{name}.png'), hr)
        cv2.imwrite(str(folders['val_lr'] / f'{name}.png'), bicubic_downscale(hr, 2))
    return {k: str(v) for k, v in folders.items()}


TINY_OPTIONS = {
    'name': 'tiny_ghost_edsr_x2',
    'model_type': 'GhostSRModel',
    'scale': 2,
    'num_gpu': 0,
    'manual_seed': 0,
    'datasets': {
        'train': {
            'name': 'tiny', 'type': 'PairedImageDataset', 'dataroot_gt': None, 'dataroot_lq': None,
            'io_backend': {'type': 'disk'}, 'gt_size': 32, 'use_hflip': True, 'use_rot': True,
            'use_shuffle': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 4, 'dataset_enlarge_ratio': 1,
        },
        'val': {'name': 'tiny_val', 'type': 'PairedImageDataset', 'dataroot_gt': None, 'dataroot_lq': None,
                'io_backend': {'type': 'disk'}},
    },
    'network_g': {'type': 'GhostEDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2,
                  'upscale': 2, 'res_scale': 1, 'img_range': 255.},
    'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
    'train': {
        'ema_decay': 0.9,
        'optim_g': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.99]},
        'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
        'total_iter': 4,
        'warmup_iter': -1,
        'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
    },
    'val': {'val_freq': 2, 'save_img': False,
            'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True}}},
    'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False},
}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles afresh: dynamo's caches, keyed by code object, would otherwise carry one
    test's shapes into the next (marking sizes dynamic, or, past the recompile limit, running eager)."""
    import torch._dynamo

    torch._dynamo.reset()


@pytest.fixture
def tiny_options(tiny_pairs):
    """A deep copy of the tiny training options pointing at ``tiny_pairs``."""
    opt = copy.deepcopy(TINY_OPTIONS)
    for phase, prefix in (('train', 'train'), ('val', 'val')):
        opt['datasets'][phase]['dataroot_gt'] = tiny_pairs[f'{prefix}_hr']
        opt['datasets'][phase]['dataroot_lq'] = tiny_pairs[f'{prefix}_lr']
    return opt


def free_port():
    """A TCP port on 127.0.0.1 that is free now (for a process group's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def write_options(path, opt):
    """Write ``opt`` as a YAML option file and return its path as str."""
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return str(path)


@pytest.fixture
def run_cli(tmp_path):
    """Run a console command of the venv in ``tmp_path``; returns the CompletedProcess."""
    import subprocess

    def run(command, *args, check=True):
        env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
        proc = subprocess.run([osp.join(BIN, command), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f'{command} {" ".join(args)} failed ({proc.returncode}):\n'
                                 f'{proc.stdout}\n{proc.stderr}')
        return proc

    return run
