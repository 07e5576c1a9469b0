"""Output paths and a user's mistakes: nothing a user has is deleted, every mistake is one named line, exit 2."""
import contextlib
import json
import os
import os.path as osp
import subprocess

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network

from ghostsr_plugin.atomic import MANIFEST, atomic_folder
from ghostsr_plugin.cli import basicsr_main, ghostsr_main
from ghostsr_plugin.errors import InputError

from .conftest import REPO_ROOT, _photo, write_options
from .test_benchmark import tiny_benchmark  # noqa: F401  (a fixture)
from .test_deploy_commands import NET, images, model_files  # noqa: F401  (fixtures)


def fails(capsys, args, *expected, code=2, main=ghostsr_main):
    """Run ``ghostsr args``: it must exit ``code`` with one line on stderr holding each of ``expected``."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == code, err
    line = err.splitlines()[-1]  # (after any progress bar)
    assert 'Traceback' not in err and line.startswith(('error: ', 'ghostsr ', 'interrupted')), err
    for text in expected:
        assert text in line, err
    return line


def user_folder(path):
    """A folder of a user's files, and a snapshot of it to compare with afterwards."""
    (path / 'sub').mkdir(parents=True)
    (path / 'notes.txt').write_text('mine')
    (path / 'sub' / 'data.bin').write_bytes(b'\x00\x01')
    return snapshot(path)


def snapshot(path):
    return {osp.relpath(osp.join(root, f), path): open(osp.join(root, f), 'rb').read()
            for root, _, files in os.walk(path) for f in files}


# --- 1, 2: --overwrite never deletes a folder; a name without extension is written --------------


def test_export_overwrite_never_replaces_a_folder(model_files, tmp_path, capsys):  # noqa: F811
    results = tmp_path / 'results'
    before = user_folder(results)
    for out in (str(results), f'{results}{os.sep}'):
        fails(capsys, ['export', '-opt', model_files['opt'], '--out', out, '--overwrite'], str(results), 'folder')
        assert snapshot(results) == before
    assert not list(tmp_path.glob('.tmp-*'))


def test_upscale_overwrite_never_replaces_a_folder_with_an_output_name(model_files, images, tmp_path, capsys):  # noqa: F811
    out = tmp_path / 'out'
    before = user_folder(out / 'rgb.png')
    fails(capsys, ['upscale', str(images), '--out', str(out), '-opt', model_files['opt'], '--overwrite'],
          'rgb.png is a folder; expected a file')
    assert snapshot(out / 'rgb.png') == before and sorted(os.listdir(out)) == ['rgb.png']


def test_freeze_writes_a_name_without_extension_and_refuses_a_folder(model_files, tmp_path, capsys):  # noqa: F811
    out = tmp_path / 'model_deploy'
    ghostsr_main(['freeze', '-opt', model_files['opt'], '--checkpoint', model_files['checkpoint'], '--out', str(out)])
    state = torch.load(out, weights_only=True)
    assert any(k.endswith('.offsets') for k in state['params'])
    folder = tmp_path / 'folder'
    before = user_folder(folder)
    fails(capsys, ['freeze', '-opt', model_files['opt'], '--checkpoint', model_files['checkpoint'],
                   '--out', str(folder), '--overwrite'], 'is a folder')
    assert snapshot(folder) == before


def test_freeze_refuses_to_write_over_its_input(model_files, capsys):  # noqa: F811
    before = open(model_files['checkpoint'], 'rb').read()
    fails(capsys, ['freeze', '-opt', model_files['opt'], '--checkpoint', model_files['checkpoint'], '--out',
                   model_files['checkpoint'], '--overwrite'],
          'is an input of this command')
    assert open(model_files['checkpoint'], 'rb').read() == before


def test_a_folder_output_replaces_only_what_the_plugin_wrote(tmp_path):
    target = tmp_path / 'set'
    before = user_folder(target)  # a user's folder: no manifest
    with pytest.raises(InputError, match='was not written by ghostsr'), atomic_folder(target) as temporary:
        open(f'{temporary}/new.png', 'w').close()
    assert snapshot(target) == before
    target = tmp_path / 'built'
    with atomic_folder(target) as temporary:
        os.makedirs(f'{temporary}/a')
        open(f'{temporary}/a/old.png', 'w').close()
    assert json.loads((target / MANIFEST).read_text())['files'] == [osp.join('a', 'old.png')]
    (target / 'a' / 'added_by_user.txt').write_text('mine')
    with pytest.raises(InputError, match=r'holds a/added_by_user\.txt'), atomic_folder(target) as temporary:
        pass
    assert (target / 'a' / 'added_by_user.txt').read_text() == 'mine'
    (target / 'a' / 'added_by_user.txt').unlink()
    with atomic_folder(target) as temporary:
        open(f'{temporary}/new.png', 'w').close()
    assert sorted(os.listdir(target)) == [MANIFEST, 'new.png'] and sorted(os.listdir(tmp_path)) == ['built', 'set']


def test_prepare_benchmarks_overwrite_keeps_a_users_folder(tmp_path, capsys):
    hr = tmp_path / 'Set5' / 'HR'
    hr.mkdir(parents=True)
    cv2.imwrite(str(hr / 'a.png'), np.ascontiguousarray(_photo('astronaut')[:48, :48]))
    out = tmp_path / 'benchmark'
    args = ['prepare-benchmarks', str(hr), '--out', str(out), '--scales', '2']
    ghostsr_main(args)
    ghostsr_main([*args, '--overwrite'])  # its own output: replaced
    (out / 'Set5' / 'LRbicx2' / 'mine.txt').write_text('mine')
    fails(capsys, [*args, '--overwrite'], 'mine.txt', 'ghostsr did not write there')
    assert (out / 'Set5' / 'LRbicx2' / 'mine.txt').read_text() == 'mine'


# --- 3: one line, exit 2, for every mistake -------------------------------------------------------


@pytest.mark.parametrize('device, message', [('bogus', "found 'bogus'"), ('cuda:99', 'cuda:99')])
def test_upscale_and_benchmark_bad_device(device, message, model_files, images, tmp_path, capsys):  # noqa: F811
    fails(capsys, ['upscale', str(images), '--out', str(tmp_path / 'o'), '-opt', model_files['opt'],
                   '--device', device], '--device', message)
    fails(capsys, ['benchmark', 'bicubic', '--device', device], '--device', message)


def test_out_that_is_a_file_fails_before_any_work(model_files, images, tmp_path, capsys, monkeypatch):  # noqa: F811
    taken = tmp_path / 'taken'
    taken.write_text('mine')
    from ghostsr_plugin import trained_model

    monkeypatch.setattr(trained_model, 'frozen_model', lambda *a: pytest.fail('the model was loaded'))
    fails(capsys, ['upscale', str(images), '--out', str(taken), '-opt', model_files['opt']], 'is a file')
    fails(capsys, ['benchmark', model_files['opt'], '--latency_only', '--out', str(taken)], 'is a file')
    assert taken.read_text() == 'mine'


@contextlib.contextmanager
def read_only_folder(path):
    """``path`` made read-only: by its mode for a user, by a read-only mount for root (who ignores modes)."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    done = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', str(path)], capture_output=True)
    if done.returncode:
        pytest.skip(f'root cannot mount a read-only folder here: {done.stderr.decode().strip()}')
    try:
        yield path
    finally:
        subprocess.run(['umount', str(path)], check=True)


def test_read_only_output_folder(model_files, images, tmp_path, capsys):  # noqa: F811
    with read_only_folder(tmp_path / 'locked') as locked:
        fails(capsys, ['export', '-opt', model_files['opt'], '--out', str(locked / 'm.onnx')], 'cannot write in folder')
        fails(capsys, ['upscale', str(images), '--out', str(locked / 'x2'), '-opt', model_files['opt']],
              'cannot write in folder')


def test_wrongly_typed_network_arguments(model_files, tmp_path, capsys):  # noqa: F811
    fails(capsys, ['export', '--arch', 'GhostEDSR', '--arch_args', 'num_in_ch=3', 'num_out_ch=3', 'num_feat=abc',
                   'num_block=2', 'upscale=2', '--checkpoint', model_files['checkpoint'], '--out', str(tmp_path / 'a')],
          "network_g.num_feat': expected a number (the default is 64), found str 'abc'")
    fails(capsys, ['export', '--arch', 'GhostEDSR', '--arch_args', 'num_in_ch=abc', 'num_out_ch=3', 'num_feat=8',
                   'num_block=2', 'upscale=2', '--checkpoint', model_files['checkpoint'], '--out', str(tmp_path / 'a')],
          'GhostEDSR cannot be built from these arguments', "num_in_ch='abc'")
    opt = write_options(tmp_path / 'typed.yml', {'name': 'm', 'scale': 2, 'network_g': {**NET, 'num_block': 'two'},
                                                 'path': {'pretrain_network_g': model_files['checkpoint']}})
    fails(capsys, ['freeze', '-opt', opt, '--checkpoint', model_files['checkpoint'], '--out', str(tmp_path / 'f.pth')],
          "network_g.num_block'", "'two'")


def test_onnx_file_that_is_not_onnx(images, tmp_path, capsys):  # noqa: F811
    fake = tmp_path / 'model.onnx'
    fake.write_text('not a model')
    fails(capsys, ['upscale', str(images), '--out', str(tmp_path / 'o'), '--onnx', str(fake)],
          'not an ONNX model onnxruntime can load')
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('option, value, message', [('--repeats', '0', 'positive integer, found 0'),
                                                    ('--warmup', '-1', 'integer >= 0, found -1')])
def test_benchmark_counts(option, value, message, capsys):
    fails(capsys, ['benchmark', 'bicubic', option, value], option, message)


def test_ctrl_c_is_one_line_and_status_130(model_files, tmp_path, capsys, monkeypatch):  # noqa: F811
    from ghostsr_plugin.commands import export

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, 'export_onnx', interrupted)
    assert fails(capsys, ['export', '-opt', model_files['opt'], '--out', str(tmp_path / 'm.onnx')],
                 code=130) == 'interrupted'
    assert not list(tmp_path.glob('*.onnx')) and not list(tmp_path.glob('.tmp-*'))


def test_ghostsr_cuda_values(monkeypatch, capsys):
    monkeypatch.setenv('GHOSTSR_CUDA', 'banana')
    fails(capsys, ['doctor'], 'GHOSTSR_CUDA=banana: expected 0', 'or 1')
    if not torch.cuda.is_available():
        monkeypatch.setenv('GHOSTSR_CUDA', '1')
        fails(capsys, ['doctor'], 'GHOSTSR_CUDA=1 asks for the CUDA kernels, but no CUDA GPU is visible')


# --- 4: smaller ----------------------------------------------------------------------------------


def test_upscale_failing_before_its_first_output_leaves_no_folder(model_files, images, tmp_path, capsys):  # noqa: F811
    (images / 'a_broken.png').write_bytes(b'not a png')  # first in order
    out = tmp_path / 'new' / 'x2'
    fails(capsys, ['upscale', str(images), '--out', str(out), '-opt', model_files['opt']], 'a_broken.png',
          '--skip_corrupt')
    assert not (tmp_path / 'new').exists()


def test_upscale_skips_corrupt_images_and_resumes(model_files, images, tmp_path, capsys):  # noqa: F811
    (images / 'm_broken.png').write_bytes(b'not a png')  # in the middle
    out = tmp_path / 'out'
    fails(capsys, ['upscale', str(images), '--out', str(out), '-opt', model_files['opt']],
          'm_broken.png', 'rerun with --skip_existing')
    done = sorted(os.listdir(out))
    assert done == ['deep.png', 'gray.png']  # before the broken one, whole
    stamps = {name: os.stat(out / name).st_mtime_ns for name in done}
    (images / 'm_broken.png').unlink()
    fails(capsys, ['upscale', str(images), '--out', str(out), '-opt', model_files['opt']],
          'deep.png exists (and 1 more); pass --overwrite to replace them, or --skip_existing to keep them')
    ghostsr_main(['upscale', str(images), '--out', str(out), '-opt', model_files['opt'], '--skip_existing'])
    printed = capsys.readouterr().out
    assert '3 image(s) x2' in printed and '2 existing output(s) kept' in printed
    assert sorted(os.listdir(out)) == ['deep.png', 'gray.png', 'photo.jpg', 'rgb.png', 'rgba.png']
    assert {name: os.stat(out / name).st_mtime_ns for name in done} == stamps  # kept, not redone
    (images / 'z_broken.png').write_bytes(b'not a png')
    ghostsr_main(['upscale', str(images), '--out', str(tmp_path / 'out2'), '-opt', model_files['opt'],
                  '--skip_corrupt'])
    printed = capsys.readouterr().out
    assert 'skipped: ' in printed and 'z_broken.png' in printed and '1 unreadable image(s) skipped' in printed
    assert len(os.listdir(tmp_path / 'out2')) == 5


def test_checkpoint_that_is_text_or_a_folder(model_files, tmp_path, capsys):  # noqa: F811
    notes = tmp_path / 'notes.txt'
    notes.write_text('name: x\nlr: 0.1\n')
    fails(capsys, ['freeze', '-opt', model_files['opt'], '--checkpoint', str(notes), '--out', str(tmp_path / 'f')],
          'not a PyTorch checkpoint file')
    fails(capsys, ['freeze', '-opt', model_files['opt'], '--checkpoint', str(tmp_path), '--out', str(tmp_path / 'f')],
          'is a folder; expected a checkpoint file')


def test_the_arch_args_example_of_the_help_works(tmp_path):
    from basicsr.archs import build_network

    from ghostsr_plugin.trained_model import EXAMPLE_ARCH, EXAMPLE_ARCH_ARGS, parse_arch_args

    network = {'type': EXAMPLE_ARCH, **parse_arch_args(EXAMPLE_ARCH_ARGS.split())}
    checkpoint = tmp_path / 'net.pth'
    torch.save({'params': build_network(network).state_dict()}, checkpoint)
    ghostsr_main(['export', '--arch', EXAMPLE_ARCH, '--arch_args', *EXAMPLE_ARCH_ARGS.split(), '--checkpoint',
                  str(checkpoint), '--out', str(tmp_path / 'example.onnx')])
    assert (tmp_path / 'example.onnx').is_file()


def test_tile_overlap_below_the_receptive_field_warns(model_files, images, tmp_path, capsys):  # noqa: F811
    from ghostsr_plugin.tiling import receptive_radius

    from .test_benchmark import receptive_radius as measured_radius
    from .test_deploy_commands import trained_net

    net = trained_net()
    assert receptive_radius(net) >= measured_radius(net, 2)  # an upper bound of what the gradient reaches
    radius = receptive_radius(net)
    common = [str(images / 'rgb.png'), '-opt', model_files['opt'], '--tile', '7']
    ghostsr_main(['upscale', *common, '--out', str(tmp_path / 'a'), '--tile_overlap', str(radius - 1)])
    assert f'pass --tile_overlap {radius}' in capsys.readouterr().err
    ghostsr_main(['upscale', *common, '--out', str(tmp_path / 'b'), '--tile_overlap', str(radius)])
    assert 'warning' not in capsys.readouterr().err


# --- 5: published results name no path of the machine they ran on -------------------------------


def published_results():
    for root, _, files in os.walk(osp.join(REPO_ROOT, 'benchmarks', 'results')):
        for name in files:
            if name.endswith('.json'):
                path = osp.join(root, name)
                with open(path) as f:
                    yield osp.relpath(path, REPO_ROOT), json.load(f)


def paths_in(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_in(key)
            yield from paths_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from paths_in(item)
    elif isinstance(value, str) and (value.startswith(('/', '~')) or value[1:3] == ':\\'):
        yield value


def test_published_results_are_reproducible_from_the_repository():
    from ghostsr_plugin.results import sha256

    results = list(published_results())
    assert results
    for path, record in results:
        assert not list(paths_in(record)), f'{path} names a path outside the repository: {list(paths_in(record))}'
        model = record.get('model') if isinstance(record.get('model'), dict) else {}  # (a cost record names it)
        option_file = model.get('option_file') or record.get('option_file')
        if option_file:
            assert osp.isfile(osp.join(REPO_ROOT, option_file)), f'{path}: its option file {option_file} is not here'
        recorded = (model.get('sha256') or {}).get(option_file)
        if recorded:
            assert sha256([osp.join(REPO_ROOT, option_file)]) == recorded, f'{path}: {option_file} changed since'


def test_benchmark_finds_the_runs_checkpoint_under_another_row_name(model_files, tmp_path, monkeypatch):  # noqa: F811
    run = tmp_path / 'experiments' / 'm' / 'models'  # the option file's name is 'm'
    run.mkdir(parents=True)
    os.replace(model_files['checkpoint'], run / 'net_g_latest.pth')
    opt = write_options(tmp_path / 'run.yml', {'name': 'm', 'scale': 2, 'network_g': NET, 'path': {}})
    monkeypatch.chdir(tmp_path)
    ghostsr_main(['benchmark', opt, '--name', 'Shown name', '--latency_only', '--repeats', '1', '--warmup', '0',
                  '--latency_size', '8', '8', '--out', 'results'])
    record = json.loads((tmp_path / 'results' / 'Shown_name_x2.json').read_text())
    assert record['model']['checkpoint'] == osp.join('experiments', 'm', 'models', 'net_g_latest.pth')
    assert record['model']['option_file'] == 'run.yml'  # relative to the working directory



# --- 6: issue 27's cases: each a named line before any work, and no user file changed -----------


def basicsr_fails(capsys, args, *expected):
    """``fails`` for ``basicsr train|test``."""
    return fails(capsys, args, *expected, main=basicsr_main)


def test_a_network_larger_than_memory_is_refused_with_its_size(model_files, tiny_options, tmp_path, capsys,  # noqa: F811
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)  # (where a training run would make experiments/)
    num_feat = 100_000_000
    huge = {'type': 'Ghost', 'base': {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': num_feat,
                                      'num_block': 1, 'upscale': 2}}
    opt = write_options(tmp_path / 'huge.yml', {'name': 'm', 'scale': 2, 'network_g': huge, 'path': {}})
    tiny_options['network_g'] = huge
    train_opt = write_options(tmp_path / 'huge_train.yml', tiny_options)
    before = snapshot(tmp_path)
    line = fails(capsys, ['freeze', '-opt', opt, '--checkpoint', model_files['checkpoint'], '--out', 'f.pth'],
                 "huge.yml: key 'network_g.base': MSRResNet with these arguments has", 'more than the memory')
    assert int(line.split(' has ')[1].split(' weights')[0].replace(',', '')) > 2 * 9 * num_feat ** 2  # 2 body convs
    basicsr_fails(capsys, ['train', '-opt', train_opt], "huge_train.yml: key 'network_g.base'", 'more than the memory')
    assert snapshot(tmp_path) == before  # (no f.pth, no experiments/)


def test_a_layer_without_ghost_channels_has_no_orientation_to_fit(tiny_options, tmp_path, capsys):
    """ratio 1 with ghost_init's orientation fit: the layers are skipped, said so, and the Ghost network is the
    plain one (every channel intrinsic, the clustering a permutation that the index screening undoes)."""
    plain_section = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2}
    torch.manual_seed(0)
    plain = build_network(dict(plain_section)).eval()
    torch.save({'params': plain.state_dict()}, tmp_path / 'plain.pth')
    tiny_options['network_g'] = {'type': 'Ghost', 'base': plain_section, 'ratio': 1}
    tiny_options['ghost_init'] = {'checkpoint': str(tmp_path / 'plain.pth'), 'method': 'cluster', 'orientation': 'fit'}
    opt = write_options(tmp_path / 'ratio1.yml', tiny_options)
    ghostsr_main(['cluster-init', '-opt', opt, '--out', str(tmp_path / 'init.pth')])
    printed = capsys.readouterr().out
    assert printed.count('no ghost channels (ratio 1), so no orientation to fit') == 4, printed  # body.{0,1}.conv{1,2}
    ghost = build_network(dict(tiny_options['network_g'])).eval()
    ghost.load_state_dict(torch.load(tmp_path / 'init.pth', weights_only=True)['params'])
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ghost(x), plain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not osp.isdir('/proc/self'), reason='needs /proc (Linux)')
def test_an_output_folder_that_takes_no_file_fails_before_any_work(model_files, tmp_path, capsys, monkeypatch):  # noqa: F811
    """/proc: writable by its mode for root, yet it takes no new file; refused before the model is loaded."""
    from ghostsr_plugin import trained_model
    from ghostsr_plugin.commands import cluster_init, freeze

    for module, name in ((trained_model, 'frozen_model'), (freeze, 'load_model'), (cluster_init, 'build_network')):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail('the work started'))
    init = write_options(tmp_path / 'init.yml', {'name': 'i', 'scale': 2, 'network_g': NET, 'path': {},
                                                 'ghost_init': {'checkpoint': model_files['checkpoint'],
                                                                'orientation': 'zero'}})
    before = snapshot(tmp_path)
    common = ['-opt', model_files['opt'], '--checkpoint', model_files['checkpoint']]
    for args in (['freeze', *common, '--out', '/proc/x.pth'], ['export', *common, '--out', '/proc/x.onnx'],
                 ['export', *common, '--out', '/proc/new/x.onnx'],
                 ['cluster-init', '-opt', init, '--out', '/proc/x.pth']):
        fails(capsys, args, f'--out {args[-1]}: cannot write in folder /proc (creating a file there fails')
    assert snapshot(tmp_path) == before


def test_the_inside_of_train_compile_is_checked(tiny_options, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # (where a training run would make experiments/)
    before = snapshot(tmp_path)
    for compile_opt, expected in (({'mode': 'bogus'}, ("key 'train.compile'", 'mode=bogus')),
                                  ({'mdoe': 'max-autotune'}, ("key 'train.compile.mdoe'", "did you mean 'mode'")),
                                  ({'fullgraph': 'yes'}, ("key 'train.compile.fullgraph'", "found str 'yes'"))):
        tiny_options['train']['compile'] = compile_opt
        basicsr_fails(capsys, ['train', '-opt', write_options(tmp_path / 'o.yml', tiny_options)], *expected)
    assert snapshot(tmp_path).keys() == {*before, 'o.yml'}


@pytest.mark.parametrize('command', ['ghostsr', 'basicsr'])
def test_ctrl_c_while_a_command_starts_is_one_line_and_status_130(command, tmp_path):
    """SIGINT while the package imports torch (its modules' import times, printed as they finish, say when)."""
    import re
    import signal

    from .conftest import BIN

    args = ['upscale', 'in', '--out', 'out', '--onnx', 'm.onnx'] if command == 'ghostsr' else ['train', '-opt', 'o.yml']
    env = {**os.environ, 'PYTHONPROFILEIMPORTTIME': '1', 'PYTHONUNBUFFERED': '1'}
    # (a background job's children start with SIGINT ignored, which Python then keeps: give the command the default)
    proc = subprocess.Popen([osp.join(BIN, command), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stderr:
        if re.search(r'\|\s+torch\.', line):  # (inside `import torch`: one of its modules is done)
            proc.send_signal(signal.SIGINT)
            break
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, err
    assert 'Traceback' not in err and 'interrupted' in err.splitlines(), err[-2000:]
    assert os.listdir(tmp_path) == []


def test_upscale_that_upscaled_nothing_fails(model_files, tmp_path, capsys):  # noqa: F811
    text = tmp_path / 'one_text_file.png'
    text.write_text('not an image')
    out = tmp_path / 'out' / 'u16'
    fails(capsys, ['upscale', str(text), '--out', str(out), '-opt', model_files['opt'], '--skip_corrupt'],
          f'{text}: no image upscaled, 1 unreadable image(s) skipped; nothing written to {out}')
    assert not (tmp_path / 'out').exists() and text.read_text() == 'not an image'


def test_benchmark_checks_its_output_folder_before_the_work(tiny_benchmark, capsys, monkeypatch):  # noqa: F811
    """An output folder that takes no file, or one inside the test sets it reads (--data, a set's GTmod2)."""
    from ghostsr_plugin.commands import benchmark

    monkeypatch.setattr(benchmark, 'evaluate', lambda *a, **k: pytest.fail('the benchmark ran'))
    data = tiny_benchmark['data']
    before = snapshot(data)
    outs = [(data, f'--out {data} is an input of this command'),
            (osp.join(data, 'Tiny', 'GTmod2'), f'--out {data}/Tiny/GTmod2 is an input of this command'),
            (osp.join(data, 'results'), f'--out {data}/results is inside {data}, an input of this command')]
    if osp.isdir('/proc/self'):
        outs.append(('/proc/benchx', '--out /proc/benchx: cannot write in folder /proc'))
    for out, message in outs:
        fails(capsys, ['benchmark', 'bicubic', '--data', data, '--scales', '2', '--out', out], message)
    assert snapshot(data) == before


def test_a_training_run_that_fails_before_saving_leaves_the_folders_as_they_were(tiny_options, tmp_path, run_cli):
    """Patches larger than the images: BasicSR has made (and archived) the run's folders when the first batch fails;
    the folder it made goes, the user's folder it archived comes back."""
    tiny_options['datasets']['train']['gt_size'] = 512
    tiny_options['logger']['use_tb_logger'] = True
    mine = tmp_path / 'experiments' / tiny_options['name']
    before = user_folder(mine)
    failed = run_cli('basicsr', 'train', '-opt', write_options(tmp_path / 'o.yml', tiny_options), check=False)
    assert failed.returncode == 1 and 'is smaller than patch size' in failed.stderr, failed.stderr[-2000:]
    assert f'Rename it to {mine}_archived_' in failed.stdout  # (the run did start)
    assert os.listdir(tmp_path / 'experiments') == [tiny_options['name']] and snapshot(mine) == before
    assert not (tmp_path / 'tb_logger').exists()


def test_a_failed_run_that_saved_something_keeps_it(tmp_path):
    import basicsr.utils.misc

    from ghostsr_plugin.run_folders import removed_unless_saved

    run, kept = tmp_path / 'experiments' / 'run', tmp_path / 'experiments' / 'kept'
    for folder, saved in ((run, None), (kept, 'models/net_g_2.pth')):
        with pytest.raises(RuntimeError), removed_unless_saved('o.yml'):
            basicsr.utils.misc.mkdir_and_rename(str(folder))
            for name in ('o.yml', 'train_run.log', *([saved] if saved else [])):
                os.makedirs(osp.dirname(folder / name), exist_ok=True)
                (folder / name).write_text('x')
            raise RuntimeError('failed')
    assert os.listdir(tmp_path / 'experiments') == ['kept'] and (kept / 'models' / 'net_g_2.pth').is_file()
