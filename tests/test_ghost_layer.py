"""GhostConv2d: channel split, eval shift, Gumbel-max training path, gradients."""
import math

import pytest
import torch

from ghostsr_plugin import ops
from ghostsr_plugin.archs import GhostConv2d


@pytest.mark.parametrize('ratio,intrinsic', [(0.25, 4), (0.5, 8), (0.75, 12), (0.3, 5)])
def test_channel_split_and_eval_ghosts_are_shifted_intrinsics(ratio, intrinsic):
    torch.manual_seed(0)
    layer = GhostConv2d(6, 16, 3, ratio=ratio).eval()
    x = torch.randn(2, 6, 9, 8)
    out = layer(x)
    assert out.shape == (2, 16, 9, 8)
    assert layer.primary.out_channels == intrinsic == math.ceil(16 * ratio)
    x1 = layer.primary(x)
    assert torch.equal(out[:, :intrinsic], x1)
    (dy, dx), = layer.offset().tolist()
    for c in range(16 - intrinsic):
        assert torch.equal(out[:, intrinsic + c], ops.shift(x1[:, c % intrinsic], (dy, dx)))


def test_eval_is_deterministic_and_uses_argmax():
    layer = GhostConv2d(4, 8, 3).eval()
    with torch.no_grad():
        layer.logits.zero_()
        layer.logits[0, 2] = 1.0  # offset (-1, +1)
    assert layer.offset().tolist() == [[-1, 1]]
    x = torch.randn(1, 4, 6, 6)
    assert torch.equal(layer(x), layer(x))


def test_abs_argmax_follows_the_official_code():
    layer = GhostConv2d(4, 8, 3, abs_argmax=True)
    with torch.no_grad():
        layer.logits.copy_(torch.tensor([[0.1, 0, 0, 0, -2.0, 0, 0, 0, 1.0]]))
    assert layer.offset().tolist() == [[0, 0]]  # |-2| wins; without abs, index 8 (+1, +1) would
    layer.abs_argmax = False
    assert layer.offset().tolist() == [[1, 1]]


def test_training_logits_receive_gradient_and_noise_free_training_equals_eval():
    torch.manual_seed(0)
    layer = GhostConv2d(4, 8, 3, orientation_groups=2)
    x = torch.randn(2, 4, 7, 7)
    layer.temperature = 0.0
    out = layer(x)
    out.square().mean().backward()
    assert layer.logits.grad is not None and layer.logits.grad.abs().sum() > 0
    assert layer.primary.weight.grad.abs().sum() > 0
    torch.testing.assert_close(out, layer.eval()(x))


def test_zero_temperature_takes_the_argmax_even_when_a_noise_sample_is_zero(monkeypatch):
    """An exponential sample of 0 gives Gumbel noise inf; scaled by temperature 0 it must not become NaN."""
    monkeypatch.setattr(torch.Tensor, 'exponential_', lambda self, generator=None: self.zero_())
    layer = GhostConv2d(2, 4, 3)
    with torch.no_grad():
        layer.logits.zero_()[0, 4] = 1.0
    layer.temperature = 0.0
    assert layer.selection().argmax(-1).tolist() == [4]


def test_gumbel_max_samples_follow_softmax_of_logits():
    torch.manual_seed(0)
    layer = GhostConv2d(2, 4, 3)
    with torch.no_grad():
        layer.logits.copy_(torch.linspace(-1, 1, 9).view(1, 9))
    draws = torch.stack([layer.selection().argmax(-1) for _ in range(20000)]).flatten()
    frequency = torch.bincount(draws, minlength=9) / draws.numel()
    torch.testing.assert_close(frequency, layer.logits.detach().softmax(-1)[0], atol=0.015, rtol=0)


def test_selection_is_one_hot_with_identity_straight_through_gradient():
    layer = GhostConv2d(2, 4, 3, orientation_groups=2)
    selection = layer.selection()
    assert torch.equal(selection.detach().round(), selection.detach().round().clamp(0, 1))
    assert selection.detach().round().sum(-1).tolist() == [1.0, 1.0]
    weights = torch.randn_like(selection)
    (selection * weights).sum().backward()
    torch.testing.assert_close(layer.logits.grad, weights)


@pytest.mark.parametrize('kwargs,message', [
    ({'ratio': 0}, 'ratio'),
    ({'ratio': 1.5}, 'ratio'),
    ({'orientation_groups': 3}, 'orientation_groups'),
    ({'max_shift': -1}, 'max_shift'),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GhostConv2d(4, 8, 3, **kwargs)


@pytest.mark.parametrize('kwargs,message', [
    ({'conv_groups': 3}, 'divisible by conv_groups=3'),  # 8 outputs
    ({'conv_groups': 4, 'ratio': 0.25}, 'divisible by conv_groups=4'),  # 2 intrinsic channels
    ({'conv_groups': 2, 'orientation_groups': 4}, '2 ghost channels per conv group.*orientation_groups=4'),
])
def test_bad_group_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GhostConv2d(4, 8, 3, **kwargs)


def shifted(x, dy, dx):
    """``x`` (..., H, W) shifted by (dy, dx) with zero fill, by slicing: out[i, j] = x[i - dy, j - dx]."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def group_conv_ghost_reference(layer, x, selection):
    """The Ghost layer within each conv group, from plain ops: group g's conv, then its
    intrinsic channels followed by ghost c = sum_k selection[o, k] * shift(intrinsic c % c_ig,
    offset_k), o = c's orientation group; the groups' outputs concatenated in order."""
    groups, weight, bias = layer.primary.groups, layer.primary.weight, layer.primary.bias
    in_g, c_ig = x.shape[1] // groups, weight.shape[0] // groups
    ghosts_g = layer.num_ghost // groups
    per_orientation = ghosts_g // selection.shape[0]
    side = 2 * layer.max_shift + 1
    table = [(k // side - layer.max_shift, k % side - layer.max_shift) for k in range(side * side)]
    outputs = []
    for g in range(groups):
        rows = slice(g * c_ig, (g + 1) * c_ig)
        x1 = torch.nn.functional.conv2d(x[:, g * in_g:(g + 1) * in_g], weight[rows], bias[rows], padding=1)
        ghosts = [sum(selection[c // per_orientation, k] * shifted(x1[:, c % c_ig], *table[k])
                      for k in range(side * side)) for c in range(ghosts_g)]
        outputs.append(torch.cat([x1, torch.stack(ghosts, 1)], 1) if ghosts else x1)
    return torch.cat(outputs, 1)


@pytest.mark.parametrize('conv_groups,ratio,orientation_groups', [(2, 0.5, 1), (2, 0.5, 2), (2, 0.25, 3), (4, 0.5, 1)])
def test_group_conv_ghost_layer_is_the_ghost_layer_within_each_group(conv_groups, ratio, orientation_groups):
    torch.manual_seed(0)
    layer = GhostConv2d(8, 16, 3, ratio=ratio, orientation_groups=orientation_groups,
                        conv_groups=conv_groups).double()
    with torch.no_grad():
        layer.logits.copy_(torch.randn_like(layer.logits))
    x = torch.randn(2, 8, 7, 6, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(2, 16, 7, 6, dtype=torch.float64)

    # eval: each orientation group's argmax offset
    hard = torch.nn.functional.one_hot(layer.orientation(), layer.logits.shape[1]).double()
    layer.eval()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), group_conv_ghost_reference(layer, x, hard), rtol=0, atol=1e-12)
        channels_last = x.contiguous(memory_format=torch.channels_last)  # x1 cannot be viewed per group: a copy
        torch.testing.assert_close(layer(channels_last), group_conv_ghost_reference(layer, x, hard), rtol=0,
                                   atol=1e-12)

    # train with a fixed selection (temperature 0: the argmax), straight-through gradients
    layer.train()
    layer.temperature = 0.0
    params = [x, layer.primary.weight, layer.primary.bias, layer.logits]
    out = layer(x)
    assert torch.equal(layer.last_sampled, layer.orientation())
    got = torch.autograd.grad(out, params, grad_out)
    selection = hard - layer.logits.detach() + layer.logits
    want_out = group_conv_ghost_reference(layer, x, selection)
    want = torch.autograd.grad(want_out, params, grad_out)
    torch.testing.assert_close(out, want_out, rtol=0, atol=1e-12)
    for name, a, b in zip(('x', 'weight', 'bias', 'logits'), got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m, name=name: f'{name}: {m}')
    assert got[3].abs().sum() > 0


def test_group_conv_output_keeps_the_plain_group_convs_channel_groups():
    """Output group g depends only on input group g, as the plain group conv's does."""
    torch.manual_seed(0)
    layer = GhostConv2d(8, 16, 3, conv_groups=4).eval()
    x = torch.randn(1, 8, 5, 5, requires_grad=True)
    for g in range(4):
        grad, = torch.autograd.grad(layer(x)[:, 4 * g:4 * g + 4].sum(), x)
        assert grad[:, 2 * g:2 * g + 2].abs().sum() > 0
        assert grad[:, :2 * g].abs().sum() == 0 and grad[:, 2 * g + 2:].abs().sum() == 0
