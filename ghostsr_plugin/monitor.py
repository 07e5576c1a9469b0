"""Watching the learned shifts settle, per Ghost layer, over training.

Two orientations are tracked: the *argmax* of the logits (what eval uses and what
freezing keeps) and the *sampled* one the training forward drew under the Gumbel noise.
With annealed noise the sampled orientation settles onto the argmax; under constant
noise it keeps changing.
"""
from collections import Counter

import torch

from ghostsr_plugin.archs.ghost_layer import named_ghost_layers


def format_offsets(offsets):
    """Offsets ``[[dy, dx], ...]`` as ``'(dy, dx) (dy, dx) ...'``, as the logs and ``ghostsr freeze`` print them."""
    return ' '.join(str(tuple(offset)) for offset in offsets)


def orientation_histogram(net):
    """How many orientation groups of ``net`` use each (dy, dx), most used first."""
    counts = Counter()
    for _, layer in named_ghost_layers(net):
        counts.update(tuple(offset) for offset in layer.offset().tolist())
    return counts.most_common()


class _ChangeTracker:
    """Per layer: changes of an orientation since the last report, and when it last changed.

    Counters stay on the layers' device, so updating them never synchronizes.
    """

    def __init__(self, initial):
        self.current = list(initial)
        self.changes = [torch.zeros((), dtype=torch.long, device=o.device) for o in initial]
        self.last_change = [torch.zeros((), dtype=torch.long, device=o.device) for o in initial]

    def update(self, orientations, current_iter):
        for i, new in enumerate(orientations):
            changed = (new != self.current[i]).any()
            self.changes[i] += changed
            self.last_change[i] = torch.where(changed, current_iter, self.last_change[i])
            self.current[i] = new

    def take_changes(self):
        """Changes per layer since the last call."""
        counts = [int(c) for c in self.changes]
        for c in self.changes:
            c.zero_()
        return counts

    def changed_after(self, iteration):
        return [int(last) > iteration for last in self.last_change]


class OrientationMonitor:
    """Tracks every Ghost layer's argmax and sampled orientations of ``net``."""

    def __init__(self, net):
        named = named_ghost_layers(net)
        self.names, self.layers = [name for name, _ in named], [layer for _, layer in named]
        self.argmax = _ChangeTracker([layer.orientation() for layer in self.layers])
        self.sampled = _ChangeTracker([layer.orientation() for layer in self.layers])

    def update(self, current_iter):
        """After an optimizer step: record both orientations of every layer."""
        self.argmax.update([layer.orientation() for layer in self.layers], current_iter)
        used = [layer.last_sampled if layer.learn_orientation and layer.last_sampled is not None
                else layer.orientation() for layer in self.layers]
        self.sampled.update(used, current_iter)

    def report(self):
        """Per layer ``(name, argmax offsets, argmax changes, sampled changes)`` since the last report."""
        return list(zip(self.names, [layer.offset().tolist() for layer in self.layers],
                        self.argmax.take_changes(), self.sampled.take_changes()))

    def settling(self, iteration):
        """Names of the layers whose argmax, and whose sampled, orientation changed after ``iteration``."""
        return {kind: [n for n, changed in zip(self.names, tracker.changed_after(iteration)) if changed]
                for kind, tracker in (('argmax', self.argmax), ('sampled', self.sampled))}
