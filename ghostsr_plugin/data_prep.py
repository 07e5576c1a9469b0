"""Making LR/HR pairs the way the SR literature does.

HR is cropped to a multiple of the scale; LR is MATLAB's ``imresize(hr, 1/scale, 'bicubic')``
(antialiased) rounded to uint8. Images are uint8 HWC, any channel order (the resize
treats channels independently).

The resize is MATLAB's algorithm, as in BasicSR's ``matlab_functions.imresize``, but
computed in float64 on the integer pixel values: at x2 and x4 every weight is a dyadic
fraction, so the result is exact and the many exact ties (``k + 0.5``, frequent in flat
regions) round away from zero as MATLAB's ``round`` does. BasicSR's float32 version lands
on either side of a tie by rounding noise (about 1 value in 50,000 differs by 1).
"""
import math
import numbers
import os

import cv2
import numpy as np

from ghostsr_plugin.errors import InputError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


class UnreadableImageError(InputError):
    """An image file that cannot be decoded (commands may skip these when asked to)."""


def check_scale(scale, integer=True):
    """Fail unless ``scale`` is a positive integer (or, with ``integer=False``, a positive number)."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(scale, bool) or not isinstance(scale, kind) or not scale > 0:
        expected = 'a positive integer' if integer else 'a positive number'
        raise InputError(f'scale must be {expected}, found {scale!r}')


def mod_crop(img, scale):
    """Crop ``img`` (H, W[, C]) so that H and W are multiples of ``scale``."""
    check_scale(scale)
    h, w = img.shape[:2]
    if h < scale or w < scale:
        raise InputError(f'image of {h}x{w} pixels is smaller than the scale x{scale}')
    return img[:h - h % scale, :w - w % scale]


def _cubic(x):
    """Keys' cubic kernel with a = -0.5, MATLAB's ``cubic``."""
    a = np.abs(x)
    return np.where(a <= 1, (1.5 * a - 2.5) * a * a + 1, np.where(a <= 2, ((-0.5 * a + 2.5) * a - 4) * a + 2, 0.))


def contributions(in_length, scale):
    """Weights and input indices, each (out, taps), of MATLAB's bicubic ``imresize`` along one axis.

    MATLAB's ``contributions``: antialiased when shrinking (the kernel is stretched by
    ``1/scale``), borders mirrored (``symmetric`` padding) by folding the indices.
    """
    out_length = math.ceil(in_length * scale)
    stretch = min(scale, 1)
    width = 4 / stretch
    center = np.arange(1, out_length + 1) / scale + 0.5 * (1 - 1 / scale)
    taps = np.floor(center - width / 2)[:, None] + np.arange(math.ceil(width) + 2)
    weights = stretch * _cubic((center[:, None] - taps) * stretch)
    weights /= weights.sum(axis=1, keepdims=True)
    mirrored = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    return weights, mirrored[(taps.astype(int) - 1) % (2 * in_length)]


def _resize_axis(img, scale, axis):
    weights, indices = contributions(img.shape[axis], scale)
    img = np.moveaxis(img, axis, 0)
    shape = (-1,) + (1,) * (img.ndim - 1)
    out = sum(weights[:, k].reshape(shape) * img[indices[:, k]] for k in range(weights.shape[1]))
    return np.moveaxis(out, 0, axis)


def matlab_bicubic(img, scale):
    """MATLAB ``imresize(img, scale, 'bicubic')`` of a uint8 image, rounded to uint8."""
    if img.dtype != np.uint8:
        raise TypeError(f'expected a uint8 image, found {img.dtype}')
    check_scale(scale, integer=False)
    out = _resize_axis(_resize_axis(img.astype(np.float64), scale, 0), scale, 1)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)  # MATLAB rounds ties away from zero


def bicubic_downscale(hr, scale):
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')`` of a uint8 image, rounded to uint8."""
    check_scale(scale, integer=False)
    return matlab_bicubic(hr, 1 / scale)


def crop_starts(length, size, step, thresh_size=0):
    """Offsets of BasicSR's sub-image grid along one axis (``extract_subimages.py``).

    Every ``step`` pixels, plus a last crop flush with the end when more than
    ``thresh_size`` pixels would be left over; one crop at 0 if ``length <= size``.
    """
    starts = list(range(0, max(length - size, 0) + 1, step))
    if length - (starts[-1] + size) > thresh_size:
        starts.append(length - size)
    return starts


def sub_images(img, size, step, thresh_size=0):
    """BasicSR's ``size`` x ``size`` sub-images of ``img``, row by row."""
    h, w = img.shape[:2]
    for top in crop_starts(h, size, step, thresh_size):
        for left in crop_starts(w, size, step, thresh_size):
            yield img[top:top + size, left:left + size]


def paired_crops(hr, lr, scale, lr_size, lr_step):
    """Aligned sub-images ``(hr_crop, lr_crop)`` of an LR/HR pair, covering the image.

    The LR image is made from the whole HR image first, so crop borders see the same
    bicubic neighbourhood as in the full image (BasicSR's ``extract_subimages`` way).
    """
    return zip(sub_images(hr, lr_size * scale, lr_step * scale), sub_images(lr, lr_size, lr_step))


def list_images(folder):
    """Sorted names of the image files in ``folder``; an error if it is missing or has none."""
    if not os.path.isdir(folder):
        raise InputError(f'folder {folder} does not exist')
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise InputError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {folder}')
    return names


def read_color_image(path):
    """An image file as uint8 BGR (H, W, 3).

    Grayscale files (Set14's ``bridge``) are replicated to three channels, as BasicSR and
    EDSR load them, so the Y channel is computed from equal R, G and B.
    """
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise UnreadableImageError(f'cannot read image {path}: missing, corrupt or not an image')
    return img


def mosaic(images, size):
    """An (H, W) image tiled from ``images`` (H x W x C uint8 arrays): equal square cells cut from their centres,
    in order, repeated as needed; natural content everywhere, to time a network whose work depends on the image."""
    cell = min(min(img.shape[:2]) for img in images)
    corners = [((img.shape[0] - cell) // 2, (img.shape[1] - cell) // 2) for img in images]
    crops = [img[top:top + cell, left:left + cell] for img, (top, left) in zip(images, corners)]
    rows, cols = -(-size[0] // cell), -(-size[1] // cell)
    grid = [np.concatenate([crops[(r * cols + c) % len(crops)] for c in range(cols)], 1) for r in range(rows)]
    return np.ascontiguousarray(np.concatenate(grid, 0)[:size[0], :size[1]])
