"""Data preparation: MATLAB's bicubic resize, benchmark sets and DIV2K sub-images against independent references."""
import importlib.util
import json
import math
import os
import os.path as osp
from fractions import Fraction

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from basicsr.utils.matlab_functions import imresize
from PIL import Image

from ghostsr_plugin.atomic import MANIFEST
from ghostsr_plugin.data_prep import bicubic_downscale, matlab_bicubic
from ghostsr_plugin.errors import InputError


def load_command(name):
    """The module of a ``ghostsr`` command, e.g. ``prepare_div2k`` for ``ghostsr prepare-div2k``."""
    return importlib.import_module(f'ghostsr_plugin.commands.{name}')


def exact_cubic(x):
    a = abs(x)
    if a <= 1:
        return Fraction(3, 2) * a**3 - Fraction(5, 2) * a**2 + 1
    if a <= 2:
        return Fraction(-1, 2) * a**3 + Fraction(5, 2) * a**2 - 4 * a + 2
    return Fraction(0)


def exact_weights(n_in, scale):
    """Per output pixel, {input index: weight} of MATLAB's bicubic imresize, in exact rationals.

    Written from MATLAB's definition: output pixel x (1-based) sits at x/scale + (1 - 1/scale)/2
    in the input; when shrinking, the kernel is stretched by 1/scale; an input index outside
    the image reflects back into it (symmetric padding); weights are normalized per pixel.
    """
    scale = Fraction(scale)
    stretch = min(scale, 1)
    rows = []
    for x in range(1, math.ceil(n_in * scale) + 1):
        center = x / scale + (1 - 1 / scale) / 2
        weights = {}
        for j in range(math.floor(center - 2 / stretch) - 1, math.ceil(center + 2 / stretch) + 2):
            w = stretch * exact_cubic((center - j) * stretch)
            if w:
                k = j - 1
                while not 0 <= k < n_in:
                    k = -k - 1 if k < 0 else 2 * n_in - 1 - k
                weights[k] = weights.get(k, 0) + w
        total = sum(weights.values())
        rows.append({k: w / total for k, w in weights.items()})
    return rows


def exact_resize(img, scale):
    """(rounded uint8 image, number of exact ties k + 1/2) of MATLAB's imresize, rounding ties away from zero."""
    h, w, c = img.shape
    pixels = img.astype(int).tolist()
    rows, cols = exact_weights(h, scale), exact_weights(w, scale)
    tmp = [[[sum(wt * pixels[k][x][ch] for k, wt in r.items()) for ch in range(c)] for x in range(w)] for r in rows]
    out = [[[sum(wt * tmp[y][k][ch] for k, wt in col.items()) for ch in range(c)] for col in cols]
           for y in range(len(rows))]
    values = [v for row in out for px in row for v in px]
    ties = sum(v.denominator == 2 for v in values)
    rounded = [min(255, max(0, math.floor(v + Fraction(1, 2)))) for v in values]
    return np.array(rounded, np.uint8).reshape(len(rows), len(cols), c), ties


def sample_images():
    """Small real crops plus a step edge (flat regions make exact ties)."""
    step = np.full((20, 22, 3), 100, np.uint8)
    step[:, 11:] = 101
    step[7:, :, 1] = 37
    return {'astronaut': skimage.data.astronaut()[200:236, 180:214], 'camera': skimage.data.camera()[:30, 90:125, None],
            'step': step}


@pytest.mark.parametrize('scale', [Fraction(1, 2), Fraction(1, 3), Fraction(1, 4), 2, 3, 4])
def test_matlab_bicubic_is_exact(scale):
    ties = 0
    for name, img in sample_images().items():
        img = img if scale < 1 else img[:12, :13]  # upscaling: small inputs keep the exact reference quick
        expected, n = exact_resize(img, scale)
        ties += n
        np.testing.assert_array_equal(matlab_bicubic(img, float(scale)), expected, err_msg=name)
    if scale in (Fraction(1, 2), 2):
        assert ties > 0  # the rounding of exact ties was exercised


def test_matlab_bicubic_agrees_with_basicsr_up_to_its_float32_rounding():
    img = skimage.data.coffee()[:200, 100:300]
    for scale in (1 / 2, 1 / 3, 1 / 4, 2):
        ours = matlab_bicubic(img, scale).astype(int)
        basicsr = np.clip(np.round(imresize(img / 255., scale) * 255), 0, 255).astype(int)
        assert np.abs(ours - basicsr).max() <= 1 and np.mean(ours != basicsr) < 1e-4


def write_hr_folder(folder):
    folder.mkdir(parents=True)
    Image.fromarray(skimage.data.astronaut()[100:151, 300:347]).save(folder / 'color.png')  # 51 x 47: cropped
    Image.fromarray(skimage.data.camera()[200:238, 200:250]).save(folder / 'gray.png')  # single channel
    return folder


def test_prepared_benchmark_matches_independent_computation(tmp_path):
    hr_folder = write_hr_folder(tmp_path / 'Tiny' / 'HR')
    out = tmp_path / 'benchmark'
    load_command('prepare_benchmarks').prepare_sets([str(hr_folder)], str(out), [2, 3, 4])
    for name in ('color', 'gray'):
        hr = np.asarray(Image.open(hr_folder / f'{name}.png').convert('RGB'))  # grayscale: R = G = B
        for s in (2, 3, 4):
            gt = hr[:hr.shape[0] // s * s, :hr.shape[1] // s * s]
            np.testing.assert_array_equal(np.asarray(Image.open(out / 'Tiny' / f'GTmod{s}' / f'{name}.png')), gt)
            lr = np.asarray(Image.open(out / 'Tiny' / f'LRbicx{s}' / f'{name}.png'))
            np.testing.assert_array_equal(lr, exact_resize(gt, Fraction(1, s))[0], err_msg=f'{name} x{s}')


def test_prepare_benchmarks_bad_inputs(tmp_path, capsys):
    prepare_sets = load_command('prepare_benchmarks').prepare_sets
    (tmp_path / 'empty').mkdir()
    with pytest.raises(InputError, match=r'no images .* in .*empty'):
        prepare_sets([str(tmp_path / 'empty')], str(tmp_path / 'out'), [2])
    with pytest.raises(InputError, match='does not exist'):
        prepare_sets([str(tmp_path / 'nowhere')], str(tmp_path / 'out'), [2])

    folder = write_hr_folder(tmp_path / 'Set')
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
    with pytest.raises(InputError, match=r'cannot read image .*broken\.png'):
        prepare_sets([str(folder)], str(tmp_path / 'out'), [2])
    prepare_sets([str(folder)], str(tmp_path / 'out'), [2], skip_corrupt=True)
    assert 'skipped: cannot read image' in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / 'out' / 'Set' / 'LRbicx2')) == [MANIFEST, 'color.png', 'gray.png']

    (folder / 'broken.png').unlink()
    cv2.imwrite(str(folder / 'tiny.png'), np.zeros((1, 5, 3), np.uint8))
    with pytest.raises(InputError, match=r'tiny\.png: image of 1x5 pixels is smaller than the scale x2'):
        prepare_sets([str(folder)], str(tmp_path / 'out'), [2], overwrite=True)
    # The failed --overwrite kept the earlier output as it was.
    assert sorted(os.listdir(tmp_path / 'out' / 'Set' / 'LRbicx2')) == [MANIFEST, 'color.png', 'gray.png']


def test_prepare_benchmarks_failing_midway_leaves_nothing(tmp_path, monkeypatch, capsys):
    prepare = load_command('prepare_benchmarks')
    good = str(write_hr_folder(tmp_path / 'Good'))
    bad = write_hr_folder(tmp_path / 'Bad')
    (bad / 'zz_broken.png').write_bytes(b'not an image')  # read last: the set's first images are written by then
    out = tmp_path / 'nested' / 'benchmark'
    assert run_command(prepare, good, str(bad), '--out', str(out), '--scales', '2', '3') == 2
    assert 'cannot read image' in capsys.readouterr().err
    assert not (tmp_path / 'nested').exists()  # not even the folders it made

    (bad / 'zz_broken.png').unlink()
    assert run_command(prepare, good, str(bad), '--out', str(out), '--scales', '2', '3') == 0
    assert sorted(p.name for p in out.iterdir()) == ['Bad', 'Good']
    assert sorted(p.name for p in (out / 'Bad' / 'LRbicx3').iterdir()) == [MANIFEST, 'color.png', 'gray.png']


def basicsr_grid(length, crop_size, step, thresh_size=0):
    """BasicSR's extract_subimages.py, verbatim in substance."""
    space = np.arange(0, length - crop_size + 1, step)
    if length - (space[-1] + crop_size) > thresh_size:
        space = np.append(space, length - crop_size)
    return space


@pytest.fixture
def fake_div2k(tmp_path):
    """DIV2K's layout with three small photos: HR and bicubic LR x2, x4."""
    root = tmp_path / 'DIV2K'
    (root / 'DIV2K_train_HR').mkdir(parents=True)
    images = {}
    for i, name in enumerate(('astronaut', 'coffee', 'chelsea'), 1):
        hr = getattr(skimage.data, name)()[..., ::-1]
        hr = np.ascontiguousarray(hr[:hr.shape[0] // 12 * 12, :hr.shape[1] // 12 * 12])
        images[f'{i:04d}'] = hr
        cv2.imwrite(str(root / 'DIV2K_train_HR' / f'{i:04d}.png'), hr)
        for s in (2, 4):
            (root / 'DIV2K_train_LR_bicubic' / f'X{s}').mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / 'DIV2K_train_LR_bicubic' / f'X{s}' / f'{i:04d}x{s}.png'), bicubic_downscale(hr, s))
    return root, images


def test_prepare_div2k_sub_images_and_lmdb(fake_div2k, monkeypatch, capsys):
    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.utils import img2tensor

    root, images = fake_div2k
    args = ['--root', str(root), '--scales', '2', '4', '--crop_size', '96', '--step', '40', '--lmdb']
    div2k = load_command('prepare_div2k')
    assert run_command(div2k, *args) == 0
    folders = {1: root / 'DIV2K_train_HR_sub', 2: root / 'DIV2K_train_LR_bicubic' / 'X2_sub',
               4: root / 'DIV2K_train_LR_bicubic' / 'X4_sub'}
    num_crops = 0
    for stem, hr in images.items():
        for s, folder in folders.items():
            img = hr if s == 1 else cv2.imread(str(root / 'DIV2K_train_LR_bicubic' / f'X{s}' / f'{stem}x{s}.png'))
            index = 0
            for top in basicsr_grid(img.shape[0], 96 // s, 40 // s):
                for left in basicsr_grid(img.shape[1], 96 // s, 40 // s):
                    index += 1
                    crop = cv2.imread(str(folder / f'{stem}_s{index:03d}.png'))
                    np.testing.assert_array_equal(crop, img[top:top + 96 // s, left:left + 96 // s])
            assert not (folder / f'{stem}_s{index + 1:03d}.png').exists()
            num_crops += index
    assert num_crops == sum(len(list(f.glob('*.png'))) for f in folders.values())

    # BasicSR's paired LMDB dataset reads them: the PNGs' pixels, aligned pairs.
    dataset = PairedImageDataset({'dataroot_gt': str(root / 'DIV2K_train_HR_sub.lmdb'),
                                  'dataroot_lq': str(root / 'DIV2K_train_LR_bicubic_X4_sub.lmdb'),
                                  'io_backend': {'type': 'lmdb'}, 'scale': 4, 'phase': 'val', 'filename_tmpl': '{}'})
    assert len(dataset) == len(list(folders[1].glob('*.png')))
    item = dataset[7]
    for key, folder in (('gt', folders[1]), ('lq', folders[4])):
        png = img2tensor(cv2.imread(osp.join(folder, osp.basename(item[f'{key}_path']) + '.png')), float32=False)
        assert torch.equal((item[key] * 255).round().to(torch.uint8), png)

    assert run_command(div2k, *args) == 2
    assert 'DIV2K_train_HR_sub exists (and 5 more); pass --overwrite' in capsys.readouterr().err


def test_prepare_div2k_bad_inputs(fake_div2k):
    div2k = load_command('prepare_div2k')
    root, _ = fake_div2k
    with pytest.raises(InputError, match='must be multiples of the scale 4'):
        div2k.check_inputs(str(root), [2, 4], 90, 40)
    (root / 'DIV2K_train_LR_bicubic' / 'X4' / '0002x4.png').unlink()
    with pytest.raises(InputError, match=r'X4/0002x4\.png does not exist'):
        div2k.check_inputs(str(root), [2, 4], 96, 40)

    cv2.imwrite(str(root / 'DIV2K_train_LR_bicubic' / 'X2' / '0001x2.png'), np.zeros((10, 10, 3), np.uint8))
    folders = div2k.output_folders(str(root), [2])
    for folder in folders.values():
        os.makedirs(folder)
    with pytest.raises(InputError, match=r'0001x2\.png is 10x10 pixels; x2 of .*0001\.png'):
        div2k.crop_image('0001.png', str(root), folders, 96, 40, 0)
    with pytest.raises(InputError, match=r'0001\.png is 504x504 pixels, smaller than the 600x600 crop'):
        div2k.crop_image('0001.png', str(root), folders, 600, 40, 0)


def test_prepare_div2k_failing_midway_leaves_nothing(fake_div2k, monkeypatch, capsys):
    div2k = load_command('prepare_div2k')
    root, _ = fake_div2k
    before = sorted(p.name for p in root.iterdir())
    broken = root / 'DIV2K_train_LR_bicubic' / 'X4' / '0003x4.png'  # the last image: earlier crops are written
    good = broken.read_bytes()
    broken.write_bytes(b'not an image')
    args = ['--root', str(root), '--scales', '2', '4', '--crop_size', '96', '--step', '40', '--lmdb']
    assert run_command(div2k, *args) == 2
    assert 'cannot read image' in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == before
    assert sorted(p.name for p in (root / 'DIV2K_train_LR_bicubic').iterdir()) == ['X2', 'X4']

    broken.write_bytes(good)
    assert run_command(div2k, *args) == 0
    assert (root / 'DIV2K_train_LR_bicubic' / 'X4_sub').is_dir() and (root / 'DIV2K_train_HR_sub.lmdb').is_dir()


def run_command(module, *args):
    """``ghostsr <module's command> args``; its exit status (0 when it returns)."""
    from ghostsr_plugin.cli import ghostsr_main

    try:
        ghostsr_main([module.__name__.rsplit('.', 1)[1].replace('_', '-'), *args])
    except SystemExit as exit_info:
        return exit_info.code
    return 0


def test_prepare_benchmarks_refuses_existing_output(tmp_path, monkeypatch, capsys):
    prepare = load_command('prepare_benchmarks')
    hr = str(write_hr_folder(tmp_path / 'Tiny' / 'HR'))
    out = tmp_path / 'benchmark'
    assert run_command(prepare, hr, '--out', str(out), '--scales', '2') == 0
    assert run_command(prepare, hr, '--out', str(out), '--scales', '2') == 2
    assert 'Tiny/GTmod2 exists (and 1 more); pass --overwrite to replace them' in capsys.readouterr().err
    stale = out / 'Tiny' / 'LRbicx2' / 'stale.png'  # a file of the user's in an output folder: never deleted
    stale.write_bytes(b'')
    assert run_command(prepare, hr, '--out', str(out), '--scales', '2', '--overwrite') == 2
    assert 'LRbicx2 holds stale.png, which ghostsr did not write there' in capsys.readouterr().err
    assert stale.is_file()
    stale.unlink()
    assert run_command(prepare, hr, '--out', str(out), '--scales', '2', '--overwrite') == 0
    assert sorted(p.name for p in (out / 'Tiny' / 'LRbicx2').iterdir()) == [MANIFEST, 'color.png', 'gray.png']

    assert run_command(prepare, hr, str(tmp_path / 'Tiny'), '--out', str(tmp_path / 'o')) == 2
    assert "both make the set 'Tiny'" in capsys.readouterr().err
    assert run_command(prepare, hr, '--out', str(tmp_path / 'o'), '--scales', '0') == 2
    assert 'expected a positive integer, found 0' in capsys.readouterr().err


def test_impossible_scales_are_input_errors():
    from ghostsr_plugin.data_prep import mod_crop

    img = np.zeros((8, 8, 3), np.uint8)
    for scale in (0, -2, 2.5):
        with pytest.raises(InputError, match=f'scale must be a positive integer, found {scale}'):
            mod_crop(img, scale)
    for scale in (0, -2):
        with pytest.raises(InputError, match=f'scale must be a positive number, found {scale}'):
            bicubic_downscale(img, scale)
        with pytest.raises(InputError, match=f'scale must be a positive number, found {scale}'):
            matlab_bicubic(img, scale)


def test_demo_data_is_rebuilt_unless_complete_with_the_same_parameters(tmp_path, monkeypatch, capsys):
    demo = load_command('prepare_demo')
    monkeypatch.setattr(demo, 'HELD_OUT', ('chelsea',))
    monkeypatch.setattr(demo, 'TRAIN', ('coffee',))
    out = tmp_path / 'demo'
    args = ['--out', str(out), '--extra', str(tmp_path / 'no_extra'), '--lr_size', '48']
    assert run_command(demo, *args) == 0
    marker = json.loads((out / 'prepared.json').read_text())
    assert marker['scale'] == 2 and marker['lr_size'] == 48
    crops = sorted(p.name for p in (out / 'train' / 'HR_sub').iterdir())
    assert crops and (out / 'val' / 'LRbicx2' / 'chelsea.png').is_file()

    assert run_command(demo, *args) == 0
    assert 'reusing it' in capsys.readouterr().out

    # An interrupted build (no marker yet) is rebuilt, not reused.
    (out / 'prepared.json').unlink()
    (out / 'train' / 'HR_sub' / crops[0]).unlink()
    assert run_command(demo, *args) == 0
    assert 'rebuilding' in capsys.readouterr().out
    assert sorted(p.name for p in (out / 'train' / 'HR_sub').iterdir()) == crops

    # Another scale: rebuilt for it.
    assert run_command(demo, *args, '--scale', '3') == 0
    assert sorted(p.name for p in (out / 'val').iterdir()) == ['GTmod3', 'LRbicx3']
    assert json.loads((out / 'prepared.json').read_text())['scale'] == 3

    # A folder that is not a demo set is refused; impossible sizes too.
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'notes.txt').write_text('keep me')
    assert run_command(demo, '--out', str(tmp_path / 'mine'), '--extra', str(tmp_path / 'no_extra')) == 2
    assert 'was not written by ghostsr' in capsys.readouterr().err
    assert (tmp_path / 'mine' / 'notes.txt').is_file()
    assert run_command(demo, *args, '--scale', '-1') == 2


def test_demo_data_failing_midway_leaves_nothing(tmp_path, monkeypatch, capsys):
    demo = load_command('prepare_demo')
    monkeypatch.setattr(demo, 'HELD_OUT', ('chelsea',))
    monkeypatch.setattr(demo, 'TRAIN', ('coffee',))
    extra = write_hr_folder(tmp_path / 'extra')
    (extra / 'zz_broken.png').write_bytes(b'not an image')  # read after the other photos' pairs are written
    args = ['--out', str(tmp_path / 'data' / 'demo'), '--extra', str(extra), '--lr_size', '16']
    assert run_command(demo, *args) == 2
    assert 'cannot read image' in capsys.readouterr().err
    assert not (tmp_path / 'data').exists()

    (extra / 'zz_broken.png').unlink()
    assert run_command(demo, *args) == 0
    assert (tmp_path / 'data' / 'demo' / 'prepared.json').is_file()
