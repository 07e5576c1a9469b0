"""Which convs of a plain network become Ghost layers, and the conversion itself.

``convert: body`` is the paper's rule: every conv of the network's body, i.e. every
``nn.Conv2d`` that

1. has a square odd kernel of 3 or more, stride 1, dilation 1, groups 1, 'same' zero
   padding and at least 2 output channels (a shift can stand in for part of it);
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
kernel, stride 1, dilation 1 and 'same' zero padding (group convs are converted per group).

Converting keeps module paths: the Ghost layer at path ``P`` replaces the conv at ``P``,
its real conv ``P.primary`` starts from the plain conv's first filters of each group (the
arch's own initialization, e.g. MSRResNet's scaled residual convs) and biases, and its
orientation logits start fresh.
"""
import fnmatch
import re

import torch
from torch import nn

from ghostsr_plugin.errors import ArgumentError

from .conv_graph import named_convs, trace_convs
from .ghost_layer import GhostConv2d

BODY = 'body'
BLOCK_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
ATTENTION_NAME = re.compile('attention|attn', re.IGNORECASE)


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


def unconvertible(conv):
    """Why a Ghost layer cannot stand in for ``conv``, or None."""
    if type(conv) is not nn.Conv2d:
        return f'{type(conv).__name__} is not an nn.Conv2d'
    k, other = conv.kernel_size
    padding = conv.padding if conv.padding != 'same' else (k // 2, other // 2)
    if k != other or k % 2 == 0:
        return 'the Ghost layer needs a square kernel of odd size'
    if conv.stride != (1, 1) or conv.dilation != (1, 1):
        return 'the Ghost layer needs stride 1 and dilation 1'
    if padding != (k // 2, k // 2) or conv.padding_mode != 'zeros':
        return "the Ghost layer needs 'same' zero padding (padding kernel_size // 2)"
    if conv.out_channels < 2:
        return 'one output channel leaves nothing to shift'
    return None


def _in_block(net, path):
    """Whether a container on ``path`` holds the conv inside one of its elements (not as an element itself)."""
    parts = path.split('.')
    return any(isinstance(net.get_submodule('.'.join(parts[:depth])), BLOCK_CONTAINERS)
               for depth in range(len(parts) - 1))


def _in_attention(net, path):
    parts = path.split('.')
    return any(ATTENTION_NAME.search(type(net.get_submodule('.'.join(parts[:depth]))).__name__)
               for depth in range(1, len(parts)))


def body_convs(net):
    """The paths of ``net``'s body convs (the module docstring's rule), in module order."""
    graph = trace_convs(net)
    if graph.failure:
        raise ConversionError(f'{type(net).__name__} cannot be traced ({graph.failure}); convert: {BODY} needs '
                              'the trace to tell the body '
                              'from the first and last convs and the upsampler: name the convs to convert with '
                              'module-name patterns', option='convert')
    selected, excluded = [], graph.reads_input | graph.writes_output | graph.feeds_upsampling | graph.feeds_gate
    for path, conv in named_convs(net):  # (a conv the trace did not reach is untraced)
        if (unconvertible(conv) is None and conv.kernel_size[0] >= 3 and conv.groups == 1 and _in_block(net, path)
                and path not in graph.untraced and not _in_attention(net, path)
                and path not in excluded and not graph.upsampled(path)):
            selected.append(path)
    if not selected:
        raise ConversionError(f'{type(net).__name__} has no body conv by the rule of convert: {BODY} (see '
                              'docs/any_arch.md); name the convs to convert with module-name patterns',
                              option='convert')
    return selected


def matching_convs(net, patterns):
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
        reason = unconvertible(conv)
        if reason:
            raise ConversionError(f"cannot convert '{path}' ({describe(conv)}): {reason}", option='convert')
    return [path for path, _ in selected]


def select_convs(net, convert=BODY):
    """The convs ``convert`` names (``'body'`` or module-name patterns), checked."""
    if any(isinstance(m, GhostConv2d) for m in net.modules()):
        raise ConversionError(f'{type(net).__name__} already has Ghost layers; convert its plain arch',
                              option='base')
    if convert == BODY:
        return body_convs(net)
    patterns = [convert] if isinstance(convert, str) else convert
    if not isinstance(patterns, (list, tuple)) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise ConversionError(f"expected '{BODY}' or a list of module-name patterns, found {convert!r}",
                              option='convert')
    return matching_convs(net, patterns)


@torch.no_grad()
def ghost_from_conv(conv, **ghost_opt):
    """A Ghost layer standing in for ``conv``: its real conv starts from the first filters of each conv group."""
    weight = conv.weight
    ghost = GhostConv2d(conv.in_channels, conv.out_channels, conv.kernel_size[0], bias=conv.bias is not None,
                        conv_groups=conv.groups, **ghost_opt)
    if (ghost.primary.weight.device, ghost.primary.weight.dtype) != (weight.device, weight.dtype):
        ghost.to(weight.device, weight.dtype)
    if weight.device.type != 'meta':  # (a meta network has no values to copy)
        per_group, intrinsic = conv.out_channels // conv.groups, ghost.primary.out_channels // conv.groups
        rows = [g * per_group + i for g in range(conv.groups) for i in range(intrinsic)]
        ghost.primary.weight.copy_(weight[rows])
        if conv.bias is not None:
            ghost.primary.bias.copy_(conv.bias[rows])
    return ghost


def convert_convs(net, paths, **ghost_opt):
    """Replace the convs at ``paths`` of ``net`` by Ghost layers (``GhostConv2d``'s keyword arguments), in place."""
    aliases = {}
    for path, module in net.named_modules(remove_duplicate=False):
        aliases.setdefault(id(module), []).append(path)
    for path in paths:
        conv = net.get_submodule(path)
        try:
            ghost = ghost_from_conv(conv, **ghost_opt)
        except ValueError as err:
            raise ConversionError(f"cannot convert '{path}' ({describe(conv)}): {err}") from None
        for alias in aliases[id(conv)]:
            parent, _, name = alias.rpartition('.')
            setattr(net.get_submodule(parent), name, ghost)
    return net
