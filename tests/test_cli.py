"""`basicsr train|test` end to end on CPU, and the option-file errors."""
import os.path as osp
import re

import pytest
import torch

from ghostsr_plugin.cli import basicsr_main
from ghostsr_plugin.option_check import OptionError, check_options

from .conftest import write_options


def test_train_resume_and_test(tmp_path, tiny_options, run_cli):
    opt_file = write_options(tmp_path / 'tiny.yml', {**tiny_options, 'train': {**tiny_options['train'],
                                                                              'total_iter': 2}})
    run_cli('basicsr', 'train', '-opt', opt_file)
    exp = tmp_path / 'experiments' / tiny_options['name']
    assert (exp / 'models' / 'net_g_2.pth').is_file() and (exp / 'training_states' / '2.state').is_file()

    # Resume the same run for two more iterations.
    proc = run_cli('basicsr', 'train', '-opt', opt_file, '--auto_resume', '--force_yml', 'train:total_iter=4')
    log = open(sorted(exp.glob('train_*.log'))[-1]).read()
    # 2 iterations = one epoch of 8 images at batch 4: the resumed run starts the next epoch
    assert 'Resuming training from epoch: 1, iter: 2.' in log, proc.stdout + proc.stderr
    assert re.search(r'iter:\s+3,', log) and not re.search(r'iter:\s+1,', log)
    state = torch.load(exp / 'models' / 'net_g_latest.pth', weights_only=True)
    assert set(state) == {'params', 'params_ema'}
    assert state['params']['body.0.conv1.logits'].shape == (1, 9)

    test_opt = {**tiny_options, 'name': 'tiny_test', 'datasets': {'test_1': tiny_options['datasets']['val']},
                'path': {'pretrain_network_g': str(exp / 'models' / 'net_g_latest.pth'), 'param_key_g': 'params_ema',
                         'strict_load_g': True}}
    del test_opt['train']
    run_cli('basicsr', 'test', '-opt', write_options(tmp_path / 'test.yml', test_opt))
    test_log = open(next((tmp_path / 'results' / 'tiny_test').glob('test_*.log'))).read()
    psnr = float(re.search(r'# psnr: ([\d.]+)', test_log).group(1))
    assert 10 < psnr < 60


def expect_error(capsys, args, *fragments, main=basicsr_main):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in message, message


def test_missing_option_file(capsys, tmp_path):
    expect_error(capsys, ['train', '-opt', str(tmp_path / 'nope.yml')], 'option file not found', 'nope.yml')


def test_malformed_option_file_names_file_and_line(capsys, tmp_path):
    path = tmp_path / 'bad.yml'
    path.write_text('name: x\nnetwork_g:\n  type: [GhostEDSR\n  num_feat: 64\n')
    expect_error(capsys, ['train', '-opt', str(path)], 'bad.yml', 'not valid YAML', 'line')


def test_unknown_arch_names_the_key(capsys, tmp_path, tiny_options):
    tiny_options['network_g']['type'] = 'GhostEDSRR'
    path = write_options(tmp_path / 'o.yml', tiny_options)
    expect_error(capsys, ['train', '-opt', path], 'o.yml', "'network_g.type'", "unknown arch 'GhostEDSRR'",
                 "did you mean 'GhostEDSR'")


def test_unknown_model_and_loss_types(capsys, tmp_path, tiny_options):
    tiny_options['model_type'] = 'GhostModel'
    expect_error(capsys, ['train', '-opt', write_options(tmp_path / 'o.yml', tiny_options)], "'model_type'",
                 "unknown model 'GhostModel'")
    tiny_options['model_type'] = 'GhostSRModel'
    tiny_options['train']['pixel_opt']['type'] = 'L1'
    expect_error(capsys, ['train', '-opt', write_options(tmp_path / 'o.yml', tiny_options)],
                 "'train.pixel_opt.type'", "unknown loss 'L1'")


def test_wrong_arch_argument_names_the_key(capsys, tmp_path, tiny_options):
    tiny_options['network_g']['num_feats'] = tiny_options['network_g'].pop('num_feat')
    expect_error(capsys, ['train', '-opt', write_options(tmp_path / 'o.yml', tiny_options)],
                 "'network_g.num_feats'", 'not an argument of GhostEDSR', "did you mean 'num_feat'")


def test_missing_data_folder_names_the_key(capsys, tmp_path, tiny_options):
    tiny_options['datasets']['train']['dataroot_gt'] = str(tmp_path / 'no_such_folder')
    expect_error(capsys, ['train', '-opt', write_options(tmp_path / 'o.yml', tiny_options)],
                 "'datasets.train.dataroot_gt'", 'no_such_folder', 'does not exist')


def test_console_script_reports_errors_without_traceback(tmp_path, tiny_options, run_cli):
    tiny_options['network_g']['type'] = 'Nope'
    proc = run_cli('basicsr', 'train', '-opt', write_options(tmp_path / 'o.yml', tiny_options), check=False)
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr and "unknown arch 'Nope'" in proc.stderr
    assert osp.isdir(tmp_path / 'experiments') is False  # nothing was started


def test_missing_or_misspelt_network_g(capsys, tmp_path, tiny_options, monkeypatch):
    monkeypatch.chdir(tmp_path)  # should a check pass by mistake, BasicSR runs here
    tiny_options['netwrok_g'] = tiny_options.pop('network_g')
    expect_error(capsys, ['train', '-opt', write_options(tmp_path / 'o.yml', tiny_options)], 'o.yml',
                 "key 'network_g': missing", "'netwrok_g'")
    del tiny_options['netwrok_g']
    expect_error(capsys, ['test', '-opt', write_options(tmp_path / 'o.yml', tiny_options)], "key 'network_g': missing")


def test_force_yml_is_applied_before_the_check(capsys, tmp_path, tiny_options, monkeypatch):
    monkeypatch.chdir(tmp_path)  # should a check pass by mistake, BasicSR runs here
    path = write_options(tmp_path / 'o.yml', tiny_options)
    expect_error(capsys, ['train', '-opt', path, '--force_yml', 'train:total_iter=4', 'network_g:type=Nope'],
                 "'network_g.type'", "unknown arch 'Nope'")
    expect_error(capsys, ['train', '-opt', path, '--force_yml', 'train:total_iter'], "--force_yml 'train:total_iter'",
                 'expected KEY:SUBKEY=VALUE')
    expect_error(capsys, ['train', '-opt', path, '--force_yml', 'trian:total_iter=4'], "no section 'trian'",
                 "did you mean 'train'")
    assert not osp.exists(tmp_path / 'experiments')

    # An override can also repair what the file gets wrong; values are parsed as BasicSR parses them.
    good_folder = tiny_options['datasets']['train']['dataroot_gt']
    tiny_options['datasets']['train']['dataroot_gt'] = str(tmp_path / 'no_such_folder')
    path = write_options(tmp_path / 'o.yml', tiny_options)
    with pytest.raises(OptionError, match='no_such_folder'):
        check_options(path, is_train=True)
    opt = check_options(path, is_train=True, force_yml=[f'datasets:train:dataroot_gt={good_folder}',
                                                        'train:ema_decay=0.999', 'val:save_img=true'])
    assert opt['datasets']['train']['dataroot_gt'] == good_folder
    assert opt['train']['ema_decay'] == 0.999 and opt['val']['save_img'] is True


def test_pretrained_weights_must_be_a_file(capsys, tmp_path, tiny_options, monkeypatch):
    monkeypatch.chdir(tmp_path)  # should a check pass by mistake, BasicSR runs here
    tiny_options['path']['pretrain_network_g'] = str(tmp_path)
    expect_error(capsys, ['train', '-opt', write_options(tmp_path / 'o.yml', tiny_options)],
                 "'path.pretrain_network_g'", 'expected a checkpoint file', 'found a folder')


def test_train_takes_train_and_val_phases_only(capsys, tmp_path, tiny_options, monkeypatch):
    monkeypatch.chdir(tmp_path)  # should a check pass by mistake, BasicSR runs here
    tiny_options['datasets']['test_1'] = tiny_options['datasets'].pop('val')
    path = write_options(tmp_path / 'o.yml', tiny_options)
    expect_error(capsys, ['train', '-opt', path], "'datasets.test_1'", "'train' or 'val*'", "found 'test_1'")
    check_options(path, is_train=False)
