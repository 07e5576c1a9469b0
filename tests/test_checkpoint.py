"""Every checkpoint the plugin or its `basicsr` command loads: tensors only, and one short line otherwise."""
import copy
import os
import os.path as osp

import pytest
import torch

from ghostsr_plugin.checkpoint import load_checkpoint
from ghostsr_plugin.cli import ghostsr_main
from ghostsr_plugin.errors import InputError

from .conftest import write_options
from .test_ghost_init_training import PLAIN, save_plain


class Payload:
    """A custom class: pickled by reference, so loading it means importing and running code."""


def code_pickle(tmp_path):
    """``(file, marker)``: a pickle whose loading would call ``os.system`` and create ``marker``."""
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'evil.pth'
    path.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    return str(path), marker


def object_checkpoint(tmp_path):
    path = tmp_path / 'objects.pth'
    torch.save({'params': Payload()}, path)
    return str(path)


def assert_one_clean_line(message, path):
    lines = message.strip().splitlines()
    assert len(lines) == 1, message
    line = lines[0]
    assert path in line and 'not a checkpoint of tensors' in line and 'nothing was run from it' in line, line
    assert 'weights_only' not in line and '\x1b' not in line and 'Traceback' not in message
    assert len(line) < 250 + len(path), line


@pytest.mark.parametrize('make', [code_pickle, object_checkpoint], ids=['os_system_global', 'custom_class'])
def test_loader_refuses_code_in_one_line_and_runs_nothing(tmp_path, make):
    made = make(tmp_path)
    path = made[0] if isinstance(made, tuple) else made
    with pytest.raises(InputError) as error:
        load_checkpoint(path)
    assert_one_clean_line(str(error.value), path)
    assert not (tmp_path / 'code_ran').exists()


def test_loader_names_a_file_that_is_no_checkpoint(tmp_path):
    notes = tmp_path / 'notes.pth'
    notes.write_text('hello')
    with pytest.raises(InputError, match=r'notes\.pth: not a PyTorch checkpoint file'):
        load_checkpoint(str(notes))
    with pytest.raises(InputError, match=r'gone\.pth does not exist'):
        load_checkpoint(str(tmp_path / 'gone.pth'))


def expect_one_line(capsys, args, path):
    with pytest.raises(SystemExit) as exit_info:
        ghostsr_main(args)
    assert exit_info.value.code == 2
    assert_one_clean_line(capsys.readouterr().err, path)


def test_ghostsr_commands_refuse_code(tmp_path, capsys, tiny_pairs):
    evil, marker = code_pickle(tmp_path)
    ghost = {'type': 'GhostEDSR', **{k: v for k, v in PLAIN.items() if k != 'type'}}
    options = write_options(tmp_path / 'o.yml', {
        'name': 'tiny', 'scale': 2, 'network_g': ghost, 'path': {'pretrain_network_g': None},
        'ghost_init': {'network': dict(PLAIN), 'checkpoint': evil, 'method': 'cluster'}})
    expect_one_line(capsys, ['freeze', '-opt', options, '--checkpoint', evil, '--out', str(tmp_path / 'f.pth')], evil)
    expect_one_line(capsys, ['cluster-init', '-opt', options, '--out', str(tmp_path / 'i.pth')], evil)
    data = tmp_path / 'data' / 'Tiny'
    os.makedirs(data)
    os.symlink(tiny_pairs['val_hr'], data / 'GTmod2')
    os.symlink(tiny_pairs['val_lr'], data / 'LRbicx2')
    expect_one_line(capsys, ['benchmark', '--data', str(tmp_path / 'data'), '--out', str(tmp_path / 'out'),
                             options, '--checkpoint', evil], evil)
    assert not marker.exists() and not (tmp_path / 'f.pth').exists() and not (tmp_path / 'i.pth').exists()


def expect_train_refused(run_cli, tmp_path, path, *args):
    proc = run_cli('basicsr', 'train', *args, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert_one_clean_line(proc.stderr, path)
    assert not (tmp_path / 'code_ran').exists()


def test_basicsr_train_refuses_code_before_creating_anything(tmp_path, tiny_options, run_cli):
    evil, _ = code_pickle(tmp_path)
    pretrained = copy.deepcopy(tiny_options)
    pretrained['path']['pretrain_network_g'] = evil
    expect_train_refused(run_cli, tmp_path, evil, '-opt', write_options(tmp_path / 'p.yml', pretrained))
    assert not (tmp_path / 'experiments').exists()

    init = copy.deepcopy(tiny_options)
    init['ghost_init'] = {'network': dict(PLAIN), 'checkpoint': evil}
    expect_train_refused(run_cli, tmp_path, evil, '-opt', write_options(tmp_path / 'i.yml', init))
    assert not (tmp_path / 'experiments').exists()

    # The state --auto_resume picks: refused before BasicSR reads or creates anything else.
    states = tmp_path / 'experiments' / tiny_options['name'] / 'training_states'
    os.makedirs(states)
    os.rename(evil, states / '2.state')
    expect_train_refused(run_cli, tmp_path, osp.join('experiments', tiny_options['name'], 'training_states',
                                                     '2.state'),
                         '-opt', write_options(tmp_path / 'r.yml', tiny_options), '--auto_resume')
    assert os.listdir(tmp_path / 'experiments' / tiny_options['name']) == ['training_states']


def test_basicsr_models_load_pretrained_weights_through_the_loader(tmp_path):
    from basicsr.archs.edsr_arch import EDSR
    from basicsr.models.base_model import BaseModel

    model = BaseModel({'num_gpu': 0, 'is_train': False, 'dist': False})
    net = EDSR(**{k: v for k, v in PLAIN.items() if k != 'type'})
    evil, marker = code_pickle(tmp_path)
    with pytest.raises(InputError) as error:
        model.load_network(net, evil)
    assert_one_clean_line(str(error.value), evil)
    assert not marker.exists()
    model.load_network(net, save_plain(tmp_path / 'plain.pth', seed=3))  # a real checkpoint still loads
    assert torch.equal(net.state_dict()['conv_first.weight'],
                       torch.load(tmp_path / 'plain.pth', weights_only=True)['params']['conv_first.weight'])
