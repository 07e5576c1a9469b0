"""Deploy precision and layout: half precision within a grey level of float32, defaults by device, recorded."""
import copy
import json

import cv2
import numpy as np
import pytest
import torch

from ghostsr_plugin import engines
from ghostsr_plugin.archs.ghost_edsr_arch import GhostEDSR
from ghostsr_plugin.cli import ghostsr_main
from ghostsr_plugin.commands.prepare_demo import HELD_OUT, TRAIN, skimage_photo
from ghostsr_plugin.data_prep import bicubic_downscale, mod_crop

DEMO_NET = dict(num_in_ch=3, num_out_ch=3, num_feat=32, num_block=4, upscale=2, res_scale=1, img_range=255.,
                rgb_mean=[0.4488, 0.4371, 0.4040])  # options/demo/ghost_edsr_x2_demo.yml's network
ARCH = ['--arch', 'GhostEDSR', '--arch_args', *(f'{k}={v}' for k, v in DEMO_NET.items())]
DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(not torch.cuda.is_available(), reason='no GPU'))]


def as_tensor(bgr):
    return torch.from_numpy(bgr[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)


@pytest.fixture(scope='module')
def demo_model(tmp_path_factory):
    """The demo's network trained briefly (40 steps) on one of its training photos: image-scale activations."""
    torch.manual_seed(0)
    net = GhostEDSR(**DEMO_NET)
    hr = mod_crop(skimage_photo(TRAIN[3]), 2)
    hr_t, lr_t = as_tensor(hr), as_tensor(bicubic_downscale(hr, 2))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        tops = torch.randint(0, lr_t.shape[1] - 24, (4,), generator=generator)
        lefts = torch.randint(0, lr_t.shape[2] - 24, (4,), generator=generator)
        lq = torch.stack([lr_t[:, t:t + 24, s:s + 24] for t, s in zip(tops, lefts)])
        gt = torch.stack([hr_t[:, 2 * t:2 * t + 48, 2 * s:2 * s + 48] for t, s in zip(tops, lefts)])
        loss = (net(lq) - gt).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    checkpoint = tmp_path_factory.mktemp('demo_model') / 'net.pth'
    torch.save({'params': net.state_dict()}, checkpoint)
    return net.eval(), str(checkpoint)


@pytest.fixture(scope='module')
def demo_images(tmp_path_factory):
    """The demo's held-out photos as LR images (64 x 64 crops: float16 convolutions are slow on a CPU)."""
    folder = tmp_path_factory.mktemp('demo_images')
    for name in HELD_OUT:
        cv2.imwrite(str(folder / f'{name}.png'), bicubic_downscale(mod_crop(skimage_photo(name), 2), 2)[:64, :64])
    return folder


@pytest.mark.parametrize('device', DEVICES)
def test_half_upscale_is_within_one_grey_level_of_fp32(device, demo_model, demo_images, tmp_path, capsys):
    _, checkpoint = demo_model
    # On a CUDA device half precision is the default; elsewhere float32 is, and --half asks for float16.
    half, fp32 = (tmp_path / 'half', tmp_path / 'fp32')
    half_flags, fp32_flags = ([], ['--fp32']) if device == 'cuda' else (['--half'], [])
    for out, flags in ((half, half_flags), (fp32, fp32_flags)):
        ghostsr_main(['upscale', str(demo_images), '--out', str(out), *ARCH, '--checkpoint', checkpoint,
                      '--device', device, *flags])
    printed = capsys.readouterr().out
    assert f'running on {device} in fp16, nchw' in printed and f'running on {device} in fp32, nchw' in printed
    for name in HELD_OUT:
        a, b = (cv2.imread(str(folder / f'{name}.png')).astype(int) for folder in (half, fp32))
        assert a.shape == (128, 128, 3) and np.abs(a - b).max() <= 1, name


@pytest.mark.parametrize('layout', list(engines.LAYOUTS))
def test_engine_runs_in_the_precision_and_layout_asked_for(layout, demo_model, demo_images):
    net, _ = demo_model
    x = as_tensor(cv2.imread(str(demo_images / f'{HELD_OUT[0]}.png')))[None, :, :32, :32]
    with torch.no_grad():
        want = net(x)
    fp32 = engines.prepare(copy.deepcopy(net), 'eager', precision='fp32', layout=layout)(x)
    half = engines.prepare(copy.deepcopy(net), 'eager', precision='fp16', layout=layout)(x)
    assert fp32.dtype == half.dtype == torch.float32
    torch.testing.assert_close(fp32, want, atol=1e-5, rtol=0)  # (another layout may sum in another order)
    difference = (half - want).abs().max().item()
    assert 0 < difference < 0.5 / 255  # float16 ran (outputs differ), within half a grey level


def test_benchmark_records_precision_and_layout_and_refuses_half_on_onnxruntime(tmp_path, capsys):
    small = ['--arch', 'GhostEDSR', '--arch_args', 'num_in_ch=3', 'num_out_ch=3', 'num_feat=8', 'num_block=1',
             'upscale=2', '--latency_only', '--latency_size', '8', '8', '--repeats', '1', '--warmup', '0',
             '--device', 'cpu']
    for flags in ([], ['--half', '--layout', 'channels_last']):
        ghostsr_main(['benchmark', *small, *flags, '--out', str(tmp_path / 'r'), '--overwrite'])
        name = 'GhostEDSR_x2_fp16.json' if flags else 'GhostEDSR_x2.json'  # (a file per precision)
        latency = json.loads((tmp_path / 'r' / name).read_text())['latency']
        assert (latency['precision'], latency['layout']) == (('fp16', 'channels_last') if flags else ('fp32', 'nchw'))
    with pytest.raises(SystemExit) as exit_info:
        ghostsr_main(['benchmark', *small, '--engine', 'onnxruntime', '--half', '--out', str(tmp_path / 'o')])
    assert exit_info.value.code == 2 and 'onnxruntime runs the exported float32 model' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ghostsr_main(['benchmark', *small, '--half', '--fp32'])
    assert 'not allowed with argument' in capsys.readouterr().err
