"""ops: the reference shift and ghost-feature ops against independent references."""
import itertools

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ghostsr_plugin import ops


def numpy_shift(x, dy, dx):
    """out[..., i, j] = x[..., i - dy, j - dx] inside the image, else 0 (pixel by pixel)."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    for i, j in itertools.product(range(h), range(w)):
        if 0 <= i - dy < h and 0 <= j - dx < w:
            out[..., i, j] = x[..., i - dy, j - dx]
    return out


@pytest.mark.parametrize('size', [(5, 7), (6, 4), (1, 1), (2, 9)])
def test_shift_matches_numpy_for_every_offset(size):
    x = torch.randn(3, 4, *size)
    for dy, dx in itertools.product(range(-2, 3), repeat=2):
        expected = numpy_shift(x.numpy(), dy, dx)
        np.testing.assert_array_equal(ops.shift(x, (dy, dx)).numpy(), expected, err_msg=f'offset {(dy, dx)}')


def test_shift_beyond_the_image_is_zero():
    x = torch.randn(2, 3, 4, 5)
    assert not ops.shift(x, (4, 0)).any() and not ops.shift(x, (0, -5)).any()
    np.testing.assert_array_equal(ops.shift(x, (3, -4)).numpy(), numpy_shift(x.numpy(), 3, -4))


def test_shift_gradcheck():
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    for offset in [(1, -1), (0, 2), (-2, 0), (0, 0)]:
        assert torch.autograd.gradcheck(lambda t, o=offset: ops.shift(t, o), (x,))


def test_offset_table_is_row_major():
    table = ops.offset_table(1).tolist()
    assert table == [[dy, dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert len(ops.offset_table(2)) == 25


@pytest.mark.parametrize('c_intrinsic,num_ghost,groups', [(4, 4, 1), (4, 2, 2), (2, 6, 3), (3, 1, 1)])
def test_ghost_features_concat_of_shifted_sources(c_intrinsic, num_ghost, groups):
    x1 = torch.randn(2, c_intrinsic, 5, 6)
    offsets = ops.offset_table(1)[torch.randint(0, 9, (groups,))]
    out = ops.ghost_features(x1, num_ghost, offsets)
    assert out.shape == (2, c_intrinsic + num_ghost, 5, 6)
    assert torch.equal(out[:, :c_intrinsic], x1)
    per_group = num_ghost // groups
    for c in range(num_ghost):
        dy, dx = offsets[c // per_group].tolist()
        expected = numpy_shift(x1[:, c % c_intrinsic].numpy(), dy, dx)
        np.testing.assert_array_equal(out[:, c_intrinsic + c].numpy(), expected)


def depthwise_reference(x1, num_ghost, selection, max_shift):
    """The official code's formulation: a depthwise conv whose kernel is the selection."""
    side = 2 * max_shift + 1
    groups = selection.shape[0]
    src = x1.repeat(1, -(-num_ghost // x1.shape[1]), 1, 1)[:, :num_ghost]
    # conv2d correlates, out[i, j] = sum w[a, b] x[i + a - d, j + b - d]: offset (dy, dx) sits at (d - dy, d - dx).
    kernels = selection.view(groups, 1, 1, side, side).flip(-1, -2)
    kernels = kernels.expand(groups, num_ghost // groups, 1, side, side).reshape(num_ghost, 1, side, side)
    return torch.cat([x1, F.conv2d(src, kernels, padding=max_shift, groups=num_ghost)], 1)


@pytest.mark.parametrize('c_intrinsic,num_ghost,groups,max_shift', [(4, 4, 1, 1), (6, 4, 2, 1), (2, 6, 1, 2)])
def test_ghost_features_train_matches_depthwise_conv(c_intrinsic, num_ghost, groups, max_shift):
    torch.manual_seed(0)
    k = (2 * max_shift + 1)**2
    x1 = torch.randn(2, c_intrinsic, 6, 7, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(groups, k, dtype=torch.float64, requires_grad=True)
    hard = F.one_hot(torch.randint(0, k, (groups,)), k).to(logits.dtype)
    selection = hard - logits.detach() + logits  # straight-through, as the Ghost layer builds it
    grad_out = torch.randn(2, c_intrinsic + num_ghost, 6, 7, dtype=torch.float64)

    out = ops.ghost_features_train(x1, num_ghost, selection, max_shift)
    grads = torch.autograd.grad(out, (x1, logits), grad_out)
    ref = depthwise_reference(x1, num_ghost, selection, max_shift)
    ref_grads = torch.autograd.grad(ref, (x1, logits), grad_out)

    torch.testing.assert_close(out, ref)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)
    offsets = ops.offset_table(max_shift)[hard.argmax(-1)]
    torch.testing.assert_close(out, ops.ghost_features(x1, num_ghost, offsets))


def test_ghost_features_train_gradcheck_with_dense_selection():
    x1 = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    selection = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s: ops.ghost_features_train(a, 3, s, 1), (x1, selection))
