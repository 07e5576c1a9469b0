"""Choosing Ghost layers' orientations by the loss of every candidate offset.

The learned shift's gradient is a first-order guess at which offset lowers the loss; this
module measures it instead. ``candidate_losses`` gives, for one orientation group of one
layer, the loss on fixed batches with each of the ``(2d+1)^2`` offsets in turn, every
other layer as it is. ``search`` chooses layer by layer, group by group (each choice kept
for the next), and writes each choice into the logits (the chosen offset becomes the
argmax), so the rest of training, freezing and checkpoints need nothing new. Issue 28's
"search then train" recipe (``train.orientation_search``) and the ablation's analysis
(scripts/orientation_analysis.py) use it.
"""
import contextlib

import torch
from basicsr.data import build_dataset
from torch.utils.data import default_collate

from ghostsr_plugin import ops
from ghostsr_plugin.archs.ghost_layer import named_ghost_layers
from ghostsr_plugin.sample_seeds import SeededSamples

CALIBRATION_EPOCH = 2**32  # the calibration samples' own seeds: an epoch no training run reaches


def calibration_batches(dataset_opt, count, seed, device):
    """``count`` batches ``(lq, gt)`` of the training set ``dataset_opt`` describes, the same for a seed.

    Samples (crops, flips) are drawn as the training loader draws them, from their own seeds
    (``ghostsr_plugin.sample_seeds``), so making them changes no random state of the run.
    """
    dataset = build_dataset(dict(dataset_opt, phase='train'))
    size = dataset_opt['batch_size_per_gpu']
    indices = torch.randint(len(dataset), (count * size,), generator=torch.Generator().manual_seed(seed)).tolist()
    samples = SeededSamples(dataset, seed, 0)
    items = [samples[(CALIBRATION_EPOCH, position, index)] for position, index in enumerate(indices)]
    batches = [default_collate(items[b * size:(b + 1) * size]) for b in range(count)]
    return [(batch['lq'].to(device), batch['gt'].to(device)) for batch in batches]


@contextlib.contextmanager
def forced_offsets(layer, offsets):
    """Within the block, ``layer`` (not learning, or in eval) shifts its groups by ``offsets`` (G, 2)."""
    layer.offset = lambda: offsets  # the instance attribute shadows GhostConv2d.offset
    try:
        yield
    finally:
        del layer.offset


def mean_loss(net, batches, loss_fn):
    """The mean of ``loss_fn(net(lq), gt)`` over ``batches`` of ``(lq, gt)``, as a float."""
    return sum(float(loss_fn(net(lq), gt)) for lq, gt in batches) / len(batches)


@torch.no_grad()
def candidate_losses(net, layer, group, batches, loss_fn):
    """``((2d+1)^2,)`` losses of ``net`` with ``layer``'s orientation group ``group`` at each offset.

    ``net`` runs in eval mode (Ghost layers shift by their argmax offsets; the caller's mode
    is restored afterwards).
    """
    was_training = net.training
    net.eval()
    table = ops.offset_table(layer.max_shift, layer.logits.device)
    current = layer.offset().clone()
    losses = []
    try:
        for candidate in table:
            offsets = current.clone()
            offsets[group] = candidate
            with forced_offsets(layer, offsets):
                losses.append(mean_loss(net, batches, loss_fn))
    finally:
        net.train(was_training)
    return torch.tensor(losses)


@torch.no_grad()
def choose(layer, group, index, margin=1.0):
    """Make orientation ``index`` the argmax of ``layer``'s group ``group`` (by ``margin`` over the rest)."""
    scores = layer._scores(layer.logits[group])
    layer.logits[group, index] = scores.max() + margin  # positive, so |logit| is the largest too (abs_argmax)


def search(net, batches, loss_fn, also=()):
    """Greedy search, layer by layer and group by group, of the offset with the lowest loss on ``batches``.

    Each choice is written into the logits of ``net``'s layer and of the same layer of each
    network in ``also`` (an EMA copy). Returns one record per layer:
    ``{'layer', 'before', 'after', 'losses'}`` (offsets as lists, losses per group and offset).
    """
    twins = [dict(named_ghost_layers(other)) for other in also]
    records = []
    for name, layer in named_ghost_layers(net):
        if layer.frozen or layer.num_ghost == 0:
            continue
        before, losses = layer.offset().tolist(), []
        for group in range(layer.logits.shape[0]):
            group_losses = candidate_losses(net, layer, group, batches, loss_fn)
            best = int(group_losses.argmin())
            for target in [layer] + [twin[name] for twin in twins]:
                choose(target, group, best)
            losses.append(group_losses.tolist())
        records.append({'layer': name, 'before': before, 'after': layer.offset().tolist(), 'losses': losses})
    return records
