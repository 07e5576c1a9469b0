"""Making LR/HR pairs the way the SR literature does.

HR is cropped to a multiple of the scale; LR is MATLAB-style bicubic downsampling
(BasicSR's ``imresize``, antialiased) rounded to uint8. Images are uint8 HWC, any channel
order (the resize treats channels independently).
"""
import cv2
import numpy as np
from basicsr.utils.matlab_functions import imresize

from ghostsr_plugin.errors import InputError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


def mod_crop(img, scale):
    """Crop ``img`` (H, W[, C]) so that H and W are multiples of ``scale``."""
    h, w = img.shape[:2]
    if h < scale or w < scale:
        raise InputError(f'image of {h}x{w} pixels is smaller than the scale x{scale}')
    return img[:h - h % scale, :w - w % scale]


def bicubic_downscale(hr, scale):
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')`` of a uint8 image, rounded to uint8."""
    if hr.dtype != np.uint8:
        raise TypeError(f'expected a uint8 image, found {hr.dtype}')
    lr = imresize(hr.astype(np.float32) / 255., 1 / scale)
    return np.clip(np.round(lr * 255.), 0, 255).astype(np.uint8)


def paired_crops(hr, lr, scale, lr_size, lr_step):
    """Aligned sub-images ``(hr_crop, lr_crop)`` of an LR/HR pair, covering the image.

    The LR image is made from the whole HR image first, so crop borders see the same
    bicubic neighbourhood as in the full image (BasicSR's ``extract_subimages`` way).
    """
    h, w = lr.shape[:2]
    tops = list(range(0, max(h - lr_size, 0) + 1, lr_step))
    lefts = list(range(0, max(w - lr_size, 0) + 1, lr_step))
    if tops[-1] + lr_size < h:
        tops.append(h - lr_size)
    if lefts[-1] + lr_size < w:
        lefts.append(w - lr_size)
    for top in tops:
        for left in lefts:
            lr_crop = lr[top:top + lr_size, left:left + lr_size]
            hr_crop = hr[top * scale:(top + lr_size) * scale, left * scale:(left + lr_size) * scale]
            yield hr_crop, lr_crop


def read_color_image(path):
    """An image file as uint8 BGR (H, W, 3).

    Grayscale files (Set14's ``bridge``) are replicated to three channels, as BasicSR and
    EDSR load them, so the Y channel is computed from equal R, G and B.
    """
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f'cannot read image {path}: missing, corrupt or not an image')
    return img
