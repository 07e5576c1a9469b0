"""InMemoryPairedImageDataset: LR/HR pairs decoded once and held in memory; crops and flips in the workers.

BasicSR's PairedImageDataset reads and decodes two files for every training sample, which
at GPU speed leaves the GPU waiting for data. This dataset decodes every pair once, in
threads, when it is built, and keeps them as uint8 arrays; each sample is then BasicSR's own
``paired_random_crop`` and ``augment`` of one pair (in the loader workers, which share the
arrays with the training process through fork), converted as PairedImageDataset converts
it: from the same pair and random state, the same tensors. It draws from Python's
``random`` as BasicSR does, so ``ghostsr_plugin.sample_seeds`` makes resumes exact.

Options, as PairedImageDataset's (``dataroot_gt``, ``dataroot_lq``, ``filename_tmpl``,
``meta_info_file``, ``io_backend`` disk or lmdb, ``gt_size``, ``use_hflip``, ``use_rot``),
except that ``dataroot_lq`` may be left out: each LR image is then MATLAB's bicubic
downscaling of its HR image cropped to a multiple of the scale (``ghostsr_plugin.data_prep``),
the way the SR literature makes them, so a folder of photos is a training set. Whole images
suit it (DIV2K's 800 HR and x2 LR images take about 8 GB); ``load_threads`` (default: every
CPU) decode them. The pairs are cached per process, so building the dataset again with the
same options (GhostSRModel does, to count an epoch's batches) costs nothing.
"""
import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from basicsr.data.data_util import (
    paired_paths_from_folder,
    paired_paths_from_lmdb,
    paired_paths_from_meta_info_file,
    paths_from_folder,
    paths_from_lmdb,
)
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import FileClient, get_root_logger, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from ghostsr_plugin.data_prep import bicubic_downscale, mod_crop
from ghostsr_plugin.registration import register


def _paths(gt_root, lq_root, backend, filename_tmpl, meta_info_file):
    """``[{'gt_path', 'lq_path'}]`` as PairedImageDataset lists them (``lq_path`` None without ``lq_root``), sorted."""
    if lq_root is None:
        gt_paths = paths_from_lmdb(gt_root) if backend == 'lmdb' else paths_from_folder(gt_root)
        paths = [{'gt_path': path, 'lq_path': None} for path in gt_paths]
    elif backend == 'lmdb':
        paths = paired_paths_from_lmdb([lq_root, gt_root], ['lq', 'gt'])
    elif meta_info_file is not None:
        paths = paired_paths_from_meta_info_file([lq_root, gt_root], ['lq', 'gt'], meta_info_file, filename_tmpl)
    else:
        paths = paired_paths_from_folder([lq_root, gt_root], ['lq', 'gt'], filename_tmpl)
    return sorted(paths, key=lambda p: p['gt_path'])


@functools.cache
def load_pairs(gt_root, lq_root, scale, backend='disk', filename_tmpl='{}', meta_info_file=None, threads=None):
    """Every pair as ``(gt_path, lq_path, hr, lr)``, uint8 BGR HWC, decoded (and downscaled) in ``threads`` threads."""
    paths = _paths(gt_root, lq_root, backend, filename_tmpl, meta_info_file)
    roots = [r for r in (lq_root, gt_root) if r is not None]
    client = FileClient(backend, db_paths=roots, client_keys=['lq', 'gt'][-len(roots):]) if backend == 'lmdb' \
        else FileClient(backend)

    def load(path):
        hr = imfrombytes(client.get(path['gt_path'], 'gt'))
        if path['lq_path'] is None:
            hr = np.ascontiguousarray(mod_crop(hr, scale))
            return path['gt_path'], None, hr, bicubic_downscale(hr, scale)
        return path['gt_path'], path['lq_path'], hr, imfrombytes(client.get(path['lq_path'], 'lq'))

    start = time.perf_counter()
    with ThreadPoolExecutor(threads or os.cpu_count()) as pool:
        pairs = tuple(pool.map(load, paths))
    megabytes = sum(hr.nbytes + lr.nbytes for _, _, hr, lr in pairs) / 2**20
    how = 'LR read' if lq_root is not None else f'LR made by MATLAB bicubic x{scale}'
    get_root_logger().info(f'Loaded {len(pairs)} image pairs from {gt_root} into memory ({megabytes:,.0f} MiB, '
                           f'{how}) in {time.perf_counter() - start:.1f} s')
    return pairs


@register(DATASET_REGISTRY)
class InMemoryPairedImageDataset(data.Dataset):
    """PairedImageDataset's samples from pairs decoded once and held in memory (LR optionally made by bicubic)."""

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        backend = dict(opt['io_backend'])['type']
        self.pairs = load_pairs(opt['dataroot_gt'], opt.get('dataroot_lq'), opt['scale'], backend,
                                opt.get('filename_tmpl', '{}'), opt.get('meta_info_file'), opt.get('load_threads'))

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        scale = self.opt['scale']
        gt_path, lq_path, img_gt, img_lq = self.pairs[index]
        if self.opt['phase'] == 'train':
            img_gt, img_lq = paired_random_crop(img_gt, img_lq, self.opt['gt_size'], scale, gt_path)
        else:  # (PairedImageDataset crops a GT that is not exactly scale x its LQ)
            img_gt = img_gt[:img_lq.shape[0] * scale, :img_lq.shape[1] * scale]
        # imfrombytes(float32=True)'s conversion, of the crop only; a copy, so augment's in-place flips
        # leave the pair in memory as it is
        img_gt, img_lq = img_gt.astype(np.float32) / 255., img_lq.astype(np.float32) / 255.
        if self.opt['phase'] == 'train':
            img_gt, img_lq = augment([img_gt, img_lq], self.opt['use_hflip'], self.opt['use_rot'])
        img_gt, img_lq = img2tensor([img_gt, img_lq])
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': lq_path or gt_path, 'gt_path': gt_path}
