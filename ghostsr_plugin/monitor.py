"""Watching the learned shifts settle: each Ghost layer's argmax orientation over training."""
from collections import Counter

import torch

from ghostsr_plugin.archs.ghost_layer import named_ghost_layers


def orientation_histogram(net):
    """How many orientation groups of ``net`` use each (dy, dx), most used first."""
    counts = Counter()
    for _, layer in named_ghost_layers(net):
        counts.update(tuple(offset) for offset in layer.offset().tolist())
    return counts.most_common()


class OrientationMonitor:
    """Counts, per layer, how often the argmax orientation changed, and when it last did.

    ``update`` runs every iteration without synchronizing the device; ``report`` reads
    the counters at BasicSR's print frequency and resets the flip counts.
    """

    def __init__(self, net):
        named = named_ghost_layers(net)
        self.names, self.layers = [name for name, _ in named], [layer for _, layer in named]
        self.current = [layer.orientation().clone() for layer in self.layers]
        self.flips = [torch.zeros((), dtype=torch.long, device=o.device) for o in self.current]
        self.last_change = [torch.zeros((), dtype=torch.long, device=o.device) for o in self.current]

    def update(self, current_iter):
        for i, layer in enumerate(self.layers):
            new = layer.orientation()
            changed = (new != self.current[i]).any()
            self.flips[i] += changed
            self.last_change[i] = torch.where(changed, current_iter, self.last_change[i])
            self.current[i] = new

    def report(self):
        """Per layer ``(name, offsets, flips since the last report)``; resets the flip counts."""
        rows = [(name, layer.offset().tolist(), int(flips))
                for name, layer, flips in zip(self.names, self.layers, self.flips)]
        for flips in self.flips:
            flips.zero_()
        return rows

    def layers_changed_since(self, iteration):
        """Names of the layers whose orientation changed after ``iteration``."""
        return [name for name, last in zip(self.names, self.last_change) if int(last) > iteration]
