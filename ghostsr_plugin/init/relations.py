"""Which earlier Ghost layers feed each Ghost layer's input channels, traced (for clustering's index screening).

The trace (``ghostsr_plugin.archs.conv_graph``) follows channels through activations,
scaling by numbers, concatenations and channel slices; a residual sum, a channel-attention
product, a pixel shuffle or an unknown op makes channels that no single layer's output
stands for. A Ghost layer's input is then stated in channel order, as the screening reads it:

* a Ghost layer's module path: all of that layer's output channels (a concatenation lists
  several), when that layer comes earlier in forward order and is not a group conv (a
  group conv lays its output out per conv group);
* an int: that many channels from anything else, kept as they are;
* ``None`` instead of a list: nothing to screen (a group conv's input is never screened:
  its groups read fixed input channels).

Ghost layers the trace cannot follow are listed apart with the reason.
"""
from dataclasses import dataclass

from ghostsr_plugin.archs import named_ghost_layers
from ghostsr_plugin.archs.conv_graph import trace_convs


@dataclass
class Relations:
    """Ghost layer paths in forward order (then the untraced ones), their input sources, the untraced ones' reasons."""

    order: list
    sources: dict
    untraced: dict


def _sources(segments, layers, earlier):
    stated = []
    for source, width in segments:
        if source in earlier and layers[source].primary.groups == 1:
            stated.append(source)
        elif stated and isinstance(stated[-1], int):
            stated[-1] += width
        else:
            stated.append(width)
    return stated if any(isinstance(s, str) for s in stated) else None


def trace_relations(net):
    """The Relations of every Ghost layer of ``net``."""
    layers = dict(named_ghost_layers(net))
    graph = trace_convs(net)
    order, sources, untraced = [], {}, {}
    for path in [p for p in graph.order if p in layers] + [p for p in layers if p not in graph.order]:
        layer = layers[path]
        segments = graph.input_segments(path, layer.primary.in_channels)
        if path in graph.untraced or segments is None:
            untraced[path] = graph.untraced.get(path) or (
                f'the trace cannot tell which channels make its {layer.primary.in_channels} input channels')
            sources[path] = None
        else:
            sources[path] = None if layer.primary.groups > 1 else _sources(segments, layers, set(order))
        order.append(path)
    return Relations(order, sources, untraced)
