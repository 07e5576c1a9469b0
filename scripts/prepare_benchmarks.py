"""Prepare SR benchmark sets from HR-only folders, in BasicSR's test layout.

For every HR folder given (Set5, Set14, B100, Urban100 or your own) and every scale s,
writes ``<out>/<set>/GTmod{s}/<name>.png`` (HR cropped to a multiple of s) and
``<out>/<set>/LRbicx{s}/<name>.png`` (MATLAB-style bicubic x1/s of it, rounded to uint8).
The set's name is the folder's name, or its parent's when the folder is called ``HR``.
Grayscale images are replicated to three channels, as BasicSR and EDSR load them.
Existing output folders are refused unless --overwrite (which replaces them).

Example: python scripts/prepare_benchmarks.py ../shared/data/benchmark/Set5/HR --out datasets/benchmark
"""
import argparse
import os
import os.path as osp
import shutil

import cv2
from tqdm import tqdm

from ghostsr_plugin.data_prep import (
    UnreadableImageError,
    bicubic_downscale,
    list_images,
    mod_crop,
    positive_int,
    read_color_image,
)
from ghostsr_plugin.errors import InputError, exit_on_input_error


def set_name(folder):
    folder = osp.normpath(folder)
    return osp.basename(osp.dirname(folder)) if osp.basename(folder) == 'HR' else osp.basename(folder)


def output_folders(hr_folders, out_root, scales):
    """The GTmod{s} and LRbicx{s} folders the HR folders are written to; fails if two folders make one set."""
    sets = {}
    for folder in hr_folders:
        name = set_name(folder)
        if name in sets:
            raise InputError(f"{sets[name]} and {folder} both make the set '{name}'; prepare them separately "
                             'with different --out')
        sets[name] = folder
    return [osp.join(out_root, name, f'{kind}{s}') for name in sets for s in scales for kind in ('GTmod', 'LRbicx')]


def prepare_set(hr_folder, out_root, scales, skip_corrupt=False):
    """Write GTmod{s}/LRbicx{s} for one HR folder; returns the set's output folder."""
    names = list_images(hr_folder)
    out = osp.join(out_root, set_name(hr_folder))
    for s in scales:
        os.makedirs(osp.join(out, f'GTmod{s}'), exist_ok=True)
        os.makedirs(osp.join(out, f'LRbicx{s}'), exist_ok=True)
    for name in tqdm(names, desc=set_name(hr_folder), unit='image'):
        path = osp.join(hr_folder, name)
        try:
            hr = read_color_image(path)
        except UnreadableImageError as err:
            if not skip_corrupt:
                raise
            tqdm.write(f'skipped: {err}')
            continue
        png = osp.splitext(name)[0] + '.png'
        for s in scales:
            try:
                gt = mod_crop(hr, s)
            except InputError as err:
                raise InputError(f'{path}: {err}') from None
            cv2.imwrite(osp.join(out, f'GTmod{s}', png), gt)
            cv2.imwrite(osp.join(out, f'LRbicx{s}', png), bicubic_downscale(gt, s))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('hr_folders', nargs='+', help='folders of HR images')
    parser.add_argument('--out', default='datasets/benchmark', help='output root (default: %(default)s)')
    parser.add_argument('--scales', type=positive_int, nargs='+', default=[2, 3, 4])
    parser.add_argument('--skip_corrupt', action='store_true', help='report and skip unreadable images')
    parser.add_argument('--overwrite', action='store_true', help='replace existing output folders')
    args = parser.parse_args()
    with exit_on_input_error(parser):
        for path in output_folders(args.hr_folders, args.out, args.scales):
            if osp.exists(path):
                if not args.overwrite:
                    raise InputError(f'{path} exists; pass --overwrite to replace it')
                shutil.rmtree(path)
        for folder in args.hr_folders:
            print(f'{folder} -> {prepare_set(folder, args.out, args.scales, args.skip_corrupt)}')


if __name__ == '__main__':
    main()
