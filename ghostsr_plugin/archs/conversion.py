"""Which convs of a plain network a wrapper arch converts, the conversion itself, and the wrappers.

One mechanism for every layer kind (docs/any_arch.md, docs/peers.md): a *layer kind* is a
module class that can stand in for a conv (``GhostConv2d``, ``AdderConv2d``): it names itself
(``KIND``), builds itself from the conv it replaces (``from_conv``) and may refuse a conv
(``refuses(conv)``). A *wrapper* arch (``Ghost``, ``Adder``: :func:`conversion_wrapper`) takes
a plain network section (``base``), the convs to convert (``convert``) and the layer kind's
options; the body rule, the patterns, the checks and the trace below are the same for all.

``convert: body`` is the paper's rule: every conv of the network's body, i.e. every
``nn.Conv2d`` that

1. has a square odd kernel of 3 or more, stride 1, dilation 1, groups 1, 'same' zero
   padding, and is one the layer kind can stand in for (a Ghost layer: at least 2 output
   channels, so that a shift can stand in for part of it);
2. sits inside a block: an element of an ``nn.Sequential``, ``nn.ModuleList`` or
   ``nn.ModuleDict`` holds it, the element not being the conv itself (EDSR's residual
   blocks, RDN's dense blocks, RCAN's groups); single convs of the top level (EDSR's
   ``conv_after_body``) and upsamplers built of bare convs stay plain;
3. by the trace (:mod:`.conv_graph`): does not read the network input with no conv in
   between (the first conv), does not reach the output with no conv in between (the last),
   does not feed an upsampling op (pixel shuffle, interpolation) or a gate (sigmoid,
   softmax: attention) before another conv, does not read upsampled features, and is not
   inside a module whose class name says attention (``Attention``, ``Attn``), nor inside a
   module the trace cannot follow.

A list of module-name patterns (``fnmatch``: ``*`` matches across dots) picks the convs
instead; each pattern must match a conv, and each matched conv must have a square odd
kernel, stride 1, dilation 1 and 'same' zero padding (group convs are converted per group,
where the layer kind takes them).

Converting keeps module paths: the layer at path ``P`` replaces the conv at ``P``, built by
the layer kind's ``from_conv`` (a Ghost layer's real conv ``P.primary`` starts from the plain
conv's first filters, see ``GhostConv2d.from_conv``).
"""
import copy
import fnmatch
import re

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ghostsr_plugin.errors import ArgumentError
from ghostsr_plugin.registration import register

from .conv_graph import named_convs, trace_convs

BODY = 'body'
BLOCK_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
ATTENTION_NAME = re.compile('attention|attn', re.IGNORECASE)
WRAPPERS = {}  # wrapper arch function -> (its layer kind, its option ranges), see conversion_wrapper


class ConversionError(ArgumentError):
    """A network or conv that cannot be converted; ``option`` is the wrapper's option at fault, if any."""


def describe(conv):
    """``Conv2d 64->64 3x3`` and whatever differs from a plain 'same' conv."""
    extras = [f'{name}={value}' for name, value, plain in (
        ('stride', conv.stride, (1, 1)), ('dilation', conv.dilation, (1, 1)), ('groups', conv.groups, 1),
        ('padding', conv.padding, tuple(k // 2 for k in conv.kernel_size)), ('padding_mode', conv.padding_mode,
                                                                            'zeros')) if value != plain]
    kernel = 'x'.join(map(str, conv.kernel_size))
    return f"Conv2d {conv.in_channels}->{conv.out_channels} {kernel}{', ' + ', '.join(extras) if extras else ''}"


def unconvertible(conv, kind):
    """Why a layer of ``kind`` cannot stand in for ``conv``, or None."""
    if type(conv) is not nn.Conv2d:
        return f'{type(conv).__name__} is not an nn.Conv2d'
    k, other = conv.kernel_size
    padding = conv.padding if conv.padding != 'same' else (k // 2, other // 2)
    if k != other or k % 2 == 0:
        return f'the {kind.KIND} layer needs a square kernel of odd size'
    if conv.stride != (1, 1) or conv.dilation != (1, 1):
        return f'the {kind.KIND} layer needs stride 1 and dilation 1'
    if padding != (k // 2, k // 2) or conv.padding_mode != 'zeros':
        return f"the {kind.KIND} layer needs 'same' zero padding (padding kernel_size // 2)"
    return kind.refuses(conv)


def _in_block(net, path):
    """Whether a container on ``path`` holds the conv inside one of its elements (not as an element itself)."""
    parts = path.split('.')
    return any(isinstance(net.get_submodule('.'.join(parts[:depth])), BLOCK_CONTAINERS)
               for depth in range(len(parts) - 1))


def _in_attention(net, path):
    parts = path.split('.')
    return any(ATTENTION_NAME.search(type(net.get_submodule('.'.join(parts[:depth]))).__name__)
               for depth in range(1, len(parts)))


def body_convs(net, kind):
    """The paths of ``net``'s body convs (the module docstring's rule) that ``kind`` can stand in for."""
    graph = trace_convs(net)
    if graph.failure:
        raise ConversionError(f'{type(net).__name__} cannot be traced ({graph.failure}); convert: {BODY} needs '
                              'the trace to tell the body '
                              'from the first and last convs and the upsampler: name the convs to convert with '
                              'module-name patterns', option='convert')
    selected, excluded = [], graph.reads_input | graph.writes_output | graph.feeds_upsampling | graph.feeds_gate
    for path, conv in named_convs(net):  # (a conv the trace did not reach is untraced)
        if (unconvertible(conv, kind) is None and conv.kernel_size[0] >= 3 and conv.groups == 1
                and _in_block(net, path) and path not in graph.untraced and not _in_attention(net, path)
                and path not in excluded and not graph.upsampled(path)):
            selected.append(path)
    if not selected:
        raise ConversionError(f'{type(net).__name__} has no body conv by the rule of convert: {BODY} (see '
                              'docs/any_arch.md); name the convs to convert with module-name patterns',
                              option='convert')
    return selected


def matching_convs(net, patterns, kind):
    """The paths of ``net``'s convs that match any of ``patterns``, in module order."""
    convs = named_convs(net)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(path, pattern) for path, _ in convs):
            names = [path for path, _ in convs]
            listed = ', '.join(names[:8]) + (f', ... ({len(names)} convs)' if len(names) > 8 else '')
            raise ConversionError(f"pattern '{pattern}' matches no conv of {type(net).__name__}; its convs: "
                                  f'{listed or "none"}', option='convert')
    selected = [(path, conv) for path, conv in convs if any(fnmatch.fnmatchcase(path, p) for p in patterns)]
    for path, conv in selected:
        reason = unconvertible(conv, kind)
        if reason:
            raise ConversionError(f"cannot convert '{path}' ({describe(conv)}): {reason}", option='convert')
    return [path for path, _ in selected]


def layer_kinds():
    """The layer kinds of every registered wrapper."""
    return [kind for kind, _ in WRAPPERS.values()]


def select_convs(net, convert, kind):
    """The convs ``convert`` names (``'body'`` or module-name patterns) that ``kind`` stands in for, checked."""
    converted = next((k for k in layer_kinds() for m in net.modules() if isinstance(m, k)), None)
    if converted is not None:
        raise ConversionError(f'{type(net).__name__} already has {converted.KIND} layers; convert its plain arch',
                              option='base')
    if convert == BODY:
        return body_convs(net, kind)
    patterns = [convert] if isinstance(convert, str) else convert
    if not isinstance(patterns, (list, tuple)) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise ConversionError(f"expected '{BODY}' or a list of module-name patterns, found {convert!r}",
                              option='convert')
    return matching_convs(net, patterns, kind)


def convert_convs(net, paths, kind, **options):
    """Replace the convs at ``paths`` of ``net`` by ``kind.from_conv(conv, **options)``, in place."""
    aliases = {}
    for path, module in net.named_modules(remove_duplicate=False):
        aliases.setdefault(id(module), []).append(path)
    for path in paths:
        conv = net.get_submodule(path)
        try:
            layer = kind.from_conv(conv, **options)
        except ValueError as err:
            raise ConversionError(f"cannot convert '{path}' ({describe(conv)}): {err}") from None
        for alias in aliases[id(conv)]:
            parent, _, name = alias.rpartition('.')
            setattr(net.get_submodule(parent), name, layer)
    return net


def convert_network(kind, base, convert=BODY, **options):
    """The network of the section ``base`` with the convs ``convert`` names as layers of ``kind``."""
    base = dict(base)
    arch = ARCH_REGISTRY.get(base.pop('type'))
    if arch in WRAPPERS:
        raise ConversionError(f'base is itself a wrapper ({arch.__name__}); give the plain arch',
                              option='base')
    net = arch(**base)
    return convert_convs(net, select_convs(net, convert, kind), kind, **options)


def conversion_wrapper(kind, ranges=()):
    """Decorator registering a wrapper arch of ``kind`` (its signature: ``base``, the layer's options, ``convert``).

    ``ranges``: ``(option, valid(value), 'what is expected')`` for the option check, beyond the
    types the option check reads from the defaults.
    """
    def decorate(wrapper):
        WRAPPERS[wrapper] = (kind, tuple(ranges))
        return register(ARCH_REGISTRY)(wrapper)

    return decorate


def wrapper_of(network_opt):
    """The wrapper arch of a network section, or None for any other arch."""
    arch = network_opt.get('type')
    wrapper = ARCH_REGISTRY.get(arch) if arch in ARCH_REGISTRY else None
    return wrapper if wrapper in WRAPPERS else None


def base_section(network_opt):
    """The plain arch's section of a wrapper's network section (its ``base``), or None for any other arch."""
    return network_opt['base'] if wrapper_of(network_opt) else None


def upscale_factor(network_opt):
    """The scale of a network section: its (or its base's) ``upscale`` or ``scale`` argument, or None."""
    section = base_section(network_opt) or network_opt
    return section.get('upscale', section.get('scale'))


def check_section(check, key):
    """Check a wrapper's network section at ``key``; ``check`` is the option check's checker.

    The base is checked as any network section (its arch registered, its arguments its
    arch's); the conversion is then tried on the meta device (no weights), so a conv that
    cannot be converted fails here, naming the option and the module.
    """
    check.network(f'{key}.base')
    section = {k: v for k, v in check.get(key, dict).items() if k != 'type'}
    wrapper = ARCH_REGISTRY.get(check.get(f'{key}.type'))
    for name, valid, expected in WRAPPERS[wrapper][1]:  # (types: the checker's argument_types)
        value = check.get(f'{key}.{name}', required=False)
        if value is not None and not valid(value):
            check.fail(f'{key}.{name}', f'expected {expected}, found {value!r}')
    for device in ('meta', 'cpu'):  # the meta device costs nothing; an arch that needs real tensors to build gets them
        try:
            with torch.device(device):
                wrapper(**copy.deepcopy(section))
            return
        except ConversionError as err:
            check.fail(f'{key}.{err.option}' if err.option else key, str(err))
        except Exception as err:  # the base arch's own constructor refusing its arguments
            if device == 'cpu':
                check.fail(f'{key}.base', f"{section['base']['type']} cannot be built: {type(err).__name__}: {err}")
