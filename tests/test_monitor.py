"""OrientationMonitor: changes of the argmax and of the sampled orientation, histogram."""
import torch
from basicsr.utils.registry import ARCH_REGISTRY

from ghostsr_plugin.archs import ghost_layers
from ghostsr_plugin.monitor import OrientationMonitor, orientation_histogram


def small_net():
    torch.manual_seed(0)
    return ARCH_REGISTRY.get('GhostEDSR')(3, 3, num_feat=8, num_block=2, upscale=2).train()


def test_sampled_orientation_changes_under_noise_and_settles_without():
    net, x = small_net(), torch.rand(1, 3, 6, 6)
    monitor = OrientationMonitor(net)
    for i, temperature in enumerate([100.0] * 20 + [0.0] * 5, start=1):
        for layer in ghost_layers(net):
            layer.temperature = temperature
        net(x)
        monitor.update(i)
    names, offsets, argmax_changes, sampled_changes = zip(*monitor.report())
    assert list(names) == ['body.0.conv1', 'body.0.conv2', 'body.1.conv1', 'body.1.conv2']
    assert argmax_changes == (0, 0, 0, 0)  # the logits never moved
    assert all(c >= 10 for c in sampled_changes)  # near-uniform sampling over 9 offsets, 20 draws
    # noise-free from iteration 21 on: the sample sits on the argmax and stops changing
    assert monitor.settling(21) == {'argmax': [], 'sampled': []}
    assert monitor.settling(5)['sampled'] == list(names)
    assert [r[3] for r in monitor.report()] == [0, 0, 0, 0]  # counts reset at each report


def test_argmax_changes_are_counted_when_the_logits_move():
    net = small_net()
    monitor = OrientationMonitor(net)
    layer = ghost_layers(net)[1]
    with torch.no_grad():
        layer.logits.zero_()
        layer.logits[0, 0] = 5.0
    monitor.update(7)
    rows = monitor.report()
    assert rows[1][1] == [[-1, -1]] and rows[1][2] == 1
    assert monitor.settling(6)['argmax'] == ['body.0.conv2'] and monitor.settling(7)['argmax'] == []


def test_orientation_histogram_counts_every_group():
    net = small_net()
    for layer in ghost_layers(net):
        with torch.no_grad():
            layer.logits.zero_()
            layer.logits[0, 4] = 1.0  # (0, 0)
    assert orientation_histogram(net) == [((0, 0), 4)]


def test_layers_of_different_shapes_are_tracked_apart_and_a_net_without_ghost_layers_has_nothing_to_track():
    """The concatenated trackers attribute each group's change to its own layer, whatever the groups' shapes."""
    from ghostsr_plugin.archs import GhostConv2d

    net = torch.nn.Sequential(GhostConv2d(4, 8, orientation_groups=2), GhostConv2d(8, 8, max_shift=2),
                              GhostConv2d(8, 8, orientation_groups=2))
    with torch.no_grad():
        net[2].logits.copy_(-torch.arange(9.0))  # every group's argmax at (-1, -1)
    monitor = OrientationMonitor(net)
    with torch.no_grad():
        net[2].logits[1] = torch.arange(9.0)  # its second group's argmax moves to (1, 1)
    monitor.update(3)
    assert [row[2] for row in monitor.report()] == [0, 0, 1]
    assert monitor.settling(2)['argmax'] == ['2']
    empty = OrientationMonitor(torch.nn.Conv2d(3, 3, 3))
    empty.update(1)
    assert empty.report() == [] and empty.settling(0) == {'argmax': [], 'sampled': []}
