"""`ghostsr export` and `ghostsr upscale`: what a user runs after training."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

from ghostsr_plugin.archs import freeze, ghost_layers
from ghostsr_plugin.cli import ghostsr_main
from ghostsr_plugin.onnx_export import onnx_op_types

from .conftest import _photo, write_options

NET = {'type': 'GhostEDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2,
       'res_scale': 1, 'img_range': 255.}


def trained_net(seed=0):
    torch.manual_seed(seed)
    net = ARCH_REGISTRY.get('GhostEDSR')(**{k: v for k, v in NET.items() if k != 'type'})
    for layer in ghost_layers(net):
        torch.nn.init.normal_(layer.logits, std=3)
    return net.eval()


@pytest.fixture
def model_files(tmp_path):
    """A training checkpoint, its option file, and the frozen net it should equal."""
    net = trained_net()
    checkpoint = tmp_path / 'net_g_latest.pth'
    torch.save({'params': net.state_dict()}, checkpoint)
    opt = write_options(tmp_path / 'model.yml', {'name': 'm', 'scale': 2, 'network_g': NET,
                                                 'path': {'pretrain_network_g': str(checkpoint)}})
    return {'opt': opt, 'checkpoint': str(checkpoint), 'net': freeze(net)}


@pytest.fixture
def images(tmp_path):
    """A folder of small images of every supported kind."""
    folder = tmp_path / 'in'
    folder.mkdir()
    bgr = np.ascontiguousarray(_photo('astronaut')[100:124, 200:230])
    cv2.imwrite(str(folder / 'rgb.png'), bgr)
    cv2.imwrite(str(folder / 'gray.png'), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    alpha = np.tile(np.linspace(0, 255, 30, dtype=np.uint8), (24, 1))
    cv2.imwrite(str(folder / 'rgba.png'), np.dstack([bgr, alpha]))
    cv2.imwrite(str(folder / 'deep.png'), bgr.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / 'photo.jpg'), bgr)
    return folder


def expected_sr(net, bgr, max_value):
    x = torch.from_numpy(bgr[..., ::-1].astype(np.float32) / max_value).permute(2, 0, 1)[None]
    with torch.no_grad():
        return net(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()[..., ::-1] * max_value


def test_export_round_trip_and_refusals(model_files, tmp_path, capsys):
    out = tmp_path / 'm.onnx'
    ghostsr_main(['export', '-opt', model_files['opt'], '--out', str(out), '--check'])
    printed = capsys.readouterr().out
    assert 'training checkpoint: freezing its 4 Ghost layers' in printed and 'largest difference' in printed
    assert {op for _, op in onnx_op_types(str(out))} >= {'Conv', 'Concat'}
    with pytest.raises(SystemExit):  # no silent replacement
        ghostsr_main(['export', '-opt', model_files['opt'], '--out', str(out)])
    assert 'exists; pass --overwrite' in capsys.readouterr().err
    wrong = write_options(tmp_path / 'wrong.yml', {'name': 'w', 'network_g': {**NET, 'num_feat': 16},
                                                   'path': {'pretrain_network_g': model_files['checkpoint']}})
    with pytest.raises(SystemExit):
        ghostsr_main(['export', '-opt', wrong, '--out', str(tmp_path / 'w.onnx')])
    assert 'does not fit GhostEDSR' in capsys.readouterr().err
    assert not (tmp_path / 'w.onnx').exists() and not list(tmp_path.glob('.tmp-*'))


def test_export_of_a_deploy_checkpoint_and_half(model_files, tmp_path):
    deploy = tmp_path / 'deploy.pth'
    ghostsr_main(['freeze', '-opt', model_files['opt'], '--checkpoint', model_files['checkpoint'],
                  '--out', str(deploy)])
    ghostsr_main(['export', '--arch', 'GhostEDSR', '--arch_args', 'num_in_ch=3', 'num_out_ch=3', 'num_feat=8',
                  'num_block=2', 'upscale=2', 'res_scale=1', '--checkpoint', str(deploy),
                  '--out', str(tmp_path / 'd.onnx'), '--check'])
    ghostsr_main(['export', '-opt', model_files['opt'], '--out', str(tmp_path / 'h.onnx'), '--half'])
    import onnx

    assert onnx.load(str(tmp_path / 'h.onnx')).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


@pytest.mark.parametrize('engine', ['eager', 'compile', 'onnxruntime'])
def test_upscale_every_image_kind_with_each_engine(engine, model_files, images, tmp_path):
    out = tmp_path / 'out'
    ghostsr_main(['upscale', str(images), '--out', str(out), '-opt', model_files['opt'], '--engine', engine])
    net = model_files['net']
    rgb = cv2.imread(str(images / 'rgb.png'))
    for name, kind in (('rgb.png', np.uint8), ('gray.png', np.uint8), ('rgba.png', np.uint8),
                       ('deep.png', np.uint16), ('photo.jpg', np.uint8)):
        sr = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        source = cv2.imread(str(images / name), cv2.IMREAD_UNCHANGED)
        assert sr.dtype == kind and sr.shape[:2] == (48, 60)
        assert sr.ndim == source.ndim and (sr.ndim == 2 or sr.shape[2] == source.shape[2]), name
    np.testing.assert_allclose(cv2.imread(str(out / 'rgb.png')), expected_sr(net, rgb, 255), atol=1)
    deep = cv2.imread(str(out / 'deep.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(deep, expected_sr(net, rgb.astype(np.uint16) * 257, 65535), atol=2)
    alpha = cv2.imread(str(out / 'rgba.png'), cv2.IMREAD_UNCHANGED)[..., 3]
    source_alpha = cv2.imread(str(images / 'rgba.png'), cv2.IMREAD_UNCHANGED)[..., 3]
    np.testing.assert_array_equal(alpha, cv2.resize(source_alpha, (60, 48), interpolation=cv2.INTER_CUBIC))


def test_upscale_from_onnx_and_tiled_equals_untiled(model_files, images, tmp_path):
    onnx_file = tmp_path / 'm.onnx'
    ghostsr_main(['export', '-opt', model_files['opt'], '--out', str(onnx_file)])
    ghostsr_main(['upscale', str(images / 'rgb.png'), '--out', str(tmp_path / 'a'), '--onnx', str(onnx_file)])
    # Receptive-field radius of GhostEDSR(2 blocks, d=1): 5 + 2 * (1 + 1) * 2 = 13 LR pixels.
    ghostsr_main(['upscale', str(images / 'rgb.png'), '--out', str(tmp_path / 'b'), '-opt', model_files['opt'],
                  '--tile', '7', '--tile_overlap', '13'])
    a, b = (cv2.imread(str(tmp_path / f / 'rgb.png')).astype(int) for f in 'ab')
    assert np.abs(a - b).max() <= 1  # float sums in another order may round a pixel the other way


@pytest.mark.parametrize('case, message', [
    ('empty', 'no images'), ('corrupt', 'not a readable image'), ('same', 'is the input folder'),
    ('existing', 'gray.png exists; pass --overwrite to replace it'), ('missing', 'does not exist')])
def test_upscale_bad_inputs_are_named(case, message, model_files, images, tmp_path, capsys):
    source, out = str(images), str(tmp_path / 'out')
    if case == 'empty':
        source = str(tmp_path / 'empty')
        (tmp_path / 'empty').mkdir()
    elif case == 'corrupt':
        (images / 'broken.png').write_bytes(b'not a png')
    elif case == 'same':
        out = source
    elif case == 'existing':
        (tmp_path / 'out').mkdir()
        (tmp_path / 'out' / 'gray.png').write_bytes(b'mine')
    elif case == 'missing':
        source = str(tmp_path / 'nowhere')
    with pytest.raises(SystemExit) as exit_info:
        ghostsr_main(['upscale', source, '--out', out, '-opt', model_files['opt']])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    if case == 'existing':
        assert (tmp_path / 'out' / 'gray.png').read_bytes() == b'mine'
    assert not list(tmp_path.rglob('.tmp-*'))


def test_benchmark_engines_interleaved_and_the_latency_table(model_files, tmp_path):
    plain = tmp_path / 'plain.pth'
    torch.manual_seed(0)
    plain_net = {k: v for k, v in NET.items() if k != 'type'}
    torch.save({'params': ARCH_REGISTRY.get('EDSR')(**plain_net).state_dict()}, plain)
    plain_opt = write_options(tmp_path / 'plain.yml', {'name': 'plain', 'scale': 2,
                                                       'network_g': {**NET, 'type': 'EDSR'},
                                                       'path': {'pretrain_network_g': str(plain)}})
    out = tmp_path / 'results'
    for engine in ('eager', 'onnxruntime'):
        ghostsr_main(['benchmark', plain_opt, model_files['opt'], '--latency_only', '--engine', engine,
                      '--threads', '1', '--baseline', 'plain', '--repeats', '2', '--warmup', '1', '--out', str(out)])
    import json

    onnx_record = json.loads((out / 'm_x2_onnxruntime.json').read_text())
    assert onnx_record['latency']['engine'] == 'onnxruntime' and onnx_record['latency']['threads'] == 1
    assert onnx_record['baseline'] == 'plain' and onnx_record['sets'] == {}
    assert onnx_record['params'] == sum(p.numel() for p in trained_net().parameters())  # logits included
    ghostsr_main(['leaderboard', str(out), '--out', str(tmp_path / 'board')])
    table = (tmp_path / 'board' / 'leaderboard.md').read_text()
    ratio = onnx_record['latency']['seconds'] / json.loads((out / 'plain_x2_onnxruntime.json').read_text())[
        'latency']['seconds']
    row = next(line for line in table.splitlines() if line.startswith('| m | x2'))
    assert f'{ratio:.3f}' in row and '| eager (ms) | onnxruntime (ms) |' in table
    assert not (tmp_path / 'board' / 'leaderboard.png').exists()  # no PSNR: nothing to plot


def test_missing_deploy_packages_are_named(monkeypatch, model_files, tmp_path, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'onnxruntime' else find_spec(
        name, *a))
    with pytest.raises(SystemExit):
        ghostsr_main(['export', '-opt', model_files['opt'], '--out', str(tmp_path / 'm.onnx')])
    assert "need onnxruntime: pip install 'ghostsr-plugin[deploy]'" in capsys.readouterr().err
