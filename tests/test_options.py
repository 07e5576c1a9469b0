"""Every shipped option file passes the checks and builds its network."""
import glob
import os
import os.path as osp

import pytest
import torch
from basicsr.archs import build_network

from ghostsr_plugin.archs.conversion import upscale_factor
from ghostsr_plugin.option_check import check_options, load_option_file

from .conftest import REPO_ROOT

OPTION_FILES = sorted(glob.glob(osp.join(REPO_ROOT, 'options', '**', '*.yml'), recursive=True))


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_option_file_is_valid(path, tmp_path, monkeypatch):
    opt = load_option_file(path)
    monkeypatch.chdir(tmp_path)  # the data folders the file names, relative to a run directory
    for dataset in opt['datasets'].values():  # one image pair in each (the check lists the files, reads none)
        for key, name in (('dataroot_gt', 'a'), ('dataroot_lq', dataset.get('filename_tmpl', '{}').format('a'))):
            os.makedirs(dataset[key])
            open(osp.join(dataset[key], f'{name}.png'), 'wb').close()
    # The checkpoints the file starts from or tests (the check only loads them).
    for checkpoint in ((opt.get('ghost_init') or {}).get('checkpoint'), opt['path'].get('pretrain_network_g')):
        if checkpoint:
            os.makedirs(osp.dirname(checkpoint), exist_ok=True)
            torch.save({'params': {}}, checkpoint)
    check_options(path, is_train=f'{osp.sep}test{osp.sep}' not in path)
    with torch.device('meta'):  # checks the arguments and structure without paying for weights
        net = build_network(opt['network_g'])
    assert any(isinstance(m, torch.nn.PixelShuffle) for m in net.modules())
    assert opt['scale'] == upscale_factor(opt['network_g'])


def test_shipped_options_cover_the_paper_settings():
    names = {osp.relpath(p, osp.join(REPO_ROOT, 'options')) for p in OPTION_FILES}
    for s in (2, 3, 4):
        for size in 'LM':
            assert {f'train/EDSR/train_EDSR_{size}x{s}.yml', f'train/GhostEDSR/train_GhostEDSR_{size}x{s}.yml',
                    f'train/GhostEDSR/train_GhostEDSR_{size}x{s}_init.yml'} <= names
        assert f'train/AdderEDSR/train_AdderEDSR_Mx{s}.yml' in names  # AdderSR at EDSR-baseline size (peers.md)
        for model in ('RDN', 'CARN', 'CARN_M'):
            assert {f'train/{model}/train_{model}_x{s}.yml', f'train/Ghost{model}/train_Ghost{model}_x{s}.yml',
                    f'train/Ghost{model}/train_Ghost{model}_x{s}_init.yml'} <= names


def test_every_model_has_train_and_test_options():
    names = {osp.relpath(p, osp.join(REPO_ROOT, 'options')) for p in OPTION_FILES}
    trains = {n for n in names if n.startswith('train/') and not n.endswith('_init.yml')}
    for train in trains:
        model, file = train.split('/')[1:]
        assert f"test/{model}/{file.replace('train_', 'test_', 1)}" in names


def test_a_shipped_test_option_file_runs_through_basicsr_test(tmp_path, tiny_pairs, run_cli):
    """basicsr test -opt options/test/GhostEDSR/test_GhostEDSR_Mx2.yml, once the user has weights and test sets."""
    import shutil

    from basicsr.archs import build_network

    from ghostsr_plugin.archs import freeze

    path = osp.join(REPO_ROOT, 'options', 'test', 'GhostEDSR', 'test_GhostEDSR_Mx2.yml')
    opt = load_option_file(path)
    for dataset in opt['datasets'].values():
        shutil.copytree(tiny_pairs['val_hr'], tmp_path / dataset['dataroot_gt'])
        shutil.copytree(tiny_pairs['val_lr'], tmp_path / dataset['dataroot_lq'])
    network = {**opt['network_g'], 'deploy': False}
    torch.manual_seed(0)
    weights = freeze(build_network(network)).state_dict()  # as `basicsr train` writes net_g_deploy.pth
    checkpoint = tmp_path / opt['path']['pretrain_network_g']
    checkpoint.parent.mkdir(parents=True)
    torch.save({'params': weights, 'params_ema': weights}, checkpoint)
    run_cli('basicsr', 'test', '-opt', path)
    log = next((tmp_path / 'results' / opt['name']).glob('test_*.log')).read_text()
    assert 'Loading GhostEDSR model from' in log and '# psnr:' in log and 'Set14' in log
    assert len(list((tmp_path / 'results' / opt['name'] / 'visualization' / 'Set5').glob('*.png'))) == 2


def test_the_paper_schedule_edsr_files_train_fast():
    """EDSR-baseline and EDSR-L, x2/x3/x4, plain and Ghost: 300k iterations with the fast options and data path."""
    from basicsr.utils.registry import MODEL_REGISTRY

    from ghostsr_plugin.models.fast_sr_model import FastSRModel, fast_options

    files = [p for p in OPTION_FILES if osp.basename(p).startswith(('train_EDSR_', 'train_GhostEDSR_'))]
    assert len(files) == 18
    for path in files:
        opt = load_option_file(path)
        assert issubclass(MODEL_REGISTRY.get(opt['model_type']), FastSRModel), path
        fast = fast_options(opt['train'])
        want = ('bf16', True, {'dynamic': False}, 300000)
        assert (fast.amp, fast.channels_last, fast.compile, opt['train']['total_iter']) == want, path
        train_set = opt['datasets']['train']
        assert train_set['type'] == 'InMemoryPairedImageDataset' and train_set['prefetch_mode'] == 'cuda', path
        assert train_set['dataroot_lq'].endswith(f"X{opt['scale']}") and train_set['persistent_workers'], path
