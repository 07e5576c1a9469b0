"""Prepare DIV2K for BasicSR training: sub-image crops of the HR and bicubic LR images, optionally LMDB.

Reads DIV2K's own layout under --root:
  DIV2K_train_HR/0001.png ...  and  DIV2K_train_LR_bicubic/X{s}/0001x{s}.png ...
and writes what BasicSR's scripts/data_preparation/extract_subimages.py writes (same grid,
same names), which the option files in options/ read:
  DIV2K_train_HR_sub/0001_s001.png ...              (--crop_size crops every --step pixels)
  DIV2K_train_LR_bicubic/X{s}_sub/0001_s001.png ... (crop_size/s every step/s: the same regions)
With --lmdb, also LMDBs named as BasicSR's create_lmdb.py names them (and as the LMDB lines
of options/ghost_edsr_x*.yml read them): DIV2K_train_HR_sub.lmdb and
DIV2K_train_LR_bicubic_X{s}_sub.lmdb (BasicSR's make_lmdb_from_imgs; keys are the file names
without .png; meta_info.txt as BasicSR's LMDB datasets expect).

Example: ghostsr prepare-div2k --root datasets/DIV2K --scales 2 3 4 --lmdb
"""
import os
import os.path as osp
from contextlib import nullcontext
from functools import partial
from multiprocessing import Pool

import cv2
from tqdm import tqdm

from ghostsr_plugin.atomic import atomic_paths
from ghostsr_plugin.commands import positive_int
from ghostsr_plugin.data_prep import list_images, read_color_image, sub_images
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.outputs import check_output_folders

HR_FOLDER = 'DIV2K_train_HR'


def lr_folder(root, scale):
    return osp.join(root, 'DIV2K_train_LR_bicubic', f'X{scale}')


def output_folders(root, scales):
    """{None: HR sub-image folder, s: LR sub-image folder of scale s}."""
    return {None: osp.join(root, f'{HR_FOLDER}_sub'), **{s: lr_folder(root, s) + '_sub' for s in scales}}


def lmdb_paths(root, scales):
    """{None: HR LMDB, s: LR LMDB of scale s}, named as BasicSR's create_lmdb.py names them."""
    return {None: osp.join(root, f'{HR_FOLDER}_sub.lmdb'),
            **{s: osp.join(root, f'DIV2K_train_LR_bicubic_X{s}_sub.lmdb') for s in scales}}


def _write_crops(img, folder, stem, size, step, thresh_size, source):
    h, w = img.shape[:2]
    if h < size or w < size:
        raise InputError(f'{source} is {h}x{w} pixels, smaller than the {size}x{size} crop')
    for index, crop in enumerate(sub_images(img, size, step, thresh_size), 1):
        cv2.imwrite(osp.join(folder, f'{stem}_s{index:03d}.png'), crop, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    return index


def crop_image(name, root, folders, crop_size, step, thresh_size):
    """Write the sub-images of one HR image and of its LR images into ``folders`` (as ``output_folders``
    names them: None for HR, a scale for LR); returns the number of crops per folder."""
    stem = osp.splitext(name)[0]
    hr_path = osp.join(root, HR_FOLDER, name)
    hr = read_color_image(hr_path)
    count = _write_crops(hr, folders[None], stem, crop_size, step, thresh_size, hr_path)
    for s in (s for s in folders if s is not None):
        lr_path = osp.join(lr_folder(root, s), f'{stem}x{s}.png')
        lr = read_color_image(lr_path)
        if (lr.shape[0] * s, lr.shape[1] * s) != hr.shape[:2]:
            raise InputError(f'{lr_path} is {lr.shape[0]}x{lr.shape[1]} pixels; x{s} of {hr_path} '
                             f'({hr.shape[0]}x{hr.shape[1]}) must be {hr.shape[0] / s:g}x{hr.shape[1] / s:g}')
        _write_crops(lr, folders[s], stem, crop_size // s, step // s, thresh_size // s, lr_path)
    return count


def check_inputs(root, scales, crop_size, step):
    """The HR image names; fails on a missing LR image or a crop that does not divide by a scale."""
    for s in scales:
        if crop_size % s or step % s:
            raise InputError(f'--crop_size {crop_size} and --step {step} must be multiples of the scale {s}')
    names = list_images(osp.join(root, HR_FOLDER))
    for s in scales:
        missing = [n for n in names if not osp.isfile(osp.join(lr_folder(root, s), f'{osp.splitext(n)[0]}x{s}.png'))]
        if missing:
            stem = osp.splitext(missing[0])[0]
            raise InputError(f'{osp.join(lr_folder(root, s), f"{stem}x{s}.png")} does not exist: DIV2K names the '
                             f'x{s} LR image of {missing[0]} so ({len(missing)} missing in all)')
    return names


def make_lmdb(folder, lmdb_path):
    """An LMDB of ``folder``'s PNGs, with BasicSR's ``make_lmdb_from_imgs``."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    names = sorted(f for f in os.listdir(folder) if f.endswith('.png'))
    make_lmdb_from_imgs(folder, lmdb_path, names, [osp.splitext(n)[0] for n in names])


def add_arguments(parser):
    parser.add_argument('--root', default='datasets/DIV2K', help='DIV2K folder (default: %(default)s)')
    parser.add_argument('--scales', type=positive_int, nargs='+', default=[2, 3, 4])
    parser.add_argument('--crop_size', type=positive_int, default=480, help='HR crop size (default: %(default)s)')
    parser.add_argument('--step', type=positive_int, default=240, help='HR crop step (default: %(default)s)')
    parser.add_argument('--thresh_size', type=int, default=0,
                        help='a last crop flush with the border is added when more pixels than this are left')
    parser.add_argument('--lmdb', action='store_true', help='also write an LMDB of each sub-image folder')
    parser.add_argument('--workers', type=positive_int, default=1, help='processes (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing output folders')


def run(args):
    names = check_inputs(args.root, args.scales, args.crop_size, args.step)
    folders = output_folders(args.root, args.scales)
    lmdbs = lmdb_paths(args.root, args.scales) if args.lmdb else {}
    check_output_folders([*folders.values(), *lmdbs.values()], args.overwrite, option='--root')
    # Written whole or not at all: under temporary names, renamed when every output is complete.
    with atomic_paths(folders.values(), folders=True) as folder_temps, atomic_paths(lmdbs.values()) as lmdb_temps:
        temporary = dict(zip(folders, folder_temps))
        work = partial(crop_image, root=args.root, folders=temporary, crop_size=args.crop_size, step=args.step,
                       thresh_size=args.thresh_size)
        with Pool(args.workers) if args.workers > 1 else nullcontext() as pool:
            jobs = pool.imap_unordered(work, names) if pool else map(work, names)
            counts = list(tqdm(jobs, total=len(names), desc='sub-images', unit='image'))
        for key, lmdb_temp in zip(lmdbs, lmdb_temps):
            make_lmdb(temporary[key], lmdb_temp)
    print(f'{sum(counts)} sub-images of {len(names)} images in each of: {", ".join(folders.values())}')
