"""Build the embedded demo set: real photos, no downloads.

Training pairs come from scikit-image's bundled colour photos (plus every image under
``--extra``, by default ``../shared/data/train`` when that folder exists), cut into
aligned sub-images. Three skimage photos (astronaut, chelsea, coffee) are held out for
validation. LR images are MATLAB-style bicubic x``scale``, as in the SR literature.

Writes BasicSR's paired-folder layout under ``--out``:
``train/HR_sub``, ``train/LR_bicubic/X{s}_sub``, ``val/GTmod{s}``, ``val/LRbicx{s}``, and last
``prepared.json`` with the build's parameters. A folder whose ``prepared.json`` matches is
reused; one built with other parameters is rebuilt. The folder is built under a temporary
name and renamed when complete, so an interrupted build leaves nothing behind; it replaces
only a folder that an earlier build wrote, never one holding anything else.
"""
import json
import os
import os.path as osp

import cv2
import numpy as np
import skimage.data
from tqdm import tqdm

from ghostsr_plugin.atomic import atomic_folder
from ghostsr_plugin.commands import positive_int
from ghostsr_plugin.data_prep import (
    IMAGE_SUFFIXES,
    bicubic_downscale,
    mod_crop,
    paired_crops,
    read_color_image,
)
from ghostsr_plugin.outputs import check_output_folder

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))  # a checkout's root
HELD_OUT = ('astronaut', 'chelsea', 'coffee')
TRAIN = ('hubble_deep_field', 'immunohistochemistry', 'retina', 'rocket', 'motorcycle_left', 'motorcycle_right')
MARKER = 'prepared.json'


def skimage_photo(name):
    """A bundled skimage colour photo as uint8 BGR."""
    if name.startswith('motorcycle_'):
        left, right, _ = skimage.data.stereo_motorcycle()
        rgb = left if name.endswith('left') else right
    else:
        rgb = getattr(skimage.data, name)()
    return np.ascontiguousarray(rgb[..., ::-1])


def extra_photos(folder):
    """The image files under ``folder`` (none if it does not exist), sorted."""
    if not osp.isdir(folder):
        return []
    return sorted(osp.join(root, f) for root, _, files in os.walk(folder) for f in files
                  if f.lower().endswith(IMAGE_SUFFIXES))


def build_parameters(args, extra):
    """What the built folder depends on; ``prepared.json`` holds it."""
    return {'scale': args.scale, 'lr_size': args.lr_size, 'held_out': list(HELD_OUT), 'train': list(TRAIN),
            'extra': [osp.relpath(f, args.extra) for f in extra]}


def read_marker(out):
    try:
        with open(osp.join(out, MARKER), encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def build(args):
    s = args.scale
    extra = extra_photos(args.extra)
    parameters = build_parameters(args, extra)
    if not args.overwrite and read_marker(args.out) == parameters:
        print(f'{args.out} exists, built with the same parameters; reusing it (pass --overwrite to rebuild).')
        return
    check_output_folder(args.out, overwrite=True)  # an earlier build is ours to replace; nothing else is
    if osp.exists(args.out):
        why = '--overwrite' if args.overwrite else 'built with other parameters'
        print(f'{args.out} exists; rebuilding it ({why}).')
    if extra:
        print(f'Adding {len(extra)} training photos from {args.extra}')
    with atomic_folder(args.out) as out:  # replaces an earlier build only once this one is complete
        num_crops, num_sources = write_demo_set(out, s, args.lr_size, extra)
        with open(osp.join(out, MARKER), 'w', encoding='utf-8') as f:
            json.dump(parameters, f, indent=1)
    print(f'Wrote {num_crops} training pairs from {num_sources} photos and {len(HELD_OUT)} held-out '
          f'validation images ({", ".join(HELD_OUT)}) to {args.out}')


def write_demo_set(out, s, lr_size, extra):
    """Write the held-out and training pairs under ``out``; returns (training pairs, training photos)."""
    folders = {
        'train_hr': osp.join(out, 'train', 'HR_sub'),
        'train_lr': osp.join(out, 'train', 'LR_bicubic', f'X{s}_sub'),
        'val_hr': osp.join(out, 'val', f'GTmod{s}'),
        'val_lr': osp.join(out, 'val', f'LRbicx{s}'),
    }
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)

    for name in HELD_OUT:
        hr = mod_crop(skimage_photo(name), s)
        cv2.imwrite(osp.join(folders['val_hr'], f'{name}.png'), hr)
        cv2.imwrite(osp.join(folders['val_lr'], f'{name}.png'), bicubic_downscale(hr, s))

    sources = [(name, lambda name=name: skimage_photo(name)) for name in TRAIN]
    if extra:
        sources += [(osp.splitext(osp.basename(f))[0], lambda f=f: read_color_image(f)) for f in extra]
    num_crops = 0
    for name, load in tqdm(sources, desc='demo training pairs', unit='image'):
        hr = mod_crop(load(), s)
        lr = bicubic_downscale(hr, s)
        for i, (hr_crop, lr_crop) in enumerate(paired_crops(hr, lr, s, lr_size, lr_size)):
            cv2.imwrite(osp.join(folders['train_hr'], f'{name}_s{i:03d}.png'), hr_crop)
            cv2.imwrite(osp.join(folders['train_lr'], f'{name}_s{i:03d}.png'), lr_crop)
            num_crops += 1
    return num_crops, len(sources)


def add_arguments(parser):
    parser.add_argument('--out', default='datasets/demo', help='output folder (default: %(default)s)')
    parser.add_argument('--scale', type=positive_int, default=2)
    parser.add_argument('--extra', default=osp.join(REPO_ROOT, '..', 'shared', 'data', 'train'),
                        help='folder of extra HR training photos, used when it exists (default: %(default)s)')
    parser.add_argument('--lr_size', type=positive_int, default=96, help='LR sub-image size (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true', help='rebuild an existing --out folder')


def run(args):
    build(args)
