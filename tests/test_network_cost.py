"""Counting a network's cost from its options alone (meta device): shifts cost nothing, and the
count equals a real run's; multiplications, additions and energy against counts made by hand."""
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ghostsr_plugin.archs import GhostConv2d
from ghostsr_plugin.cost import cost_input, count_flops, count_params, energy_pj, model_cost, network_cost
from ghostsr_plugin.op_count import OpCount, count_ops


def test_a_ghost_layer_costs_its_real_conv_only():
    layer = GhostConv2d(16, 24, 3, orientation_groups=3, conv_groups=4)
    x = torch.rand(1, 16, 10, 12)
    for training in (True, False):
        with FlopCounterMode(display=False) as counter:
            layer.train(training)(x)
        assert counter.get_total_flops() == 2 * 12 * (16 // 4) * 9 * 10 * 12  # intrinsic channels x MACs per pixel


def test_meta_count_of_a_ghost_arch_equals_a_real_run():
    opt = {'type': 'GhostRDN', 'num_in_ch': 3, 'num_out_ch': 3, 'upscale': 3, 'num_feat': 4, 'num_block': 2,
           'num_layer': 2, 'num_grow_ch': 4, 'orientation_groups': 2}
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('GhostRDN')(**{k: v for k, v in opt.items() if k != 'type'}).eval()
    cost = network_cost(opt)
    assert cost == model_cost(net, cost_input(3))
    assert (cost['params'], cost['flops']) == (count_params(net), count_flops(net, cost_input(3)))


@pytest.mark.parametrize('bias', [True, False])
def test_a_conv_counts_one_multiplication_and_one_addition_per_multiply_add(bias):
    conv, x = nn.Conv2d(4, 6, 3, padding=1, bias=bias, groups=2), torch.rand(2, 4, 5, 7)
    outputs, per_output = 2 * 6 * 5 * 7, 2 * 9  # K = c_in / groups * 3 * 3
    ops = count_ops(conv, x)
    assert ops.mults == outputs * per_output == count_flops(conv, x) / 2
    assert ops.adds == outputs * (per_output - 1 + bias)
    assert model_cost(conv, x)['energy_pj'] == pytest.approx(3.7 * ops.mults + 0.9 * ops.adds)


def test_edsr_counted_layer_by_layer_by_hand():
    """EDSR (2 blocks, 8 features, x2): its convs, ReLUs, residual sums and scaling, mean shift, pixel shuffle."""
    net = ARCH_REGISTRY.get('EDSR')(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, upscale=2).eval()
    h, w = 6, 5
    hw, hw2 = h * w, 4 * h * w

    def conv(c_in, c_out, pixels):
        return c_out * pixels * 9 * c_in, c_out * pixels * 9 * c_in  # (biased: K additions per output)

    convs = [conv(3, 8, hw), *[conv(8, 8, hw)] * 4, conv(8, 8, hw), conv(8, 32, hw), conv(8, 3, hw2)]
    mults = sum(m for m, _ in convs) + 3 * hw + 2 * 8 * hw + 3 * hw2  # mean shift (x img_range), res_scale, / range
    adds = (sum(a for _, a in convs) + 3 * hw + 2 * 8 * hw + 8 * hw + 3 * hw2  # shift, block sums, body sum
            + 2 * 8 * hw)  # the ReLUs: one comparison each
    ops = count_ops(net, torch.rand(1, 3, h, w))
    assert (ops.mults, ops.adds) == (mults, adds)
    assert not ops.special and not ops.uncounted


def test_a_shift_is_data_movement_only():
    layer = GhostConv2d(8, 8, 3).freeze().eval()  # (not frozen: the argmax of 9 logits, 8 comparisons, besides)
    x = torch.rand(1, 8, 6, 6)
    assert count_ops(layer, x) == count_ops(layer.primary, x)


def test_energy_table_and_what_it_leaves_out():
    assert energy_pj(10, 100) == pytest.approx(10 * 3.7 + 100 * 0.9)
    net = nn.Sequential(nn.Conv2d(2, 2, 1), nn.SiLU())  # a special function
    cost = model_cost(net, torch.rand(1, 2, 3, 3))
    assert cost['outside_energy'] == {'special': {'exp': 18}, 'uncounted': {}}
    ops = count_ops(lambda t: torch.cumsum(t, 1), torch.rand(2, 3))  # an op with no formula is named, not dropped
    assert ops.uncounted == {'aten.cumsum': 1}


class Masked(nn.Module):
    """A module that decides its own count, as a mask-dependent one would."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x)

    def count_ops(self, inputs, output):
        return OpCount(mults=7, adds=11)


def test_a_module_can_replace_the_count_of_its_forward():
    net = nn.Sequential(Masked(), nn.ReLU())
    x = torch.rand(1, 2, 4, 4)
    assert count_ops(net, x) == OpCount(7, 11 + 2 * 16)
