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
