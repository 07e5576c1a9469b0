"""Every shipped option file passes the checks and builds its network."""
import glob
import os
import os.path as osp

import pytest
import torch
from basicsr.archs import build_network

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
    if 'ghost_init' in opt:  # the plain checkpoint the file starts from (the check only loads it)
        os.makedirs(osp.dirname(opt['ghost_init']['checkpoint']), exist_ok=True)
        torch.save({'params': {}}, opt['ghost_init']['checkpoint'])
    check_options(path, is_train=True)
    with torch.device('meta'):  # checks the arguments and structure without paying for weights
        net = build_network(opt['network_g'])
    assert net.upsample is not None and opt['scale'] == opt['network_g']['upscale']


def test_shipped_options_cover_the_paper_settings():
    names = {osp.relpath(p, osp.join(REPO_ROOT, 'options')) for p in OPTION_FILES}
    for s in (2, 3, 4):
        assert {f'ghost_edsr_x{s}.yml', f'ghost_edsr_baseline_x{s}.yml'} <= names
        for model in ('rdn', 'carn', 'carn_m'):
            assert {f'{model}_x{s}.yml', f'ghost_{model}_x{s}.yml'} <= names
