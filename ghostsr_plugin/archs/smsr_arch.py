"""SMSR (Wang et al., "Exploring Sparsity in Image Super-Resolution for Efficient Inference", CVPR 2021).

Learned masks decide where and in which channels the network may skip work:

- each sparse mask module (SMM) predicts a **spatial mask** from its input (an hourglass branch:
  3x3 conv to C/4, ReLU, 2x average pooling, 3x3 conv, ReLU, a stride-2 transposed conv to 2
  channels, then a 2-way Gumbel softmax): the positions that need computing;
- each of its ``num_layer`` 3x3 convs has a **channel mask** from learned logits through a
  Gumbel softmax: a dense channel is computed everywhere, a sparse one only where the spatial
  mask keeps a position (zero elsewhere). A layer's output, its input split by the previous
  layer's channel mask (``x_d``, ``x_s``; the first layer's input is dense), is
  ``conv(x_d) * (dense + sparse * M) + conv(x_s) * M``, then a ReLU;
- the layers' outputs are fused by a 1x1 conv, then channel attention and the module's residual.

The network: head (3x3 conv, ReLU, 3x3 conv), ``num_block`` SMMs, their outputs fused (1x1 conv,
ReLU, 3x3 conv) plus the head's, a 3x3 conv to ``3 * scale^2`` channels and a pixel shuffle, plus the
bicubic upscaling of the input. The paper's network at every scale: 64 features, 5 SMMs of 4 convs
(985K / 993K / 1006K parameters at x2 / x3 / x4 without the channel-mask logits).

Training (``SMSRModel``) relaxes both masks (soft Gumbel softmax at the scheduled temperature);
eval uses hard masks (argmax) and, with ``inference: sparse`` (the default), computes the sparse
channels only at the kept positions (``sparse_conv``: gather, matmul, scatter); ``inference:
dense`` computes every conv whole and masks afterwards, the same numbers at the dense FLOPs.
``freeze`` (``ghostsr freeze``) bakes the channel masks into boolean buffers; ``deploy: true``
builds that form. Where the official code and the paper differ: a layer's input is split by the
previous layer's channel mask in training as at inference (the official training uses the
layer's own mask), the average pooling rounds up and the mask is cropped (odd sizes work).
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from ghostsr_plugin.errors import ArgumentError
from ghostsr_plugin.registration import register

from .arch_util import PixelRange
from .gumbel import GumbelChoice, gumbel_softmax
from .sparse_conv import KeptPositions, add_at, dense_windows, sparse_windows

INFERENCE = ('sparse', 'dense')


class HalfSize(nn.Module):
    """2x2 average pooling, the last row and column of an odd size averaged alone (``ceil_mode``'s result, in
    ops whose output size needs no case analysis, so torch.export keeps the size dynamic)."""

    def forward(self, x):
        return F.avg_pool2d(F.pad(x, (0, 1, 0, 1), mode='replicate'), 2)


class SpatialMask(GumbelChoice):
    """Where an SMM computes its sparse channels: (N, 1, H, W), soft in training, boolean in eval."""

    PLURAL = 'SMSR spatial masks'

    def __init__(self, num_feat):
        super().__init__()
        mid = max(num_feat // 4, 1)
        self.body = nn.Sequential(
            nn.Conv2d(num_feat, mid, 3, padding=1), nn.ReLU(inplace=True), HalfSize(),
            nn.Conv2d(mid, mid, 3, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(mid, 2, 3, stride=2, padding=1, output_padding=1))

    def forward(self, x):
        # An odd size comes back one row or column larger; cropped by a gather, through which torch.export
        # keeps the size dynamic (not through a slice).
        rows, cols = (torch.arange(n, device=x.device) for n in x.shape[-2:])
        logits = self.body(x).index_select(-2, rows).index_select(-1, cols)
        if self.training:
            return gumbel_softmax(logits, self.temperature, 1, self.noise_generator)[:, 1:]
        return logits[:, 1:] > logits[:, :1]


class ChannelMask(GumbelChoice):
    """Which output channels of each layer of an SMM are sparse: (num_layer, C), learned logits per channel.

    ``logits`` (num_layer, C, 2): dense and sparse scores, initialized uniformly in [0, 1) as the
    official code does; once frozen, the boolean buffer ``sparse_channels`` instead, and
    ``static_channels``, its channel indices as Python ints (kept in step by ``freeze`` and loading),
    so a graph (torch.export, ONNX, torch.compile) sees constant channel counts.
    """

    PLURAL = 'SMSR channel masks'

    def __init__(self, num_layer, num_feat, deploy=False):
        super().__init__()
        if deploy:
            self.register_buffer('sparse_channels', torch.zeros(num_layer, num_feat, dtype=torch.bool))
            self._sync_static_channels()
        else:
            self.logits = nn.Parameter(torch.rand(num_layer, num_feat, 2))

    @property
    def frozen(self):
        return 'sparse_channels' in self._buffers

    def forward(self):
        """The relaxed masks (num_layer, C, 2): dense and sparse weights summing to 1."""
        return gumbel_softmax(self.logits, self.temperature, -1, self.noise_generator)

    def hard(self):
        """(num_layer, C) bool: True where a channel is sparse."""
        return self.sparse_channels if self.frozen else self.logits[..., 1] > self.logits[..., 0]

    def channels(self):
        """``(dense, sparse)``: per layer, the indices of its dense and of its sparse output channels (lists)."""
        if self.frozen:
            return self.static_channels
        return _channel_lists(self.hard())

    def freeze(self):
        if not self.frozen:
            hard = self.hard().detach()
            del self.logits
            self.register_buffer('sparse_channels', hard)
            self._sync_static_channels()
        return self

    def _sync_static_channels(self):
        meta = self.sparse_channels.device.type == 'meta'
        self.static_channels = _channel_lists(torch.zeros(self.sparse_channels.shape, dtype=torch.bool, device='cpu')
                                              if meta else self.sparse_channels)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        if self.frozen:
            self._sync_static_channels()


def _channel_lists(sparse):
    """Per layer of a (num_layer, C) boolean mask, its False and its True indices as lists of Python ints."""
    rows = sparse.tolist()
    return ([[c for c, s in enumerate(row) if not s] for row in rows],
            [[c for c, s in enumerate(row) if s] for row in rows])


class SparseLayout:
    """The weights of one SMM's convs split by its hard channel masks, as the sparse form multiplies them.

    Per layer: ``dense_dense`` (d_out, d_in, 3, 3) conv weights, ``dense_sparse`` (s_out, d_in * 9) and
    ``from_sparse`` (d_out + s_out, s_in * 9) matrices; for the fusing 1x1 conv ``fuse_dense``
    (C, sum d, 1, 1) and ``fuse_sparse`` (C, sum s).
    """

    def __init__(self, convs, fuse, channels):
        dense, sparse = channels
        width = convs[0].weight.shape[0]
        self.layers = []
        for layer, conv in enumerate(convs):
            d_in, s_in = (dense[layer - 1], sparse[layer - 1]) if layer else (list(range(width)), [])
            w = conv.weight
            d_out, s_out = w[dense[layer]], w[sparse[layer]]
            self.layers.append({
                'dense_dense': d_out[:, d_in].contiguous(),
                'dense_sparse': s_out[:, d_in].flatten(1),
                'from_sparse': torch.cat([d_out, s_out])[:, s_in].flatten(1),
                'num_dense': len(dense[layer])})
        self.fuse_dense = fuse.weight[:, [layer * width + c for layer, cs in enumerate(dense) for c in cs]]
        self.fuse_sparse = fuse.weight[:, [layer * width + c for layer, cs in enumerate(sparse) for c in cs]].flatten(1)
        self.fuse_bias = fuse.bias


class SparseMaskConvs(nn.Module):
    """The convs of an SMM and their channel masks (the paper's sparse mask block), then the fusing 1x1 conv.

    ``inference``: how eval computes (``'sparse'``: only what the masks keep; ``'dense'``: every conv
    whole, masked afterwards).
    """

    def __init__(self, num_feat, num_layer, deploy=False, inference='sparse'):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(num_feat, num_feat, 3, padding=1, bias=False) for _ in range(num_layer))
        self.fuse = nn.Conv2d(num_feat * num_layer, num_feat, 1)
        self.channel_mask = ChannelMask(num_layer, num_feat, deploy)
        self.inference, self.density, self._layout = inference, None, (None, None)

    def forward(self, x, spatial):
        """``spatial``: the SMM's spatial mask, (N, 1, H, W), soft in training, boolean in eval."""
        if self.training:
            return self._relaxed(x, spatial)
        channels = self.channel_mask.channels()
        if self.inference == 'dense':
            return self._dense(x, spatial, channels)
        return self._sparse(x, spatial[:, 0], self.layout(channels))

    def _relaxed(self, x, spatial):
        """Training: soft channel and spatial masks. Records ``density``, the share of the layers' outputs kept."""
        masks = self.channel_mask()
        dense, sparse = masks[..., 0, None, None], masks[..., 1, None, None]  # (num_layer, C, 1, 1)
        outs = []
        for layer, conv in enumerate(self.convs):
            if layer == 0:
                y = conv(x) * (dense[0] + sparse[0] * spatial)
            else:  # the dense and the sparse part of the input in one conv call, as a batch twice as large
                both = conv(torch.cat([x * dense[layer - 1], x * sparse[layer - 1]]))
                from_dense, from_sparse = both.chunk(2)
                y = from_dense * (dense[layer] + sparse[layer] * spatial) + from_sparse * spatial
            x = F.relu(y)
            outs.append(x)
        self.density = masks[..., 0].mean() + masks[..., 1].mean() * spatial.mean()
        return self.fuse(torch.cat(outs, 1))

    def _dense(self, x, spatial, channels):
        """Eval with hard masks, every output computed at every position, then masked: the dense FLOPs."""
        dense, sparse = channels
        spatial = spatial.to(x.dtype)
        outs = []
        for layer, conv in enumerate(self.convs):
            mask = torch.zeros(x.shape[1], 1, 1, dtype=x.dtype, device=x.device)
            mask[sparse[layer]] = 1
            keep = 1 - mask + mask * spatial
            if layer == 0:
                y = conv(x) * keep
            else:
                parts = dense[layer - 1], sparse[layer - 1]
                y = [F.conv2d(x[:, p], conv.weight[:, p], padding=1) if p else 0 for p in parts]
                y = y[0] * keep + y[1] * spatial
            x = F.relu(y)
            outs.append(x)
        return self.fuse(torch.cat(outs, 1))

    def layout(self, channels):
        """The split weights for these masks, kept while the weights and masks are unchanged (built afresh in
        a graph)."""
        if torch.compiler.is_compiling():
            return SparseLayout(self.convs, self.fuse, channels)
        mask = self.channel_mask.sparse_channels if self.channel_mask.frozen else self.channel_mask.logits
        tensors = [c.weight for c in self.convs] + [self.fuse.weight, self.fuse.bias, mask]
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
        if self._layout[0] != key:
            with torch.no_grad():
                self._layout = (key, SparseLayout(self.convs, self.fuse, channels))
        return self._layout[1]

    def _sparse(self, x, spatial, layout):
        """Eval: dense channels by convolution, sparse ones at the kept positions of ``spatial`` (N, H, W) only."""
        kept = KeptPositions(spatial)
        n, _, h, w = x.shape
        dense, columns = x, x.new_zeros(0, kept.count)
        dense_outs, sparse_outs = [], []
        for weights in layout.layers:
            d_in, d_out = dense.shape[1], weights['num_dense']
            s_out = weights['dense_sparse'].shape[0]
            if d_in and d_out:
                y = F.conv2d(dense, weights['dense_dense'], padding=1)
            else:
                y = x.new_zeros(n, d_out, h, w)
            if d_in and s_out:
                y_sparse = weights['dense_sparse'] @ dense_windows(dense, kept)
            else:
                y_sparse = x.new_zeros(s_out, kept.count)
            if columns.shape[0]:
                from_sparse = weights['from_sparse'] @ sparse_windows(columns, kept)
                y = add_at(y, kept, from_sparse[:d_out])
                y_sparse = y_sparse + from_sparse[d_out:]
            dense, columns = F.relu(y), F.relu(y_sparse)
            dense_outs.append(dense)
            sparse_outs.append(columns)
        dense = torch.cat(dense_outs, 1)
        if dense.shape[1]:
            out = F.conv2d(dense, layout.fuse_dense, layout.fuse_bias)
        else:
            out = layout.fuse_bias.view(1, -1, 1, 1).expand(n, -1, h, w).clone()
        return add_at(out, kept, layout.fuse_sparse @ torch.cat(sparse_outs))


class ChannelAttention(nn.Module):
    """RCAN's channel attention: the features scaled per channel by a gate from their global average."""

    def __init__(self, num_feat, reduction=16):
        super().__init__()
        squeezed = max(num_feat // reduction, 1)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(num_feat, squeezed, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(squeezed, num_feat, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.gate(x)


class SparseMaskModule(nn.Module):
    """SMSR's SMM: spatial mask, masked convs fused, channel attention, residual."""

    def __init__(self, num_feat, num_layer, deploy=False, inference='sparse'):
        super().__init__()
        self.spatial_mask = SpatialMask(num_feat)
        self.body = SparseMaskConvs(num_feat, num_layer, deploy, inference)
        self.attention = ChannelAttention(num_feat)
        self.kept = None  # the share of positions the last forward's (hard) spatial masks kept, per image

    def forward(self, x):
        spatial = self.spatial_mask(x)
        if not torch.compiler.is_compiling():
            hard = spatial if spatial.dtype == torch.bool else spatial.detach() > 0.5
            self.kept = hard.flatten(1).float().mean(1)
        return self.attention(self.body(x, spatial)) + x


@register(ARCH_REGISTRY)
class SMSR(nn.Module):
    """SMSR: sparse mask modules between a head and a pixel-shuffle tail, plus the bicubic upscaling of the input.

    Args:
        num_in_ch, num_out_ch: image channels (3).
        num_feat: C, the features (the paper: 64).
        num_block: the sparse mask modules, K (the paper: 5).
        num_layer: the masked 3x3 convs per module, L (the paper: 4).
        upscale: the scale; one 3x3 conv to ``num_out_ch * upscale^2`` channels and a pixel shuffle.
        img_range, rgb_mean: the input normalization, as BasicSR's EDSR.
        inference: ``'sparse'`` (eval computes only what the masks keep) or ``'dense'`` (every conv whole,
            then masked: the same outputs, to compare).
        deploy: build the frozen form (boolean channel masks, no logits) that ``ghostsr freeze`` writes.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=5, num_layer=4, upscale=2, img_range=255.,
                 rgb_mean=(0.4488, 0.4371, 0.4040), inference='sparse', deploy=False):
        super().__init__()
        for name, value in (('num_feat', num_feat), ('num_block', num_block), ('num_layer', num_layer),
                            ('upscale', upscale)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f'SMSR: {name} must be an integer >= 1, found {value!r}', option=name)
        if inference not in INFERENCE:
            raise ArgumentError(f"SMSR: inference must be 'sparse' or 'dense', found {inference!r}", option='inference')
        self.upscale = upscale
        self.pixel_range = PixelRange(img_range, rgb_mean)
        self.head = nn.Sequential(nn.Conv2d(num_in_ch, num_feat, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(num_feat, num_feat, 3, padding=1))
        self.body = nn.ModuleList(SparseMaskModule(num_feat, num_layer, deploy, inference) for _ in range(num_block))
        self.collect = nn.Sequential(nn.Conv2d(num_feat * num_block, num_feat, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(num_feat, num_feat, 3, padding=1))
        self.tail = nn.Sequential(nn.Conv2d(num_feat, num_out_ch * upscale**2, 3, padding=1), nn.PixelShuffle(upscale))

    def forward(self, x):
        x0 = self.pixel_range(x)
        x = self.head(x0)
        features, y = [], x
        for module in self.body:
            y = module(y)
            features.append(y)
        y = self.collect(torch.cat(features, 1)) + x
        size = (x0.shape[-2] * self.upscale, x0.shape[-1] * self.upscale)
        y = self.tail(y) + F.interpolate(x0, size=size, mode='bicubic', align_corners=False)
        return self.pixel_range.inverse(y)

    @property
    def inference(self):
        return self.body[0].body.inference

    @inference.setter
    def inference(self, mode):
        if mode not in INFERENCE:
            raise ValueError(f"inference must be 'sparse' or 'dense', found {mode!r}")
        for module in self.body:
            module.body.inference = mode

    def density(self):
        """Training: the share of the layers' outputs the last forward's relaxed masks kept (the paper's
        sparsity regularization, averaged over modules, layers, channels and positions). Read once: the
        modules drop it (and the graph it holds), so the network can be copied afterwards."""
        densities = [m.body.density for m in self.body]
        for module in self.body:
            module.body.density = None
        return torch.stack(densities).mean()

    @torch.no_grad()
    def mask_sparsity(self):
        """The hard masks' sparsity: ``spatial_sparsity``, the share of positions the last forward's spatial
        masks skipped (over modules and images; in training, the relaxed masks rounded), and
        ``channel_sparsity``, the share of channels that are sparse (over modules and layers)."""
        kept = torch.stack([m.kept for m in self.body]).float().mean()
        sparse = torch.stack([m.body.channel_mask.hard() for m in self.body]).float().mean()
        return {'spatial_sparsity': 1 - kept.item(), 'channel_sparsity': sparse.item()}
