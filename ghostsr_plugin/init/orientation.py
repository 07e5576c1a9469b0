"""The Ghost layers' starting orientation after clustering init (``ghost_init.orientation``).

* ``random``: the logits keep their fresh random initialization (the official code's);
* ``zero``: every layer starts at offset (0, 0), the ghosts as plain copies;
* ``fit``: each layer starts at the offset whose ghost features best reproduce the plain
  model's own output at that layer, on a calibration batch from the training set.

The fit reads only the plain model's feature maps: a Ghost layer's intrinsic channels
stand for the plain layer's output at the intrinsic filters, so the candidates for ghost
position ``p`` are that output's channel ``p % c_i`` (per conv group) shifted by each
offset, compared by squared error with the plain output at ``p``. Each layer's pick is
thus independent of the others' (layers are processed in forward order all the same),
and a plain model whose ghost-position filters are shifted copies of the intrinsic ones
is matched exactly.

Margin. The chosen offset's logit is set to ``ln(K - 1)`` above the others (all 0), for
``K = (2d + 1)^2`` candidates: at noise scale 1, Gumbel-max then draws it half of the time
(``e^m / (e^m + K - 1) = 1/2``) and every other offset with probability ``1 / (2(K - 1))``,
so training still tries the others, and a logit gradient of that size moves the argmax.
As the schedule lowers the noise, the chosen offset is drawn ever more often.
"""
import math

import numpy as np
import torch
from basicsr.data import build_dataset

from ghostsr_plugin import ops
from ghostsr_plugin.archs import named_ghost_layers

ORIENTATIONS = ('fit', 'random', 'zero')
CALIBRATION_IMAGES = 8
CALIBRATION_SIZE = 48  # LR pixels: the centre crop of each calibration image


def margin(num_offsets):
    """Logit margin of a chosen offset among ``num_offsets`` (see the module docstring)."""
    return math.log(num_offsets - 1)


@torch.no_grad()
def set_orientation(layer, indices):
    """Make offset index ``indices[g]`` layer ``layer``'s argmax for every orientation group ``g``."""
    num_offsets = layer.logits.shape[-1]
    if num_offsets > 1:
        layer.logits.zero_()
        layer.logits[torch.arange(len(layer.logits)), torch.as_tensor(indices)] = margin(num_offsets)


def calibration_batch(dataset_opt, scale):
    """LR centre crops of ``CALIBRATION_IMAGES`` training images spread over the set, as (N, C, H, W).

    Read without the training augmentation (phase ``calibration``), so no random state is
    drawn. Crops are ``CALIBRATION_SIZE`` pixels square, or the smallest image's size.
    """
    dataset = build_dataset({**dataset_opt, 'phase': 'calibration', 'scale': scale})
    indices = np.unique(np.linspace(0, len(dataset) - 1, CALIBRATION_IMAGES).round().astype(int))
    images = [dataset[int(index)]['lq'] for index in indices]
    size = min(CALIBRATION_SIZE, *(min(lq.shape[-2:]) for lq in images))
    crops = []
    for lq in images:
        top, left = (lq.shape[-2] - size) // 2, (lq.shape[-1] - size) // 2
        crops.append(lq[:, top:top + size, left:left + size])
    return torch.stack(crops)


def _ghost_output(layer, x1, offsets):
    """The Ghost layer's output for intrinsic features ``x1`` and offsets (G, 2), per conv group."""
    groups = layer.primary.groups
    n, c, h, w = x1.shape
    out = ops.ghost_features(x1.reshape(n * groups, c // groups, h, w), layer.num_ghost // groups, offsets)
    return out.reshape(n, layer.out_channels, h, w)


def _orientation_group_of_channel(layer):
    """(c_out,) orientation group of each output channel; -1 for intrinsic positions."""
    conv_groups, num_groups = layer.primary.groups, layer.logits.shape[0]
    per_conv_group = layer.out_channels // conv_groups
    intrinsic = layer.primary.out_channels // conv_groups
    ghost_index = torch.arange(layer.out_channels) % per_conv_group - intrinsic
    return torch.where(ghost_index >= 0, ghost_index // ((per_conv_group - intrinsic) // num_groups), -1)


def candidate_errors(layer, intrinsic_maps, target):
    """(K, orientation groups): squared error of each offset's ghosts against ``target``, relative to its energy.

    Compared away from the border that the largest shift uncovers: on a small calibration
    crop, the zero-filled border would favour small offsets far more than on a real image.
    """
    table = ops.offset_table(layer.max_shift)
    d = layer.max_shift
    inner = (Ellipsis, slice(d, target.shape[-2] - d), slice(d, target.shape[-1] - d))
    target = target[inner]
    group_of = _orientation_group_of_channel(layer)
    num_groups = layer.logits.shape[0]
    errors = torch.empty(len(table), num_groups, dtype=torch.float64)
    for k, offset in enumerate(table):
        out = _ghost_output(layer, intrinsic_maps, offset.expand(num_groups, 2))[inner]
        per_channel = (out - target).double().square().sum((0, 2, 3))
        for g in range(num_groups):
            errors[k, g] = per_channel[group_of == g].sum()
    energy = torch.stack([target[:, group_of == g].double().square().sum() for g in range(num_groups)])
    return errors / energy.clamp_min(1e-12)


@torch.no_grad()
def fit_orientations(net, plain, choices, images):
    """Set every Ghost layer of ``net`` to its best-fitting offset; returns ``{path: (K, G) errors}``.

    ``plain``: the plain model (same module paths), ``choices``: the clustering's
    ``{path: IntrinsicChoice}``, ``images``: the calibration batch. A layer without ghost
    channels (``ratio: 1``) has no orientation to fit: it is left as it is, its errors None.
    """
    fits = dict.fromkeys(path for path, _ in named_ghost_layers(net))  # (in forward order)
    layers = {path: layer for path, layer in named_ghost_layers(net) if layer.num_ghost}
    if not layers:
        return fits
    outputs, hooks = {}, []
    for path in layers:
        hooks.append(plain.get_submodule(path).register_forward_hook(
            lambda module, args, out, path=path: outputs.__setitem__(path, out.clone())))  # later in-place ops
    try:
        plain.eval()(images.to(next(plain.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    for path, layer in layers.items():
        target = outputs.pop(path).to(layer.logits.device, layer.logits.dtype)
        intrinsic = target[:, torch.as_tensor(choices[path].intrinsic, device=target.device)]
        fits[path] = candidate_errors(layer, intrinsic, target)
        set_orientation(layer, fits[path].argmin(0))
    return fits


def set_zero_orientations(net):
    """Start every Ghost layer at offset (0, 0)."""
    for _, layer in named_ghost_layers(net):
        centre = (layer.logits.shape[-1] - 1) // 2
        set_orientation(layer, [centre] * layer.logits.shape[0])


def orientation_lines(fits):
    """One line per layer: the offset chosen and the fit error of every candidate."""
    lines = []
    for path, errors in fits.items():
        if errors is None:
            lines.append(f'{path}: no ghost channels (ratio 1), so no orientation to fit')
            continue
        layer_table = ops.offset_table(round((math.sqrt(errors.shape[0]) - 1) / 2)).tolist()
        for g, column in enumerate(errors.T):
            group = f' group {g}' if errors.shape[1] > 1 else ''
            candidates = ', '.join(f'{tuple(o)} {e:.3f}' for o, e in zip(layer_table, column.tolist()))
            lines.append(f'{path}{group}: orientation {tuple(layer_table[int(column.argmin())])}, '
                         f'relative fit error of each offset: {candidates}')
    return lines
