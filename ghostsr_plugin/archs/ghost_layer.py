"""The Ghost layer every Ghost architecture is built from.

A ``GhostConv2d`` replaces a k x k convolution ``c_in -> c_out``: a real conv (``primary``)
computes ``ceil(c_out * ratio)`` intrinsic channels, the remaining ghost channels are
intrinsic ones shifted by a learned pixel offset, and the output is their concat. When
the real conv is a group conv, that holds within each conv group, so every output channel
stays in the plain group conv's group. Everything else in the plugin (schedules,
clustering, freezing, benchmarks) finds these layers by walking ``model.modules()``.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from ghostsr_plugin import ops
from ghostsr_plugin.errors import ArgumentError
from ghostsr_plugin.ops import traceable

from .gumbel import GumbelChoice, gumbel_noise

CHEAP_OPS = ('shift', 'depthwise')


class GhostConv2d(GumbelChoice):
    """Conv whose output channels beyond ``ceil(c_out * ratio)`` are shifted copies.

    Args:
        in_channels, out_channels, kernel_size, bias: as ``nn.Conv2d`` (stride 1, 'same' padding).
        ratio: lambda, the fraction of output channels computed by the real conv, in (0, 1].
            Below 0.5 the intrinsic channels are reused in order to make enough ghosts.
        max_shift: d, the largest |dy| and |dx| of the learned shift.
        orientation_groups: ghost channels (each conv group's, see ``conv_groups``) are split
            into this many equal groups, each with its own learned offset; 1 (one per layer) is
            the paper's and the official code's.
        abs_argmax: pick the orientation by argmax of ``|logits + noise|`` as the official
            code does, instead of the Gumbel-max ``logits + noise`` of the paper.
        deploy: build the frozen form (see ``freeze``) that a deploy checkpoint loads into.
        cheap_op: how the ghosts are made from the intrinsic channels: ``'shift'`` (GhostSR's learned
            shift, the default) or ``'depthwise'`` (GhostNet's cheap operation, the GhostSR paper's
            ablation: a learned 3x3 depthwise conv per ghost, ``cheap``; no orientation to learn, so
            nothing to freeze; ``conv_groups`` 1 only).
        conv_groups: G, the ``groups`` of the real conv, for archs built on group convs
            (CARN-M). The output is laid out per conv group, as the plain group conv's is:
            output group ``g`` (channels ``[g * c_g, (g + 1) * c_g)``, ``c_g = out_channels / G``)
            is the Ghost layer applied within that group, i.e. its ``c_ig = c_i / G`` intrinsic
            channels (conv group ``g`` of ``primary``, ``c_i = ceil(out_channels * ratio)``)
            followed by their shifted copies; within a group, local position ``p`` carries
            the group's local intrinsic channel ``p % c_ig``. The orientation groups split
            each conv group's ghosts (all conv groups share the offsets). ``out_channels`` and
            ``c_i`` must be divisible by G, and each conv group's ghost count by
            ``orientation_groups``.

    Attributes:
        logits: (orientation_groups, (2d+1)^2) orientation logits; absent once frozen.
        offsets: (orientation_groups, 2) integer (dy, dx) buffer; present once frozen.
        static_offsets: the same as Python ints (kept in step by ``freeze`` and loading), so a
            graph (torch.export, ONNX, torch.compile) sees constants and lowers the shift to
            plain slicing, padding and concat (:mod:`ghostsr_plugin.ops.traceable`).
        temperature: scale of the Gumbel noise added to the logits in training; a schedule
            sets it every iteration (0 means a deterministic argmax).
        noise_generator: the ``torch.Generator`` the noise is drawn from (None: the global
            one); the GhostSR model seeds one per iteration so that resumed runs draw the
            same noise as uninterrupted ones.
        learn_orientation: when False, training uses the current argmax orientation and the
            logits get no gradient (a schedule's warm-up holds the orientation still).
        relaxation: how a learning layer turns its logits into the selection of offsets:
            ``'gumbel_max'`` (the paper's hard one-hot of the noisy argmax, straight-through
            gradient) or ``'softmax'`` (every offset, weighted by ``softmax(logits / temperature)``:
            deterministic, with the exact gradient; ``temperature`` must then be > 0).
        centered_gradient: with ``'gumbel_max'``, pass the logits the straight-through gradient
            minus its mean over the offsets (as a softmax's Jacobian would): the part every
            offset shares, which otherwise moves all logits alike under Adam, is dropped.
        noise: when set, the scaled Gumbel noise (shaped like the logits) this step adds, drawn
            by the caller instead of from ``temperature`` and ``noise_generator``: a compiled
            forward takes it as an input, since a graph cannot draw from a ``torch.Generator``.
        last_sampled: the orientation index per group the last training forward drew
            (None before the first), for watching the sampled orientations settle.
    """

    KIND = 'Ghost'  # the layer kind's name, for the conversion's messages (archs/conversion.py)
    PLURAL = 'Ghost layers'

    def __init__(self, in_channels, out_channels, kernel_size=3, ratio=0.5, max_shift=1, orientation_groups=1,
                 bias=True, abs_argmax=False, deploy=False, conv_groups=1, cheap_op='shift'):
        super().__init__()
        if cheap_op not in CHEAP_OPS:
            raise ArgumentError(f'GhostConv2d: cheap_op must be one of {CHEAP_OPS}, got {cheap_op!r}',
                                option='cheap_op')
        if cheap_op == 'depthwise' and conv_groups != 1:
            raise ValueError(f'GhostConv2d: depthwise ghosts need conv_groups=1, got {conv_groups}')
        if not 0 < ratio <= 1:
            raise ValueError(f'GhostConv2d: ratio must be in (0, 1], got {ratio}')
        if max_shift < 0:
            raise ValueError(f'GhostConv2d: max_shift must be >= 0, got {max_shift}')
        num_intrinsic = math.ceil(out_channels * ratio)
        self.num_ghost = out_channels - num_intrinsic
        if conv_groups < 1 or out_channels % conv_groups or num_intrinsic % conv_groups:
            raise ValueError(f'GhostConv2d: out_channels={out_channels} and its {num_intrinsic} intrinsic channels '
                             f'(ratio={ratio}) must both be divisible by conv_groups={conv_groups}')
        group_ghost = self.num_ghost // conv_groups
        if orientation_groups < 1 or group_ghost % orientation_groups:
            where, grouped = (' per conv group', f', conv_groups={conv_groups}') if conv_groups > 1 else ('', '')
            raise ValueError(f'GhostConv2d: {group_ghost} ghost channels{where} (out_channels={out_channels}, '
                             f'ratio={ratio}{grouped}) cannot be split into orientation_groups={orientation_groups}')
        self.out_channels, self.max_shift, self.abs_argmax = out_channels, max_shift, abs_argmax
        self.cheap_op = cheap_op
        self.primary = nn.Conv2d(in_channels, num_intrinsic, kernel_size, padding=kernel_size // 2, bias=bias,
                                 groups=conv_groups)
        side = 2 * max_shift + 1
        if cheap_op == 'depthwise':  # (ghost c is the depthwise conv of intrinsic channel c % num_intrinsic)
            self.cheap = nn.Conv2d(self.num_ghost, self.num_ghost, 3, padding=1, groups=self.num_ghost, bias=bias)
        elif deploy:
            self.register_buffer('offsets', torch.zeros(orientation_groups, 2, dtype=torch.long))
            self._sync_static_offsets()
        else:
            self.logits = nn.Parameter(torch.empty(orientation_groups, side * side))
            # The official code's init: He-uniform on a (1, 1, side, side) kernel.
            nn.init.kaiming_uniform_(self.logits.view(orientation_groups, 1, side, side), a=math.sqrt(5))
        self.learn_orientation, self.noise, self.last_sampled = True, None, None
        self.relaxation, self.centered_gradient = 'gumbel_max', False

    @staticmethod
    def refuses(conv):
        """Why a Ghost layer cannot stand in for the 'same' conv ``conv``, or None."""
        return 'one output channel leaves nothing to shift' if conv.out_channels < 2 else None

    @classmethod
    @torch.no_grad()
    def from_conv(cls, conv, **options):
        """A Ghost layer standing in for ``conv``: its real conv starts from the first filters of each conv group."""
        weight = conv.weight
        ghost = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], bias=conv.bias is not None,
                    conv_groups=conv.groups, **options)
        if (ghost.primary.weight.device, ghost.primary.weight.dtype) != (weight.device, weight.dtype):
            ghost.to(weight.device, weight.dtype)
        if weight.device.type != 'meta':  # (a meta network has no values to copy)
            per_group, intrinsic = conv.out_channels // conv.groups, ghost.primary.out_channels // conv.groups
            rows = [g * per_group + i for g in range(conv.groups) for i in range(intrinsic)]
            ghost.primary.weight.copy_(weight[rows])
            if conv.bias is not None:
                ghost.primary.bias.copy_(conv.bias[rows])
        return ghost

    @property
    def frozen(self):
        """Whether the orientation is fixed: a frozen (deploy) layer, or depthwise ghosts (none to learn)."""
        return self.cheap_op != 'shift' or 'offsets' in self._buffers

    def _scores(self, logits):
        return logits.abs() if self.abs_argmax else logits

    def orientation(self):
        """Current hard orientation index per group (eval: argmax of the logits)."""
        if self.frozen:
            side = 2 * self.max_shift + 1
            return (self.offsets[:, 0] + self.max_shift) * side + self.offsets[:, 1] + self.max_shift
        return self._scores(self.logits.detach()).argmax(-1)

    def offset(self):
        """Current hard orientation as integer (dy, dx) per group, shape (G, 2)."""
        if self.frozen:
            return self.offsets
        return ops.offset_table(self.max_shift, self.logits.device)[self.orientation()]

    def freeze(self):
        """Bake the current orientation into the integer ``offsets`` buffer and drop the logits.

        Afterwards the layer is a pure shift in training and eval alike, and its state dict
        matches a layer built with ``deploy=True``.
        """
        if not self.frozen:
            offsets = self.offset()
            del self.logits
            self.register_buffer('offsets', offsets)
            self._sync_static_offsets()
        return self

    def _sync_static_offsets(self):
        """``static_offsets`` and the ONNX form's depthwise ``shift_kernel`` (not saved) from ``offsets``."""
        if self.offsets.device.type == 'meta':
            self.static_offsets = ((0, 0),) * self.offsets.shape[0]
            return
        self.static_offsets = tuple(tuple(offset) for offset in self.offsets.tolist())
        if self.primary.groups == 1:
            kernel = traceable.shift_kernel(self.static_offsets, self.num_ghost, self.max_shift)
            self.register_buffer('shift_kernel', kernel.to(self.offsets.device), persistent=False)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        if 'offsets' in self._buffers:
            self._sync_static_offsets()

    def selection(self):
        """Hard one-hot orientation from Gumbel-max, with a straight-through gradient.

        The forward value is the one-hot of ``argmax(logits + temperature * gumbel)``;
        the backward passes the gradient to the logits unchanged (the official code's
        ``(hard - logits).detach() + logits``; centered with ``centered_gradient``). With
        ``relaxation = 'softmax'``: the weights
        ``softmax(logits / temperature)`` of every offset instead.
        """
        logits = self.logits
        if self.relaxation == 'softmax':
            weights = torch.softmax(self._scores(logits) / self.temperature, -1)
            self.last_sampled = weights.detach().argmax(-1)  # the dominant offset
            return weights
        scores = logits.detach()
        if self.noise is not None:
            scores = scores + self.noise
        elif self.temperature:  # at 0 no noise is drawn: 0 * inf (an exponential sample of 0) would be NaN
            scores = scores + self.temperature * gumbel_noise(logits, self.noise_generator)
        index = self._scores(scores).argmax(-1)
        self.last_sampled = index
        hard = F.one_hot(index, logits.shape[-1]).to(logits.dtype)
        if self.centered_gradient:
            logits = logits - logits.mean(-1, keepdim=True)
        return hard - logits.detach() + logits

    def forward(self, x):
        x1 = self.primary(x)
        if self.cheap_op == 'depthwise':
            return torch.cat([x1, self.cheap(traceable.ghost_source(x1, self.num_ghost))], 1)
        if (self.frozen or not self.training) and (torch.compiler.is_compiling() or torch.jit.is_tracing()):
            return self._graph_forward(x1)
        groups = self.primary.groups
        if groups > 1:
            # Conv group g as sample g of a batch G times larger: the ordinary Ghost layer
            # within each group, laid out per group (a free view of a contiguous x1).
            n, c, h, w = x1.shape
            x1 = x1.reshape(n * groups, c // groups, h, w)
        num_ghost = self.num_ghost // groups
        if self.training and self.learn_orientation and not self.frozen:
            out = ops.ghost_features_train(x1, num_ghost, self.selection(), self.max_shift)
        else:
            out = ops.ghost_features(x1, num_ghost, self.offset())
        if groups > 1:
            out = out.reshape(n, self.out_channels, h, w)
        return out

    def _graph_forward(self, x1):
        """The shift as plain tensor ops, which a compiler fuses with the ops around it (a frozen or eval layer).

        Frozen: slicing and padding by the constant offsets (ONNX: a one-hot depthwise conv);
        eval: a gather at the argmax offsets, which stay a tensor (no sync, no recompile).
        A group conv's output is shifted per conv group, on (N, groups, C / groups, H, W).
        """
        groups = self.primary.groups
        if self.frozen and groups == 1 and torch.onnx.is_in_onnx_export():
            return traceable.ghost_features_by_conv(x1, self.shift_kernel)
        grouped = x1.unflatten(1, (groups, -1)) if groups > 1 else x1
        num_ghost = self.num_ghost // groups
        if self.frozen:
            out = traceable.ghost_features(grouped, num_ghost, self.static_offsets)
        else:
            out = traceable.ghost_features_at(grouped, num_ghost, self.offset())
        return out.flatten(1, 2) if groups > 1 else out

    def extra_repr(self):
        if self.cheap_op == 'depthwise':
            return f'out_channels={self.out_channels}, num_ghost={self.num_ghost}, cheap_op=depthwise'
        groups = (self.offsets if self.frozen else self.logits).shape[0]
        conv_groups = f', conv_groups={self.primary.groups}' if self.primary.groups > 1 else ''
        return (f'out_channels={self.out_channels}, num_ghost={self.num_ghost}, max_shift={self.max_shift}, '
                f'orientation_groups={groups}, abs_argmax={self.abs_argmax}, frozen={self.frozen}{conv_groups}')


def named_ghost_layers(net):
    """``(module path, layer)`` of every Ghost layer of ``net``, in module order."""
    return [(name, m) for name, m in net.named_modules() if isinstance(m, GhostConv2d)]


def ghost_layers(net):
    """Every Ghost layer of ``net``, in module order."""
    return [m for _, m in named_ghost_layers(net)]


def named_shift_layers(net):
    """``(module path, layer)`` of every Ghost layer of ``net`` whose ghosts are learned shifts (orientations)."""
    return [(name, m) for name, m in named_ghost_layers(net) if m.cheap_op == 'shift']


def shift_layers(net):
    """Every Ghost layer of ``net`` whose ghosts are learned shifts, in module order."""
    return [m for _, m in named_shift_layers(net)]
