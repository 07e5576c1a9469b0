"""How a network's convs are wired, found by tracing its forward with torch.fx.

Both the conversion of a plain arch (which convs are its body: not the first, not the last,
not its upsampler) and the clustering init (which earlier Ghost layers feed a Ghost layer's
input channels) need the wiring between convs, and neither may be written per arch. The
trace makes every conv (``nn.Conv2d``, Ghost layer) a leaf, and every module without a conv
inside (a transformer block, a norm, an activation), so shape-dependent code inside those
never reaches the tracer. Each traced value carries:

* its channels, as segments in channel order: ``(conv path, width)`` where the channels are
  that conv's whole output through channel-wise ops only (activations, scaling by a number,
  padding, interpolation, pooling, concatenation, channel slicing), ``(None, width)`` for
  anything else (a sum of two features, a pixel shuffle, an unknown op); a width the trace
  cannot tell is ``None``, filled in where a conv reads it;
* the convs whose output reaches it with no conv in between (and ``INPUT``, the network input);
* whether it comes after an upsampling op.

A module the tracer cannot follow (control flow on values) is traced as one opaque step, and
its convs are listed in ``untraced``; a network that cannot be traced at all has every conv
there.
"""
import operator
from dataclasses import dataclass, field

from torch import fx, nn

from .ghost_layer import GhostConv2d, named_ghost_layers

INPUT = '<input>'
CONVS = (nn.Conv2d, GhostConv2d)

# Module types and op names by what they do to channels.
CHANNELWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
                       nn.Tanh, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AvgPool2d, nn.MaxPool2d,
                       nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.ZeroPad2d, nn.ReflectionPad2d,
                       nn.ReplicationPad2d)
GATE_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softmax)
CHANNELWISE_OPS = {'relu', 'relu6', 'leaky_relu', 'prelu', 'elu', 'gelu', 'silu', 'mish', 'hardswish', 'tanh',
                   'dropout', 'dropout2d', 'clone', 'contiguous', 'float', 'half', 'bfloat16', 'detach', 'pad',
                   'neg', 'avg_pool2d', 'max_pool2d', 'adaptive_avg_pool2d', 'adaptive_max_pool2d', 'to'}
GATE_OPS = {'sigmoid', 'hardsigmoid', 'softmax'}
ARITHMETIC_OPS = {'add', 'sub', 'mul', 'truediv', 'div', 'iadd', 'isub', 'imul', 'itruediv', 'radd', 'rsub', 'rmul'}
UPSAMPLING_OPS = {'interpolate', 'upsample', 'upsample_nearest', 'upsample_bilinear'}
SHAPE_OPS = {'size', 'dim', 'getattr', 'numel'}
CAT_OPS = {'cat', 'concat', 'concatenate'}


@dataclass(frozen=True)
class Flow:
    """A traced feature value: its channel segments, the convs reaching it, whether it is upsampled."""

    segments: tuple
    reach: frozenset
    upsampled: bool = False

    @property
    def width(self):
        widths = [w for _, w in self.segments]
        return None if None in widths else sum(widths)


def _mixed(flows, width=None, upsampled=False):
    """Anything else made of ``flows``: one unknown segment, reached by all that reaches them."""
    return Flow(((None, width),), frozenset().union(*(f.reach for f in flows)),
                upsampled or any(f.upsampled for f in flows))


@dataclass
class ConvGraph:
    """The traced wiring of a network's convs (paths as in ``named_modules``).

    Attributes:
        order: conv paths in the order of their first call.
        inputs: conv path -> the Flows it is called on (one per call).
        reads_input / writes_output: convs reached from the network input / reaching its output with no conv between.
        feeds_upsampling: convs whose output reaches an upsampling op (pixel shuffle, interpolation,
            transposed conv) with no conv between; feeds_gate: the same for a sigmoid or softmax.
        untraced: conv path -> why the trace could not follow it.
        failure: why the network cannot be traced at all (every conv is then untraced), or None.
    """

    order: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    reads_input: set = field(default_factory=set)
    writes_output: set = field(default_factory=set)
    feeds_upsampling: set = field(default_factory=set)
    feeds_gate: set = field(default_factory=set)
    untraced: dict = field(default_factory=dict)
    failure: str = None

    def upsampled(self, path):
        """Whether conv ``path`` reads features that went through an upsampling op."""
        return any(flow.upsampled for flow in self.inputs.get(path, ()))

    def input_segments(self, path, in_channels):
        """The segments of conv ``path``'s input with every width known, or None when they do not add up.

        A conv called more than once (a shared module) on differently made inputs has one
        unknown segment.
        """
        resolved = {_resolve(flow.segments, in_channels) for flow in self.inputs.get(path, ())}
        if None in resolved or not resolved:
            return None
        return resolved.pop() if len(resolved) == 1 else ((None, in_channels),)


def _resolve(segments, in_channels):
    known = sum(w for _, w in segments if w is not None)
    unknown = [i for i, (_, w) in enumerate(segments) if w is None]
    if len(unknown) > 1 or (not unknown and known != in_channels) or (unknown and known >= in_channels):
        return None
    segments = list(segments)
    for i in unknown:
        segments[i] = (segments[i][0], in_channels - known)
    return _merge(segments)


def _merge(segments):
    """Adjacent unknown-source segments as one."""
    merged = []
    for source, width in segments:
        if merged and source is None and merged[-1][0] is None and width is not None and merged[-1][1] is not None:
            merged[-1] = (None, merged[-1][1] + width)
        else:
            merged.append((source, width))
    return tuple(merged)


def named_convs(module):
    """``(path, conv)`` of the convs the trace sees: Ghost layers and the plain convs outside them."""
    ghost = [name for name, _ in named_ghost_layers(module)]
    return [(name, m) for name, m in module.named_modules() if isinstance(m, CONVS)
            and not any(name.startswith(f'{g}.') for g in ghost)]


def _has_conv(module):
    return any(isinstance(m, CONVS) for m in module.modules())


class _Tracer(fx.Tracer):
    """Convs and conv-free modules as leaves, plus the modules made opaque after a failed trace."""

    def __init__(self, opaque):
        super().__init__()
        self.opaque, self.failed_in = opaque, None

    def is_leaf_module(self, module, qualified_name):
        return qualified_name in self.opaque or isinstance(module, CONVS) or not _has_conv(module)

    def call_module(self, module, forward, args, kwargs):
        try:
            return super().call_module(module, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module the error came through
                self.failed_in = self.path_of_module(module)
            raise


def _trace(net):
    """``(graph, {opaque module path: error})``; graph None when even the top level cannot be traced.

    Tracing runs ``forward`` on proxies, and a forward that assigns to its module (BasicSR's
    RCAN and SwinIR set ``self.mean``) would keep a proxy: every module's attributes are
    restored afterwards.
    """
    opaque, saved = {}, [(m, dict(m.__dict__)) for m in net.modules()]
    while True:
        tracer = _Tracer(opaque)
        try:
            return tracer.trace(net), opaque
        except Exception as err:  # any error of the user's forward: the trace reports it
            if not tracer.failed_in or tracer.failed_in in opaque:
                opaque[''] = f'{type(err).__name__}: {err}'
                return None, opaque
            opaque[tracer.failed_in] = f'{type(err).__name__}: {err}'
        finally:
            for module, attributes in saved:
                module.__dict__.clear()
                module.__dict__.update(attributes)


def _op_name(node):
    name = node.target if isinstance(node.target, str) else getattr(node.target, '__name__', '')
    return name.strip('_')


def _flows_in(value):
    """Every Flow in a (nested) argument."""
    if isinstance(value, Flow):
        return [value]
    if isinstance(value, (list, tuple)):
        return [f for v in value for f in _flows_in(v)]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _flows_in(v)]
    return []


def _slice_channels(flow, index):
    """``flow[index]`` over channels, for a slice with known widths."""
    if index == slice(None):
        return flow
    if flow.width is None:
        return _mixed([flow])
    start, stop, step = index.indices(flow.width)
    if step != 1:
        return _mixed([flow], len(range(start, stop, step)))
    segments, offset = [], 0
    for source, width in flow.segments:
        lo, hi = max(start, offset), min(stop, offset + width)
        if lo < hi:
            segments.append((source if (lo, hi) == (offset, offset + width) else None, hi - lo))
        offset += width
    return Flow(_merge(segments) or ((None, 0),), flow.reach, flow.upsampled)


def _getitem(value, index):
    if isinstance(value, tuple):  # the parts of a split or chunk
        return value[index] if isinstance(index, int) else None
    if not isinstance(value, Flow):
        return None
    index = index if isinstance(index, tuple) else (index,)
    if all(i == slice(None) for i in index):
        return value
    if len(index) >= 2 and index[0] == slice(None) and isinstance(index[1], slice):
        return _slice_channels(value, index[1])  # a spatial crop besides keeps the channels
    return _mixed([value])


def _split(flow, sizes):
    """The parts of ``flow`` split over channels into ``sizes``."""
    bounds, parts = 0, []
    for size in sizes:
        parts.append(_slice_channels(flow, slice(bounds, bounds + size)))
        bounds += size
    return tuple(parts)


class _Propagation:
    """Walks the traced graph once, computing each node's Flow and the ConvGraph's sets."""

    def __init__(self, net, graph):
        self.modules = dict(net.named_modules())
        self.graph = graph
        self.result = ConvGraph()
        self.values = {}

    def run(self):
        placeholders = 0
        for node in self.graph.nodes:
            if node.op == 'placeholder':
                value = Flow(((None, None),), frozenset({INPUT})) if placeholders == 0 else None
                placeholders += 1
            elif node.op == 'output':
                self.result.writes_output |= {p for f in _flows_in(self.arg(node.args)) for p in f.reach} - {INPUT}
                continue
            elif node.op == 'get_attr':
                value = None
            elif node.op == 'call_module':
                value = self.call_module(node)
            else:
                value = self.call_op(node)
            self.values[node] = value
        return self.result

    def arg(self, value):
        return fx.node.map_arg(value, lambda n: self.values.get(n))

    def call_module(self, node):
        module = self.modules[node.target]
        flows = _flows_in(self.arg((node.args, node.kwargs)))
        if not flows:
            return None
        if isinstance(module, CONVS):
            path = node.target
            if path not in self.result.inputs:
                self.result.order.append(path)
                self.result.inputs[path] = []
            self.result.inputs[path].append(flows[0])
            if INPUT in flows[0].reach:
                self.result.reads_input.add(path)
            return Flow(((path, module.out_channels),), frozenset({path}), flows[0].upsampled)
        if isinstance(module, CHANNELWISE_MODULES) and len(flows) == 1:
            return flows[0]
        if isinstance(module, GATE_MODULES):
            self.result.feeds_gate.update(p for f in flows for p in f.reach)
            return _mixed(flows, flows[0].width)
        if isinstance(module, nn.Upsample):
            self.result.feeds_upsampling.update(flows[0].reach)
            return Flow(flows[0].segments, flows[0].reach, True)
        if isinstance(module, (nn.PixelShuffle, nn.ConvTranspose2d)):
            self.result.feeds_upsampling.update(p for f in flows for p in f.reach)
            width = module.out_channels if isinstance(module, nn.ConvTranspose2d) else (
                None if flows[0].width is None else flows[0].width // module.upscale_factor ** 2)
            return _mixed(flows, width, upsampled=True)
        if isinstance(module, nn.PixelUnshuffle):
            width = None if flows[0].width is None else flows[0].width * module.downscale_factor ** 2
            return _mixed(flows, width)
        inside = {f'{node.target}.{name}' for name, _ in named_convs(module)}
        return Flow(((None, None),), frozenset().union(inside, *(f.reach for f in flows)),
                    any(f.upsampled for f in flows))

    def call_op(self, node):
        name = _op_name(node)
        args = self.arg(node.args)
        kwargs = self.arg(node.kwargs)
        if node.target is operator.getitem:
            return _getitem(args[0], args[1])
        if name in SHAPE_OPS:
            return None
        if name in ('type_as', 'to') and args and not isinstance(args[0], Flow):
            return None  # a constant cast like a feature (BasicSR's ``self.mean.type_as(x)``)
        flows = _flows_in((args, kwargs))
        if not flows:
            return None
        first = args[0] if args else None
        if name in CHANNELWISE_OPS and isinstance(first, Flow):
            return first
        if name in GATE_OPS:
            self.result.feeds_gate.update(p for f in flows for p in f.reach)
            return _mixed(flows, flows[0].width)
        if name in UPSAMPLING_OPS:
            self.result.feeds_upsampling.update(flows[0].reach)
            return Flow(flows[0].segments, flows[0].reach, True)
        if name in ('pixel_shuffle', 'conv_transpose2d'):
            self.result.feeds_upsampling.update(p for f in flows for p in f.reach)
            return _mixed(flows, upsampled=True)
        if name in ARITHMETIC_OPS:
            operands = args[:2]
            features = [a for a in operands if isinstance(a, Flow)]
            numbers = [a for a in operands if isinstance(a, (int, float))]
            if len(features) == 1 and len(numbers) == 1:
                return features[0]  # scaled or shifted by a number: channel by channel
            widths = {f.width for f in features} - {None}
            return _mixed(flows, widths.pop() if len(widths) == 1 else None)
        if name in CAT_OPS:
            return self.cat(args, kwargs, flows)
        if name in ('split', 'chunk') and isinstance(first, Flow):
            return self.split(name, args, kwargs, first)
        return _mixed(flows)

    def cat(self, args, kwargs, flows):
        parts = args[0] if args else kwargs.get('tensors', ())
        dim = args[1] if len(args) > 1 else kwargs.get('dim', 0)
        if dim in (1, -3) and all(isinstance(p, Flow) for p in parts):
            segments = tuple(s for p in parts for s in p.segments)
            return Flow(_merge(segments), frozenset().union(*(p.reach for p in parts)), any(p.upsampled for p in parts))
        return _mixed(flows)

    def split(self, name, args, kwargs, flow):
        sizes = args[1] if len(args) > 1 else kwargs.get('split_size_or_sections', kwargs.get('chunks'))
        dim = args[2] if len(args) > 2 else kwargs.get('dim', 0)
        if dim not in (1, -3) or flow.width is None or not isinstance(sizes, (int, list, tuple)):
            return None
        if name == 'chunk':
            sizes = -(-flow.width // sizes)
        if isinstance(sizes, int):
            sizes = [min(sizes, flow.width - start) for start in range(0, flow.width, sizes)]
        return _split(flow, sizes)


def trace_convs(net):
    """The ConvGraph of ``net`` (any ``nn.Module`` whose forward takes the image first)."""
    graph, opaque = _trace(net)
    result = _Propagation(net, graph).run() if graph is not None else ConvGraph(failure=opaque[''])
    for path, _ in named_convs(net):
        opaque_in = [m for m in opaque if not m or path == m or path.startswith(f'{m}.')]
        if opaque_in:
            result.untraced[path] = (f"'{opaque_in[0] or type(net).__name__}' cannot be traced "
                                     f'({opaque[opaque_in[0]]})')
        elif path not in result.inputs:
            result.untraced[path] = 'the traced forward does not call it'
    return result
