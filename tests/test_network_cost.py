"""Counting a network's cost from its options alone (meta device): shifts cost nothing, and the
count equals a real run's."""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch.utils.flop_counter import FlopCounterMode

from ghostsr_plugin.archs import GhostConv2d
from ghostsr_plugin.cost import cost_input, count_flops, count_params, network_cost


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
    assert network_cost(opt) == (count_params(net), count_flops(net, cost_input(3)))
