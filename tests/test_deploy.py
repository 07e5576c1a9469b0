"""Deploy: the frozen Ghost layer as plain tensor ops in graphs, ONNX export and torch.compile."""
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

from ghostsr_plugin.archs import freeze, ghost_layers
from ghostsr_plugin.onnx_export import check_onnx, export_onnx, onnx_op_types
from ghostsr_plugin.ops import reference, traceable

SMALL = {  # every Ghost arch, small, with its plain arch
    'GhostEDSR': ('EDSR', dict(num_feat=8, num_block=2)),
    'GhostRDN': ('RDN', dict(num_feat=8, num_block=2, num_layer=3, num_grow_ch=4)),
    'GhostCARN': ('CARN', dict(num_feat=8, num_block=2, num_unit=2)),
    'GhostCARN_M': ('CARN_M', dict(num_feat=16, num_block=2, num_unit=3, groups=4)),
}
# The ONNX operator set of a Ghost model: the plain model's, plus Pad (a shift) and Concat.
STANDARD_OPS = {'Add', 'Concat', 'Conv', 'DepthToSpace', 'Div', 'Mul', 'Pad', 'Relu', 'Reshape', 'Shape', 'Slice',
                'Sub', 'Constant', 'Gather', 'Unsqueeze'}


def trained(arch, seed=0, **kwargs):
    """A small Ghost net in eval mode whose orientations point in varied directions, as after training."""
    torch.manual_seed(seed)
    plain, args = SMALL[arch]
    net = ARCH_REGISTRY.get(arch)(3, 3, upscale=2, **args, **kwargs)
    for layer in ghost_layers(net):
        torch.nn.init.normal_(layer.logits, std=3)
    return net.eval()


def trained_frozen(arch, seed=0, **kwargs):
    """:func:`trained`, frozen."""
    return freeze(trained(arch, seed, **kwargs))


@pytest.mark.parametrize('dy', [-2, -1, 0, 1, 2])
@pytest.mark.parametrize('dx', [-1, 0, 1, 3])
def test_traceable_shift_is_the_reference_shift(dy, dx):
    x = torch.rand(2, 3, 5, 4)
    assert torch.equal(traceable.shift(x, dy, dx), reference.shift(x, (dy, dx)))  # pure copies: exact


@pytest.mark.parametrize('dy', [-2, -1, 0, 1, 5])
@pytest.mark.parametrize('dx', [-4, 0, 1, 3])
@pytest.mark.parametrize('channels_last', [False, True])
def test_shift_by_a_tensor_offset_is_the_reference_shift(dy, dx, channels_last):
    x = torch.rand(2, 3, 5, 4)  # offsets up to and beyond the image's size
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    assert torch.equal(traceable.shift_at(x, torch.tensor([dy, dx])), reference.shift(x, (dy, dx)))


@pytest.mark.parametrize('num_ghost, offsets', [(6, ((1, -1),)), (6, ((0, 1), (-1, -1))), (10, ((1, 1), (0, -1)))])
def test_traceable_ghost_features_is_the_reference(num_ghost, offsets):
    x1 = torch.rand(2, 4, 6, 5)  # num_ghost 10 > 4 intrinsic channels: sources reused in order
    expected = reference.ghost_features(x1, num_ghost, torch.tensor(offsets))
    assert torch.equal(traceable.ghost_features(x1, num_ghost, offsets), expected)  # copies and zeros: exact
    assert torch.equal(traceable.ghost_features_at(x1, num_ghost, torch.tensor(offsets)), expected)


def test_static_offsets_follow_freeze_and_loading():
    net = trained_frozen('GhostEDSR', orientation_groups=2)
    deploy = ARCH_REGISTRY.get('GhostEDSR')(3, 3, upscale=2, **SMALL['GhostEDSR'][1], orientation_groups=2,
                                             deploy=True)
    deploy.load_state_dict(net.state_dict())
    for layer, loaded in zip(ghost_layers(net), ghost_layers(deploy)):
        assert layer.static_offsets == loaded.static_offsets == tuple(map(tuple, layer.offsets.tolist()))
    assert len({layer.static_offsets for layer in ghost_layers(net)}) > 1  # varied: the test can tell them apart


@pytest.mark.parametrize('arch', list(SMALL))
def test_onnx_round_trip_with_standard_ops_only(arch, tmp_path):
    for name, net in ((arch, trained_frozen(arch)), (SMALL[arch][0], ARCH_REGISTRY.get(SMALL[arch][0])(
            3, 3, upscale=2, **SMALL[arch][1]).eval())):
        path = export_onnx(net, str(tmp_path / f'{name}.onnx'))
        differences = check_onnx(net, path, sizes=((1, 3, 9, 7), (2, 3, 16, 21)))  # dynamic batch, height, width
        assert all(d <= 1e-5 for _, d in differences), differences
        op_types = onnx_op_types(path)
        assert {domain for domain, _ in op_types} == {''}, op_types  # the standard domain only
        assert {op for _, op in op_types} <= STANDARD_OPS, op_types
        assert ('', 'Pad') not in op_types or arch == 'GhostCARN_M'  # shifts as depthwise convs (groups: pads)


def test_onnx_check_catches_a_wrong_model(tmp_path):
    net = trained_frozen('GhostEDSR')
    path = export_onnx(net, str(tmp_path / 'm.onnx'))
    layer = ghost_layers(net)[0]
    layer.offsets.fill_(0)
    layer.static_offsets = ((0, 0),)
    with pytest.raises(ValueError, match='onnxruntime differs from PyTorch'):
        check_onnx(net, path)


@pytest.mark.parametrize('arch', list(SMALL))
def test_compiled_frozen_model_equals_eager(arch):
    net = trained_frozen(arch)
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        expected = net(x)
        compiled = torch.compile(net, fullgraph=True)(x)
    torch.testing.assert_close(compiled, expected, atol=1e-5, rtol=0)


def graph_ops(net, x):
    """``(output, names of the ops in the graph)`` of ``net(x)`` compiled whole (fullgraph: a graph break raises)."""
    targets = set()

    def recording_backend(graph_module, example_inputs):
        targets.update(str(node.target) for node in graph_module.graph.nodes if node.op == 'call_function')
        return graph_module.forward

    with torch.no_grad():
        out = torch.compile(net, fullgraph=True, backend=recording_backend)(x)
    return out, targets


@pytest.mark.parametrize('arch', list(SMALL))
def test_compiled_eval_model_is_plain_tensor_ops_in_one_graph(arch):
    net = trained(arch)
    x = torch.rand(1, 3, 11, 9)
    out, targets = graph_ops(net, x)
    assert not [t for t in targets if 'ghostsr' in t], targets  # no opaque op for the compiler to stop at
    with torch.no_grad():
        torch.testing.assert_close(out, net(x), atol=1e-5, rtol=0)


def test_inductor_compiled_eval_model_equals_eager_and_follows_its_logits_without_recompiling():
    from torch._dynamo.testing import CompileCounterWithBackend

    net = trained('GhostEDSR', orientation_groups=2).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 12, 10).contiguous(memory_format=torch.channels_last)
    counter = CompileCounterWithBackend('inductor')
    compiled = torch.compile(net, fullgraph=True, backend=counter)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), atol=1e-5, rtol=0)
        before = [layer.offset().clone() for layer in ghost_layers(net)]
        for layer in ghost_layers(net):
            layer.logits.copy_(layer.logits.flip(-1))  # (what an EMA update or a training step does)
        assert any(not torch.equal(a, layer.offset()) for a, layer in zip(before, ghost_layers(net)))
        torch.testing.assert_close(compiled(x), net(x), atol=1e-5, rtol=0)
    assert counter.frame_count == 1


def test_compiled_training_step_learns_the_orientation():
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('GhostEDSR')(3, 3, upscale=2, **SMALL['GhostEDSR'][1]).train()
    step = torch.compile(net, fullgraph=True, dynamic=False)  # (inductor fails on the train op at dynamic shapes)
    step(torch.rand(2, 3, 12, 12)).mean().backward()
    for layer in ghost_layers(net):
        assert layer.logits.grad is not None and layer.logits.grad.abs().sum() > 0
        assert layer.primary.weight.grad.abs().sum() > 0


def test_onnx_shift_is_a_depthwise_one_hot_conv_that_matches_the_reference():
    offsets = ((1, -1), (0, 0), (-1, 1))
    x1 = torch.rand(2, 5, 7, 6)  # 9 ghosts from 5 intrinsic channels: sources reused
    kernel = traceable.shift_kernel(offsets, 9, max_shift=1)
    assert kernel.shape == (9, 1, 3, 3) and kernel.sum() == 9
    # A convolution may sum in any order and with any kernel algorithm: equal within float rounding.
    torch.testing.assert_close(traceable.ghost_features_by_conv(x1, kernel), traceable.ghost_features(x1, 9, offsets),
                               atol=1e-6, rtol=0)
