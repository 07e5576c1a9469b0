"""Evaluate super-resolution methods on paired LR/HR folders, the literature's way.

PSNR and SSIM come from BasicSR's metric functions on the Y channel with ``scale``
pixels cropped at each border; bicubic upscaling is MATLAB's (``data_prep.matlab_bicubic``).
"""
import math
import os.path as osp

import numpy as np
import torch
from basicsr.archs import build_network
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import img2tensor, tensor2img
from tqdm import tqdm

from ghostsr_plugin.checkpoint import load_checkpoint
from ghostsr_plugin.data_prep import UnreadableImageError, list_images, read_color_image
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.tiling import tiled_forward

DEFAULT_PARAM_KEYS = ('params_ema', 'params')
SSIM_WINDOW = 11  # BasicSR's calculate_ssim: an 11 x 11 Gaussian window, valid positions only


class UnmeasurableImageError(InputError):
    """A test image too small for SSIM once the border is cropped (commands may skip these when asked to)."""


def latest_checkpoint(name, root='experiments'):
    """The latest weights ``basicsr train`` saved for the run ``name``: ``<root>/<name>/models/net_g_latest.pth``."""
    return osp.join(root, name, 'models', 'net_g_latest.pth')


def load_weights(checkpoint, param_key=None, loaded=None):
    """``(state dict, key)``: the weights under ``param_key`` of a BasicSR checkpoint.

    With no ``param_key``, the first of ``DEFAULT_PARAM_KEYS`` present (EMA weights when
    saved); a key asked for must be there. ``loaded``: the checkpoint's dict when it is
    already loaded (:func:`load_checkpoint`), so a file is read once.
    """
    state = load_checkpoint(checkpoint) if loaded is None else loaded
    if param_key is None:
        param_key = next((k for k in DEFAULT_PARAM_KEYS if k in state), None)
        if param_key is None:
            raise InputError(f"{checkpoint}: expected weights under {' or '.join(map(repr, DEFAULT_PARAM_KEYS))}; "
                             f'found keys {sorted(state)}')
    elif param_key not in state:
        raise InputError(f"{checkpoint}: no weights under the requested key '{param_key}'; found keys {sorted(state)}")
    return {k.removeprefix('module.'): v for k, v in state[param_key].items()}, param_key


def is_deploy_state(state):
    """Whether a state dict is a frozen model's (``ghostsr freeze``): baked choices (a Ghost layer's offsets, an SMSR
    channel mask's sparse channels), no logits."""
    return (any(k.endswith(('.offsets', '.sparse_channels')) for k in state)
            and not any(k.endswith('.logits') for k in state))


def load_state_dict(checkpoint, param_key=None):
    """The state dict under ``param_key`` of a BasicSR checkpoint (see ``load_weights``)."""
    return load_weights(checkpoint, param_key)[0]


def load_model_and_key(network_opt, checkpoint, param_key=None, loaded=None):
    """``(network, key)``: the BasicSR network ``network_opt`` with ``checkpoint``'s weights loaded strictly,
    in eval mode, and the checkpoint key they came from (see ``load_weights``). A deploy
    checkpoint builds the arch with ``deploy: true``."""
    state, param_key = load_weights(checkpoint, param_key, loaded)
    if is_deploy_state(state) and not network_opt.get('deploy'):
        network_opt = {**network_opt, 'deploy': True}  # a frozen checkpoint loads into the frozen form
    net = build_network(network_opt)
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
    return net.eval(), param_key


def load_model(network_opt, checkpoint, param_key=None, loaded=None):
    """The network of ``load_model_and_key``: EMA weights when saved, unless ``param_key`` asks for others."""
    return load_model_and_key(network_opt, checkpoint, param_key, loaded)[0]


def network_input(image, device='cpu'):
    """A uint8 BGR image as a network's input: (1, 3, H, W) RGB in [0, 1], as BasicSR trains."""
    return img2tensor(image.astype(np.float32) / 255., bgr2rgb=True, float32=True).unsqueeze(0).to(device)


@torch.no_grad()
def network_upscale(net, lr, device='cpu', tile=None, overlap=0, scale=None):
    """Super-resolve a uint8 BGR image with ``net`` (RGB in [0, 1], as BasicSR trains).

    With ``tile`` (LR pixels), the image is processed in tiles with ``overlap`` pixels of
    context (see ``tiling``); ``scale`` is then the network's upscaling factor.
    """
    x = network_input(lr, device)
    sr = net(x) if tile is None else tiled_forward(net, x, scale, tile, overlap)
    return tensor2img(sr.cpu(), rgb2bgr=True)


def paired_images(gt_folder, lq_folder):
    """Sorted ``(name, gt_path, lq_path)`` of images present in both folders."""
    names = list_images(gt_folder)
    if not osp.isdir(lq_folder):
        raise InputError(f'folder {lq_folder} does not exist')
    missing = [n for n in names if not osp.isfile(osp.join(lq_folder, n))]
    if missing:
        raise InputError(f'{lq_folder} has no LR image for {missing[0]} (and {len(missing) - 1} more)')
    return [(osp.splitext(n)[0], osp.join(gt_folder, n), osp.join(lq_folder, n)) for n in names]


def _read_pair(gt_path, lq_path, scale):
    gt, lq = read_color_image(gt_path), read_color_image(lq_path)
    expected = (lq.shape[0] * scale, lq.shape[1] * scale)
    if gt.shape[:2] != expected:
        raise InputError(f'{gt_path} is {gt.shape[0]}x{gt.shape[1]} pixels; the x{scale} LR image {lq_path} '
                         f'({lq.shape[0]}x{lq.shape[1]}) needs {expected[0]}x{expected[1]}')
    return gt, lq


def check_measurable(gt_path, gt, scale):
    """Fail unless SSIM's window fits in ``gt`` once ``scale`` pixels are cropped at each border.

    Smaller, BasicSR's ``calculate_ssim`` crashes inside OpenCV (nothing left) or returns NaN
    (no valid window position).
    """
    h, w = gt.shape[:2]
    if min(h, w) - 2 * scale < SSIM_WINDOW:
        need = SSIM_WINDOW + 2 * scale
        raise UnmeasurableImageError(
            f'{gt_path} is {h}x{w} pixels, too small to measure at x{scale}: SSIM needs at least '
            f'{SSIM_WINDOW}x{SSIM_WINDOW} after cropping {scale} pixels at each border, so at least {need}x{need}')


def evaluate(upscale, gt_folder, lq_folder, scale, desc='evaluate', skip_corrupt=False, measure=None):
    """Per-image and mean PSNR/SSIM (Y channel, border ``scale``) of ``upscale(lr) -> sr``.

    An unreadable image, or one too small to measure, is an error, or with ``skip_corrupt``
    reported, skipped and listed under ``skipped``. ``measure(lr)``: further figures of each image
    (a dict of numbers, e.g. the FLOPs its masks decide), kept per image and averaged.
    """
    rows, skipped = [], []
    for name, gt_path, lq_path in tqdm(paired_images(gt_folder, lq_folder), desc=desc, unit='image'):
        try:
            gt, lq = _read_pair(gt_path, lq_path, scale)
            check_measurable(gt_path, gt, scale)
        except (UnreadableImageError, UnmeasurableImageError) as err:
            if not skip_corrupt:
                raise
            tqdm.write(f'skipped: {err}')
            skipped.append(str(err))
            continue
        sr = upscale(lq)
        if sr.shape != gt.shape:
            raise InputError(f'{desc}: the output for {lq_path} is {sr.shape[0]}x{sr.shape[1]} pixels, '
                             f'{gt_path} is {gt.shape[0]}x{gt.shape[1]}')
        row = {'image': name, 'psnr': calculate_psnr(sr, gt, crop_border=scale, test_y_channel=True),
               'ssim': calculate_ssim(sr, gt, crop_border=scale, test_y_channel=True)}
        if any(math.isnan(row[k]) for k in ('psnr', 'ssim')):  # never written to a result
            raise InputError(f'{desc}: {gt_path} measured {row}; NaN is no result')
        rows.append({**row, **(measure(lq) if measure else {})})
    if not rows:
        raise InputError(f'no readable, measurable image pairs in {gt_folder} and {lq_folder}')
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != 'image'}
    return {'images': rows, **mean, 'skipped': skipped}
