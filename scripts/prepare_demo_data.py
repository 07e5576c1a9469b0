"""Build the embedded demo set: real photos, no downloads.

Training pairs come from scikit-image's bundled colour photos (plus every image under
``--extra``, by default ``../shared/data/train`` when that folder exists), cut into
aligned sub-images. Three skimage photos (astronaut, chelsea, coffee) are held out for
validation. LR images are MATLAB-style bicubic x``scale``, as in the SR literature.

Writes BasicSR's paired-folder layout under ``--out``:
``train/HR_sub``, ``train/LR_bicubic/X{s}_sub``, ``val/GTmod{s}``, ``val/LRbicx{s}``.
"""
import argparse
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import skimage.data
from tqdm import tqdm

from ghostsr_plugin.data_prep import IMAGE_SUFFIXES, bicubic_downscale, mod_crop, paired_crops, read_color_image

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
HELD_OUT = ('astronaut', 'chelsea', 'coffee')
TRAIN = ('hubble_deep_field', 'immunohistochemistry', 'retina', 'rocket', 'motorcycle_left', 'motorcycle_right')


def skimage_photo(name):
    """A bundled skimage colour photo as uint8 BGR."""
    if name.startswith('motorcycle_'):
        left, right, _ = skimage.data.stereo_motorcycle()
        rgb = left if name.endswith('left') else right
    else:
        rgb = getattr(skimage.data, name)()
    return np.ascontiguousarray(rgb[..., ::-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='datasets/demo', help='output folder (default: %(default)s)')
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--extra', default=osp.join(REPO_ROOT, '..', 'shared', 'data', 'train'),
                        help='folder of extra HR training photos, used when it exists (default: %(default)s)')
    parser.add_argument('--lr_size', type=int, default=96, help='LR sub-image size (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true', help='rebuild an existing --out folder')
    args = parser.parse_args()

    s = args.scale
    if osp.isdir(args.out):
        if not args.overwrite:
            print(f'{args.out} exists; reusing it (pass --overwrite to rebuild).')
            return
        shutil.rmtree(args.out)
    folders = {
        'train_hr': osp.join(args.out, 'train', 'HR_sub'),
        'train_lr': osp.join(args.out, 'train', 'LR_bicubic', f'X{s}_sub'),
        'val_hr': osp.join(args.out, 'val', f'GTmod{s}'),
        'val_lr': osp.join(args.out, 'val', f'LRbicx{s}'),
    }
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)

    for name in HELD_OUT:
        hr = mod_crop(skimage_photo(name), s)
        cv2.imwrite(osp.join(folders['val_hr'], f'{name}.png'), hr)
        cv2.imwrite(osp.join(folders['val_lr'], f'{name}.png'), bicubic_downscale(hr, s))

    sources = [(name, lambda name=name: skimage_photo(name)) for name in TRAIN]
    if osp.isdir(args.extra):
        extra = sorted(osp.join(root, f) for root, _, files in os.walk(args.extra) for f in files
                       if f.lower().endswith(IMAGE_SUFFIXES))
        sources += [(osp.splitext(osp.basename(f))[0], lambda f=f: read_color_image(f)) for f in extra]
        print(f'Adding {len(extra)} training photos from {args.extra}')
    num_crops = 0
    for name, load in tqdm(sources, desc='demo training pairs', unit='image'):
        hr = mod_crop(load(), s)
        lr = bicubic_downscale(hr, s)
        for i, (hr_crop, lr_crop) in enumerate(paired_crops(hr, lr, s, args.lr_size, args.lr_size)):
            cv2.imwrite(osp.join(folders['train_hr'], f'{name}_s{i:03d}.png'), hr_crop)
            cv2.imwrite(osp.join(folders['train_lr'], f'{name}_s{i:03d}.png'), lr_crop)
            num_crops += 1
    print(f'Wrote {num_crops} training pairs from {len(sources)} photos and {len(HELD_OUT)} held-out '
          f'validation images ({", ".join(HELD_OUT)}) to {args.out}')


if __name__ == '__main__':
    main()
