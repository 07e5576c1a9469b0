"""Prepare SR benchmark sets from HR-only folders, in BasicSR's test layout.

For every HR folder given (Set5, Set14, B100, Urban100 or your own) and every scale s,
writes ``<out>/<set>/GTmod{s}/<name>.png`` (HR cropped to a multiple of s) and
``<out>/<set>/LRbicx{s}/<name>.png`` (MATLAB-style bicubic x1/s of it, rounded to uint8).
The set's name is the folder's name, or its parent's when the folder is called ``HR``.
Grayscale images are replicated to three channels, as BasicSR and EDSR load them.
Existing output folders are refused unless --overwrite, which replaces folders an earlier run wrote
(never a folder of yours). The output is
written whole or not at all: a run that stops on a bad image leaves nothing behind.

Example: ghostsr prepare-benchmarks ../shared/data/benchmark/Set5/HR --out datasets/benchmark
"""
import os.path as osp

import cv2
from tqdm import tqdm

from ghostsr_plugin.atomic import atomic_paths
from ghostsr_plugin.commands import positive_int
from ghostsr_plugin.data_prep import (
    UnreadableImageError,
    bicubic_downscale,
    list_images,
    mod_crop,
    read_color_image,
)
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.outputs import check_output_folders


def set_name(folder):
    folder = osp.normpath(folder)
    return osp.basename(osp.dirname(folder)) if osp.basename(folder) == 'HR' else osp.basename(folder)


def output_folders(hr_folders, out_root, scales):
    """{(HR folder, scale): (GTmod{s} folder, LRbicx{s} folder)}; fails if two HR folders make one set."""
    sets = {}
    for folder in hr_folders:
        name = set_name(folder)
        if name in sets:
            raise InputError(f"{sets[name]} and {folder} both make the set '{name}'; prepare them separately "
                             'with different --out')
        sets[name] = folder
    return {(folder, s): tuple(osp.join(out_root, name, f'{kind}{s}') for kind in ('GTmod', 'LRbicx'))
            for name, folder in sets.items() for s in scales}


def write_set(hr_folder, folders, skip_corrupt=False):
    """Write one HR folder's images into ``folders``: {scale: (GTmod folder, LRbicx folder)}."""
    for name in tqdm(list_images(hr_folder), desc=set_name(hr_folder), unit='image'):
        path = osp.join(hr_folder, name)
        try:
            hr = read_color_image(path)
        except UnreadableImageError as err:
            if not skip_corrupt:
                raise
            tqdm.write(f'skipped: {err}')
            continue
        png = osp.splitext(name)[0] + '.png'
        for s, (gt_folder, lr_folder) in folders.items():
            try:
                gt = mod_crop(hr, s)
            except InputError as err:
                raise InputError(f'{path}: {err}') from None
            cv2.imwrite(osp.join(gt_folder, png), gt)
            cv2.imwrite(osp.join(lr_folder, png), bicubic_downscale(gt, s))


def prepare_sets(hr_folders, out_root, scales, skip_corrupt=False, overwrite=False):
    """Write GTmod{s}/LRbicx{s} of every HR folder, all of them or (on an error) none.

    Existing output folders are refused unless ``overwrite``, and then replaced (only folders this
    command wrote, see :mod:`ghostsr_plugin.outputs`) once all new ones are complete.
    """
    outputs = output_folders(hr_folders, out_root, scales)
    paths = [p for pair in outputs.values() for p in pair]
    check_output_folders(paths, overwrite, inputs=hr_folders)
    with atomic_paths(paths, folders=True) as temporaries:
        written = dict(zip(paths, temporaries))
        for folder in hr_folders:
            write_set(folder, {s: tuple(written[p] for p in outputs[folder, s]) for s in scales}, skip_corrupt)
    for folder in hr_folders:
        print(f'{folder} -> {osp.join(out_root, set_name(folder))}')


def add_arguments(parser):
    parser.add_argument('hr_folders', nargs='+', help='folders of HR images')
    parser.add_argument('--out', default='datasets/benchmark', help='output root (default: %(default)s)')
    parser.add_argument('--scales', type=positive_int, nargs='+', default=[2, 3, 4])
    parser.add_argument('--skip_corrupt', action='store_true', help='report and skip unreadable images')
    parser.add_argument('--overwrite', action='store_true', help='replace existing output folders')


def run(args):
    prepare_sets(args.hr_folders, args.out, args.scales, args.skip_corrupt, args.overwrite)
