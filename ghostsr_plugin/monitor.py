"""Watching the learned shifts settle, per Ghost layer, over training.

Two orientations are tracked: the *argmax* of the logits (what eval uses and what
freezing keeps) and the *sampled* one the training forward drew under the Gumbel noise.
With annealed noise the sampled orientation settles onto the argmax; under constant
noise it keeps changing.
"""
from collections import Counter

import torch

from ghostsr_plugin.archs.ghost_layer import named_shift_layers


def format_offsets(offsets):
    """Offsets ``[[dy, dx], ...]`` as ``'(dy, dx) (dy, dx) ...'``, as the logs and ``ghostsr freeze`` print them."""
    return ' '.join(str(tuple(offset)) for offset in offsets)


def orientation_histogram(net):
    """How many orientation groups of ``net`` use each (dy, dx), most used first."""
    counts = Counter()
    for _, layer in named_shift_layers(net):
        counts.update(tuple(offset) for offset in layer.offset().tolist())
    return counts.most_common()


def argmax_orientations(layers):
    """Every layer's argmax orientation index, concatenated over the layers' groups.

    One argmax over the concatenated logits when the layers share their number of offsets and
    their rule (``abs_argmax``), as a network's usually do: a few ops however many layers.
    """
    if not layers:
        return torch.zeros(0, dtype=torch.long)
    rules = {(layer.logits.shape[-1], layer.abs_argmax) for layer in layers if not layer.frozen}
    if len(rules) != 1 or any(layer.frozen for layer in layers):
        return torch.cat([layer.orientation() for layer in layers])
    logits = torch.cat([layer.logits.detach() for layer in layers])
    return (logits.abs() if layers[0].abs_argmax else logits).argmax(-1)


class _ChangeTracker:
    """Per layer: changes of an orientation since the last report, and when it last changed.

    The orientations of all layers' groups travel as one tensor (``layer_of`` says whose each
    group is), so an update is a few ops whatever the number of layers; the counters stay on
    the layers' device, so updating them never synchronizes.
    """

    def __init__(self, initial, layer_of, num_layers):
        self.current, self.layer_of = initial, layer_of
        self.changes = torch.zeros(num_layers, dtype=torch.long, device=initial.device)
        self.last_change = torch.zeros(num_layers, dtype=torch.long, device=initial.device)

    def update(self, orientations, current_iter):
        changed = torch.zeros_like(self.changes).index_add_(0, self.layer_of, (orientations != self.current).long()) > 0
        self.changes += changed
        self.last_change = torch.where(changed, current_iter, self.last_change)
        self.current = orientations

    def take_changes(self):
        """Changes per layer since the last call."""
        counts = self.changes.tolist()
        self.changes.zero_()
        return counts

    def changed_after(self, iteration):
        return (self.last_change > iteration).tolist()


class OrientationMonitor:
    """Tracks every Ghost layer's argmax and sampled orientations of ``net``."""

    def __init__(self, net):
        named = named_shift_layers(net)
        self.names, self.layers = [name for name, _ in named], [layer for _, layer in named]
        initial = argmax_orientations(self.layers)
        groups = [layer.orientation().numel() for layer in self.layers]
        layer_of = torch.repeat_interleave(torch.arange(len(groups)), torch.tensor(groups, dtype=torch.long))
        layer_of = layer_of.to(initial.device)
        self.argmax = _ChangeTracker(initial, layer_of, len(groups))
        self.sampled = _ChangeTracker(initial, layer_of, len(groups))

    def update(self, current_iter):
        """After an optimizer step: record both orientations of every layer."""
        if not self.layers:
            return
        self.argmax.update(argmax_orientations(self.layers), current_iter)
        used = [layer.last_sampled if layer.learn_orientation and layer.last_sampled is not None
                else layer.orientation() for layer in self.layers]
        self.sampled.update(torch.cat(used), current_iter)

    def report(self):
        """Per layer ``(name, argmax offsets, argmax changes, sampled changes)`` since the last report."""
        return list(zip(self.names, [layer.offset().tolist() for layer in self.layers],
                        self.argmax.take_changes(), self.sampled.take_changes()))

    def settling(self, iteration):
        """Names of the layers whose argmax, and whose sampled, orientation changed after ``iteration``."""
        return {kind: [n for n, changed in zip(self.names, tracker.changed_after(iteration)) if changed]
                for kind, tracker in (('argmax', self.argmax), ('sampled', self.sampled))}
