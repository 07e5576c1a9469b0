"""`ghostsr benchmark`: published bicubic figures, FLOP counting, tiled inference, result JSONs, bad input."""
import hashlib
import importlib.util
import json
import os
import os.path as osp
import shutil
import sys

import cv2
import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import img2tensor, tensor2img
from basicsr.utils.registry import ARCH_REGISTRY

from ghostsr_plugin.cli import ghostsr_main
from ghostsr_plugin.cost import cost_input, count_flops
from ghostsr_plugin.data_prep import bicubic_downscale
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.evaluate import load_state_dict, network_upscale
from ghostsr_plugin.results import portable_path
from ghostsr_plugin.tiling import tiled_forward

from .conftest import REPO_ROOT, SHARED_DATA, write_options
from .test_cli import expect_error as expect_cli_error
from .test_prepare import load_command


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster and immune to a busy machine's thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_NET = {'type': 'GhostEDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2}


def tiny_net(upscale=2, seed=0):
    torch.manual_seed(seed)
    return ARCH_REGISTRY.get('GhostEDSR')(3, 3, num_feat=8, num_block=2, upscale=upscale).eval()


@pytest.mark.skipif(not osp.isdir(osp.join(SHARED_DATA, 'benchmark', 'Set5', 'HR')), reason='needs ../shared/data')
def test_bicubic_reproduces_published_set5(tmp_path, capsys):
    load_command('prepare_benchmarks').prepare_sets([osp.join(SHARED_DATA, 'benchmark', 'Set5', 'HR')],
                                                   str(tmp_path / 'data'), [2, 4])
    ghostsr_main(['benchmark', 'bicubic', '--data', str(tmp_path / 'data'), '--scales', '2', '4',
                  '--out', str(tmp_path / 'out')])
    for scale, psnr, ssim in ((2, 33.66, 0.9299), (4, 28.42, 0.8104)):
        result = json.loads((tmp_path / 'out' / f'bicubic_x{scale}.json').read_text())['sets']['Set5']
        assert len(result['images']) == 5
        assert abs(result['psnr'] - psnr) < 0.05 and abs(result['ssim'] - ssim) < 0.001, (scale, result)


def conv_flops(c_in, c_out, h, w):
    return 2 * c_in * c_out * 9 * h * w


@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_flops_count_the_convolutions_and_no_shift(upscale):
    net, x = tiny_net(upscale), cost_input(upscale)
    h, w = x.shape[-2:]
    expected = conv_flops(3, 8, h, w) + 4 * conv_flops(8, 4, h, w) + conv_flops(8, 8, h, w)  # head, Ghost body, conv
    if upscale == 4:  # BasicSR's Upsample: conv + PixelShuffle(2) per factor 2
        expected += conv_flops(8, 32, h, w) + conv_flops(8, 32, 2 * h, 2 * w)
    else:
        expected += conv_flops(8, 8 * upscale**2, h, w)
    expected += conv_flops(8, 3, upscale * h, upscale * w)  # conv_last
    assert x.shape == (1, 3, 720 // upscale, 1280 // upscale)
    assert count_flops(net, x) == expected


def test_a_custom_op_without_flop_formula_counts_zero():
    """How the issue-3 CUDA shift will count: a registered op with no formula adds nothing."""

    @torch.library.custom_op('ghostsr_test::shift', mutates_args=())
    def shift(x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, 1, -1)

    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    x = torch.rand(1, 4, 8, 8)
    assert count_flops(lambda t: shift(conv(t)), x) == count_flops(conv, x) == conv_flops(4, 4, 8, 8)


def receptive_radius(net, scale, size=41):
    """LR pixels on which the output block of the centre LR pixel depends (support of its gradient)."""
    x = torch.rand(1, 3, size, size, requires_grad=True)
    c = size // 2
    net(x)[..., c * scale:(c + 1) * scale, c * scale:(c + 1) * scale].sum().backward()
    rows, cols = x.grad[0].abs().sum(0).nonzero().unbind(1)
    return int(max((rows - c).abs().max(), (cols - c).abs().max()))


# Tiles and the whole image run the convolutions on different sizes, so the kernels may sum in a
# different order (oneDNN picks its algorithm by size and CPU): equal within float32 rounding, not bit
# for bit. The tolerance sits far below what a tile overlap one pixel short changes (checked below).
TILE_ATOL = 1e-6


@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_tiled_inference_equals_whole_image(upscale):
    net = tiny_net(upscale, seed=upscale)
    radius = receptive_radius(net, upscale)
    assert 8 <= radius <= 5 + 2 * 2 * 2  # GhostEDSR's bound: 5 + 2 (1 + max_shift) num_block
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        whole = net(x)
        torch.testing.assert_close(tiled_forward(net, x, upscale, 10, radius), whole, rtol=0, atol=TILE_ATOL)
        assert (tiled_forward(net, x, upscale, 10, radius - 1) - whole).abs().max() > 5 * TILE_ATOL
    lr = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    tiled, full = (network_upscale(net, lr, **kw).astype(int) for kw in (
        {'tile': 7, 'overlap': radius + 2, 'scale': upscale}, {}))
    assert np.abs(tiled - full).max() <= 1  # uint8 rounding may flip at a half level: one level at most


@pytest.fixture
def tiny_benchmark(tmp_path, tiny_pairs):
    """A prepared test set 'Tiny' (x2), a tiny GhostEDSR checkpoint and its option file."""
    data = tmp_path / 'data'
    shutil.copytree(tiny_pairs['val_hr'], data / 'Tiny' / 'GTmod2')
    shutil.copytree(tiny_pairs['val_lr'], data / 'Tiny' / 'LRbicx2')
    net = tiny_net()
    checkpoint = tmp_path / 'net_g.pth'
    torch.save({'params': {k: v + 1 for k, v in net.state_dict().items()}, 'params_ema': net.state_dict()}, checkpoint)
    options = write_options(tmp_path / 'tiny.yml', {'name': 'tiny', 'scale': 2, 'network_g': TINY_NET,
                                                    'path': {'pretrain_network_g': str(checkpoint)}})
    return {'data': str(data), 'net': net, 'checkpoint': str(checkpoint), 'options': options, 'out': tmp_path / 'out'}


def benchmark(bench, *args):
    ghostsr_main(['benchmark', '--data', bench['data'], '--out', str(bench['out']), '--warmup', '0',
                  '--repeats', '1', *args])


def test_benchmark_network_result_json(tiny_benchmark):
    bench = tiny_benchmark
    benchmark(bench, bench['options'], '--baseline', 'EDSR tiny')
    result = json.loads((bench['out'] / 'tiny_x2.json').read_text())

    net = bench['net']
    for row in result['sets']['Tiny']['images']:  # recomputed the same way from the network's output: exact
        gt = cv2.imread(osp.join(bench['data'], 'Tiny', 'GTmod2', row['image'] + '.png'))
        lr = cv2.imread(osp.join(bench['data'], 'Tiny', 'LRbicx2', row['image'] + '.png'))
        with torch.no_grad():
            sr = tensor2img(net(img2tensor(lr / 255., float32=True).unsqueeze(0)))
        assert row['psnr'] == calculate_psnr(sr, gt, crop_border=2, test_y_channel=True)
        assert row['ssim'] == calculate_ssim(sr, gt, crop_border=2, test_y_channel=True)
    assert result['sets']['Tiny']['psnr'] == np.mean([r['psnr'] for r in result['sets']['Tiny']['images']])

    assert result['params'] == sum(p.numel() for p in net.parameters())
    assert result['flops'] == count_flops(net, cost_input(2)) and result['cost_input'] == [1, 3, 360, 640]
    assert result['latency']['seconds'] > 0 and result['latency']['method'] == 'wall clock'
    assert result['name'] == 'tiny' and result['baseline'] == 'EDSR tiny' and result['scale'] == 2
    assert result['model']['network_g'] == TINY_NET
    digest = hashlib.sha256(open(bench['checkpoint'], 'rb').read()).hexdigest()
    assert result['model']['sha256'][portable_path(bench['checkpoint'])] == digest  # paths relative to the cwd
    assert not osp.isabs(result['model']['checkpoint']) and not osp.isabs(result['sets']['Tiny']['gt_folder'])
    assert result['environment']['torch'] == torch.__version__ and result['metrics']['crop_border'] == 2

    # The same network given by arch and checkpoint, in tiles: the same figures, within what a uint8 level
    # flipped by float rounding (tiles sum in another order, see test_tiled_inference_equals_whole_image) moves.
    benchmark(bench, '--arch', 'GhostEDSR', '--arch_args', 'num_in_ch=3', 'num_out_ch=3', 'num_feat=8',
              'num_block=2', 'upscale=2', '--checkpoint', bench['checkpoint'], '--name', 'tiled', '--tile', '9',
              '--tile_overlap', '13')
    tiled = json.loads((bench['out'] / 'tiled_x2.json').read_text())
    for tiled_row, row in zip(tiled['sets']['Tiny']['images'], result['sets']['Tiny']['images'], strict=True):
        assert tiled_row == pytest.approx(row, abs=1e-2)  # image names equal, metrics within 0.01


def expect_error(capsys, args, *fragments):
    expect_cli_error(capsys, args, *fragments, main=ghostsr_main)


def test_benchmark_bad_inputs(tiny_benchmark, tmp_path, capsys):
    bench = tiny_benchmark
    base = ['benchmark', '--data', bench['data'], '--out', str(bench['out']), '--warmup', '0', '--repeats', '1']

    (tmp_path / 'data' / 'Empty' / 'GTmod2').mkdir(parents=True)
    (tmp_path / 'data' / 'Empty' / 'LRbicx2').mkdir()
    expect_error(capsys, [*base, 'bicubic', '--scales', '2'], 'no images', 'Empty/GTmod2')
    shutil.rmtree(tmp_path / 'data' / 'Empty')
    expect_error(capsys, [*base, 'bicubic', '--scales', '3'], 'Tiny/GTmod3 does not exist')

    # A checkpoint that does not fit the arch, named with the key.
    expect_error(capsys, [*base, '--arch', 'GhostEDSR', '--arch_args', 'num_in_ch=3', 'num_out_ch=3', 'num_feat=16',
                          'num_block=2', 'upscale=2', '--checkpoint', bench['checkpoint']],
                 'net_g.pth does not fit GhostEDSR', "key 'conv_first.weight' has shape (8, 3, 3, 3)")
    expect_error(capsys, [*base, '--arch', 'GhostEDSR', '--arch_args', 'num_feats=8', '--checkpoint',
                          bench['checkpoint']], "'network_g.num_feats'", 'not an argument of GhostEDSR')
    not_a_checkpoint = tmp_path / 'notes.pth'
    not_a_checkpoint.write_text('hello')
    expect_error(capsys, [*base, bench['options'], '--checkpoint', str(not_a_checkpoint)],
                 'notes.pth: not a PyTorch checkpoint file')

    # A corrupt image: an error naming it, or reported and skipped when asked.
    broken = osp.join(bench['data'], 'Tiny', 'LRbicx2', 'coffee.png')
    with open(broken, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n truncated')
    expect_error(capsys, [*base, 'bicubic', '--scales', '2'], 'cannot read image', 'LRbicx2/coffee.png')
    assert not bench['out'].exists()  # a failed run leaves no (empty) --out folder
    ghostsr_main([*base, 'bicubic', '--scales', '2', '--skip_corrupt'])
    result = json.loads((bench['out'] / 'bicubic_x2.json').read_text())['sets']['Tiny']
    assert [r['image'] for r in result['images']] == ['astronaut'] and 'coffee.png' in result['skipped'][0]
    expect_error(capsys, [*base, 'bicubic', '--scales', '2', '--skip_corrupt'], 'bicubic_x2.json exists',
                 '--overwrite')

    # HR and LR sizes that do not fit the scale.
    cv2.imwrite(broken, np.zeros((10, 10, 3), np.uint8))
    expect_error(capsys, [*base, 'bicubic', '--scales', '2', '--overwrite'], 'GTmod2/coffee.png is 48x48 pixels',
                 'LRbicx2/coffee.png (10x10) needs 20x20')



def refuse_nan(constant):
    raise AssertionError(f'{constant} in a result file')


@pytest.mark.parametrize('size', [2, 12, 14])
def test_images_too_small_to_measure(tiny_benchmark, capsys, size):
    """SSIM's 11 x 11 window must fit after cropping `scale` pixels at each border: 15 x 15 at x2."""
    bench = tiny_benchmark
    hr = cv2.imread(osp.join(bench['data'], 'Tiny', 'GTmod2', 'coffee.png'))[:size, :size]
    cv2.imwrite(osp.join(bench['data'], 'Tiny', 'GTmod2', 'small.png'), hr)
    cv2.imwrite(osp.join(bench['data'], 'Tiny', 'LRbicx2', 'small.png'), bicubic_downscale(hr, 2))
    base = ['benchmark', 'bicubic', '--data', bench['data'], '--out', str(bench['out']), '--scales', '2']
    expect_error(capsys, base, f'GTmod2/small.png is {size}x{size} pixels, too small to measure at x2',
                 'at least 15x15')
    assert not bench['out'].exists()

    ghostsr_main([*base, '--skip_corrupt'])
    assert 'skipped: ' in capsys.readouterr().out
    result = json.loads((bench['out'] / 'bicubic_x2.json').read_text(), parse_constant=refuse_nan)['sets']['Tiny']
    assert [r['image'] for r in result['images']] == ['astronaut', 'coffee'] and 'small.png' in result['skipped'][0]


def test_the_smallest_measurable_image_gives_numbers(tiny_benchmark):
    bench = tiny_benchmark
    hr = cv2.imread(osp.join(bench['data'], 'Tiny', 'GTmod2', 'coffee.png'))[:16, :16]  # 12 x 12 after the crop
    for folder in ('GTmod2', 'LRbicx2'):
        shutil.rmtree(osp.join(bench['data'], 'Tiny', folder))
        os.makedirs(osp.join(bench['data'], 'Tiny', folder))
    cv2.imwrite(osp.join(bench['data'], 'Tiny', 'GTmod2', 'edge.png'), hr)
    cv2.imwrite(osp.join(bench['data'], 'Tiny', 'LRbicx2', 'edge.png'), bicubic_downscale(hr, 2))
    ghostsr_main(['benchmark', 'bicubic', '--data', bench['data'], '--out', str(bench['out']), '--scales', '2'])
    result = json.loads((bench['out'] / 'bicubic_x2.json').read_text(), parse_constant=refuse_nan)['sets']['Tiny']
    assert 0 < result['ssim'] <= 1 and result['psnr'] > 0


def test_weights_key_asked_for_must_be_there(tiny_benchmark, tmp_path, capsys, monkeypatch):
    bench = tiny_benchmark
    state = torch.load(bench['checkpoint'], weights_only=True)
    only_params = tmp_path / 'params_only.pth'
    torch.save({'params': state['params_ema']}, only_params)
    base = ['--arch', 'GhostEDSR', '--arch_args', 'num_in_ch=3', 'num_out_ch=3', 'num_feat=8', 'num_block=2',
            'upscale=2']
    expect_error(capsys, ['benchmark', '--data', bench['data'], '--out', str(bench['out']), *base,
                          '--checkpoint', str(only_params), '--param_key', 'params_ema'],
                 'params_only.pth', "no weights under the requested key 'params_ema'", "found keys ['params']")
    assert not list(bench['out'].glob('*.json'))

    # Not asked for: EMA weights when saved, else 'params'; the JSON records the key used.
    monkeypatch.setenv('HOME', str(tmp_path))
    for checkpoint, name, used in (('~/net_g.pth', 'both', 'params_ema'), ('~/params_only.pth', 'one', 'params')):
        benchmark(bench, *base, '--checkpoint', checkpoint, '--name', name)
        result = json.loads((bench['out'] / f'{name}_x2.json').read_text())
        assert result['model']['param_key'] == used
        assert result['model']['checkpoint'] == portable_path(str(tmp_path / checkpoint[2:]))
    assert (json.loads((bench['out'] / 'both_x2.json').read_text())['sets']['Tiny']['images']
            == json.loads((bench['out'] / 'one_x2.json').read_text())['sets']['Tiny']['images'])
    assert load_state_dict('~/net_g.pth', 'params')['conv_first.weight'].equal(state['params']['conv_first.weight'])


def test_benchmark_refuses_runs_writing_one_file_and_empty_data(tiny_benchmark, tmp_path, capsys):
    bench = tiny_benchmark
    opt = {'scale': 2, 'network_g': TINY_NET, 'path': {'pretrain_network_g': bench['checkpoint']}}
    first = write_options(tmp_path / 'a.yml', {**opt, 'name': 'tiny net'})
    second = write_options(tmp_path / 'b.yml', {**opt, 'name': 'tiny_net'})
    base = ['benchmark', '--data', bench['data'], '--out', str(bench['out']), '--warmup', '0', '--repeats', '1']
    expect_error(capsys, [*base, first, second], "'tiny net' x2 and 'tiny_net' x2 would both write",
                 'tiny_net_x2.json')
    assert not bench['out'].exists()

    (tmp_path / 'no_sets').mkdir()
    expect_error(capsys, ['benchmark', 'bicubic', '--data', str(tmp_path / 'no_sets'), '--out', str(bench['out'])],
                 'no test sets in', 'no_sets', 'GTmod<s>')
    expect_error(capsys, [*base, 'bicubic', '--scales', '0'], '--scales', 'expected a positive integer, found 0')


def load_script(name):
    """A developer script of scripts/ as a module."""
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO_ROOT, 'scripts', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_scripts_exit_2_on_bad_input(tmp_path, monkeypatch, capsys, tiny_options):
    monkeypatch.chdir(tmp_path)
    path = write_options(tmp_path / 'o.yml', tiny_options)
    for script, args in (('demo_report', ['-opt', path]),
                         ('ghost_init_experiment', ['--teacher', path, '--ghost', path])):
        monkeypatch.setattr(sys, 'argv', [f'{script}.py', *args])
        with pytest.raises(SystemExit) as exit_info:
            load_script(script).main()
        assert exit_info.value.code == 2
        assert 'experiments/tiny_ghost_edsr_x2/models/net_g_latest.pth does not exist' in capsys.readouterr().err

    experiment = load_script('ghost_init_experiment')
    with pytest.raises(InputError, match=r'no training state .* in experiments/tiny_ghost_edsr_x2/training_states'):
        experiment.trained_iterations(tiny_options)
    (tmp_path / 'experiments' / 'tiny_ghost_edsr_x2' / 'training_states').mkdir(parents=True)
    for name in ('4.state', '12.state', 'notes.state'):
        (tmp_path / 'experiments' / 'tiny_ghost_edsr_x2' / 'training_states' / name).touch()
    assert experiment.trained_iterations(tiny_options) == 12
