"""Evaluate super-resolution methods on paired LR/HR folders, the literature's way.

PSNR and SSIM come from BasicSR's metric functions on the Y channel with ``scale``
pixels cropped at each border; bicubic upscaling is MATLAB-style (BasicSR's ``imresize``).
"""
import os.path as osp

import numpy as np
import torch
from basicsr.archs import build_network
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import img2tensor, scandir, tensor2img
from basicsr.utils.matlab_functions import imresize
from tqdm import tqdm

from ghostsr_plugin.data_prep import IMAGE_SUFFIXES, read_color_image
from ghostsr_plugin.errors import InputError


def load_state_dict(checkpoint, param_key='params'):
    """The state dict under ``param_key`` of a BasicSR checkpoint (falls back to 'params')."""
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    if param_key not in state and 'params' in state:
        param_key = 'params'
    if param_key not in state:
        raise InputError(f"{checkpoint}: no '{param_key}' in the checkpoint; found keys {sorted(state)}")
    return {k.removeprefix('module.'): v for k, v in state[param_key].items()}


def load_model(network_opt, checkpoint, param_key='params_ema'):
    """Build the BasicSR network ``network_opt`` and load ``checkpoint`` strictly, in eval mode."""
    net = build_network(network_opt)
    state = load_state_dict(checkpoint, param_key)
    expected = net.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise InputError(f"{checkpoint} does not fit {network_opt['type']}: missing key '{key}'")
        if state[key].shape != value.shape:
            raise InputError(f"{checkpoint} does not fit {network_opt['type']}: key '{key}' has shape "
                             f'{tuple(state[key].shape)}, the network expects {tuple(value.shape)}')
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise InputError(f"{checkpoint} does not fit {network_opt['type']}: unexpected key '{unexpected[0]}'")
    net.load_state_dict(state)
    return net.eval()


def bicubic_upscale(lr, scale):
    """MATLAB-style bicubic upscaling of a uint8 image, rounded to uint8."""
    sr = imresize(lr.astype(np.float32) / 255., scale)
    return np.clip(np.round(sr * 255.), 0, 255).astype(np.uint8)


@torch.no_grad()
def network_upscale(net, lr, device='cpu'):
    """Super-resolve a uint8 BGR image with ``net`` (RGB in [0, 1], as BasicSR trains)."""
    x = img2tensor(lr.astype(np.float32) / 255., bgr2rgb=True, float32=True).unsqueeze(0).to(device)
    return tensor2img(net(x).cpu(), rgb2bgr=True)


def paired_images(gt_folder, lq_folder):
    """Sorted ``(name, gt_path, lq_path)`` of images present in both folders."""
    names = sorted(f for f in scandir(gt_folder) if f.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise InputError(f'no images in {gt_folder}')
    missing = [n for n in names if not osp.isfile(osp.join(lq_folder, n))]
    if missing:
        raise InputError(f'{lq_folder} has no LR image for {missing[0]} (and {len(missing) - 1} more)')
    return [(osp.splitext(n)[0], osp.join(gt_folder, n), osp.join(lq_folder, n)) for n in names]


def evaluate(upscale, gt_folder, lq_folder, scale, desc='evaluate'):
    """Per-image and mean PSNR/SSIM (Y channel, border ``scale``) of ``upscale(lr) -> sr``."""
    rows = []
    for name, gt_path, lq_path in tqdm(paired_images(gt_folder, lq_folder), desc=desc, unit='image'):
        gt, sr = read_color_image(gt_path), upscale(read_color_image(lq_path))
        gt = gt[:sr.shape[0], :sr.shape[1]]
        rows.append({
            'image': name,
            'psnr': calculate_psnr(sr, gt, crop_border=scale, test_y_channel=True),
            'ssim': calculate_ssim(sr, gt, crop_border=scale, test_y_channel=True),
        })
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ('psnr', 'ssim')}
    return {'images': rows, **mean}
