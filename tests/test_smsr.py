"""SMSR: the paper's sizes, sparse inference against the masked convolutions it stands for, FLOPs from the masks,
the frozen form, ONNX, the benchmark's mask-dependent figures and the option errors."""
import json

import pytest
import torch
from torch.nn import functional as F

from ghostsr_plugin.archs import freeze
from ghostsr_plugin.archs.smsr_arch import SMSR
from ghostsr_plugin.cli import ghostsr_main
from ghostsr_plugin.cost import count_flops, mask_cost
from ghostsr_plugin.evaluate import is_deploy_state, load_model
from ghostsr_plugin.option_check import OptionError, check_options

from .conftest import write_options
from .test_benchmark import benchmark, one_thread, tiny_benchmark  # noqa: F401  (fixtures)

TINY = {'type': 'SMSR', 'num_feat': 8, 'num_block': 2, 'num_layer': 3, 'upscale': 2}


def tiny_smsr(seed=0, **kwargs):
    torch.manual_seed(seed)
    net = SMSR(**{**{k: v for k, v in TINY.items() if k != 'type'}, **kwargs}).eval()
    for module in net.body:  # channel masks about half sparse
        module.body.channel_mask.logits.data = torch.randn_like(module.body.channel_mask.logits)
    return net


def set_spatial_masks(net, masks):
    """Every SMM's spatial mask replaced by ``masks`` (N, 1, H, W) bool."""
    for module in net.body:
        module.spatial_mask.forward = lambda x, masks=masks: masks


def reference_forward(net, x, masks):
    """The network with hard masks as the paper defines a layer: plain convolutions of the masked input channels,
    ``conv(x * dense_in) * (dense_out + sparse_out * M) + conv(x * sparse_in) * M`` (independent of both forms)."""
    x0 = net.pixel_range(x)
    feat = net.head(x0)
    features, y = [], feat
    for module in net.body:
        block, m = module.body, masks.float()
        sparse = block.channel_mask.hard().float()[..., None, None]
        outs, h = [], y
        for layer, conv in enumerate(block.convs):
            keep = 1 - sparse[layer] + sparse[layer] * m
            if layer == 0:
                h = F.relu(conv(h) * keep)
            else:
                h = F.relu(conv(h * (1 - sparse[layer - 1])) * keep + conv(h * sparse[layer - 1]) * m)
            outs.append(h)
        y = module.attention(block.fuse(torch.cat(outs, 1))) + y
        features.append(y)
    y = net.collect(torch.cat(features, 1)) + feat
    up = F.interpolate(x0, scale_factor=net.upscale, mode='bicubic', align_corners=False)
    return net.pixel_range.inverse(net.tail(y) + up)


@pytest.mark.parametrize('upscale,params', [(2, 985_000), (3, 993_000), (4, 1_006_000)])
def test_the_papers_network_has_the_papers_parameters(upscale, params):
    with torch.device('meta'):
        net = SMSR(upscale=upscale)
    logits = sum(m.body.channel_mask.logits.numel() for m in net.body)
    assert abs(sum(p.numel() for p in net.parameters()) - logits - params) < 1_000  # (the paper counts no logits)


@pytest.mark.parametrize('keep', [0.0, 0.3, 1.0])
def test_sparse_and_dense_inference_equal_the_masked_convolutions(keep):
    net = tiny_smsr()
    x = torch.rand(2, 3, 13, 10, generator=torch.Generator().manual_seed(1))  # odd sizes, two images
    masks = torch.rand(2, 1, 13, 10, generator=torch.Generator().manual_seed(2)) < keep
    set_spatial_masks(net, masks)
    with torch.no_grad():
        expected = reference_forward(net, x, masks)
        sparse = net(x)
        net.inference = 'dense'
        dense = net(x)
        net.inference = 'sparse'
        set_spatial_masks(net, masks[1:])
        one = net(x[1:])
    assert (sparse - expected).abs().max() < 1e-5 and (dense - expected).abs().max() < 1e-5
    assert (one - expected[1:]).abs().max() < 1e-5
    assert net.mask_sparsity()['spatial_sparsity'] == pytest.approx(1 - masks[1].float().mean().item())


def test_the_learned_spatial_masks_and_every_channel_sparse_or_dense():
    x = torch.rand(1, 3, 12, 9, generator=torch.Generator().manual_seed(0))
    for dense_channels in (True, False):
        net = tiny_smsr(seed=3)
        for module in net.body:
            module.body.channel_mask.logits.data[..., 1] = -1.0 if dense_channels else 1.0
            module.body.channel_mask.logits.data[..., 0] = 0.0
        with torch.no_grad():
            sparse = net(x)
            net.inference = 'dense'
            assert (net(x) - sparse).abs().max() < 1e-5


def hand_flops(net, h, w, keep_sparse):
    """The masked layers' FLOPs by hand: every conv whole, or (``keep_sparse`` False) the dense channels' only."""
    flops, width = 0, net.body[0].body.convs[0].weight.shape[0]
    for module in net.body:
        sparse = module.body.channel_mask.hard()
        dense = [width] + [int((~s).sum()) for s in sparse]
        for layer in range(len(sparse)):
            flops += 2 * 9 * h * w * (width * width if keep_sparse else dense[layer] * dense[layer + 1])
        flops += 2 * h * w * width * (sparse.numel() if keep_sparse else sum(dense[1:]))
    return flops


def test_flops_from_the_masks_all_kept_is_dense_and_none_kept_the_dense_channels_only():
    net, (h, w) = tiny_smsr(), (12, 10)
    x = torch.rand(1, 3, h, w)
    set_spatial_masks(net, torch.ones(1, 1, h, w, dtype=torch.bool))
    everything = mask_cost(net, x)
    assert everything['sparse']['flops'] == everything['dense']['flops'] and everything['spatial_sparsity'] == 0
    set_spatial_masks(net, torch.zeros(1, 1, h, w, dtype=torch.bool))
    nothing = mask_cost(net, x)
    assert nothing['dense']['flops'] == everything['sparse']['flops']
    dense_channels_only = everything['sparse']['flops'] - hand_flops(net, h, w, True) + hand_flops(net, h, w, False)
    assert nothing['sparse']['flops'] == dense_channels_only and nothing['spatial_sparsity'] == 1
    # the cost model's multiplications and additions count the same products (and nothing it cannot count)
    assert everything['sparse']['mults'] - nothing['sparse']['mults'] == (everything['sparse']['flops']
                                                                         - nothing['sparse']['flops']) // 2
    assert not nothing['sparse']['outside_energy']['uncounted']


def test_freeze_bakes_hard_channel_masks_that_load_into_the_deploy_form(tmp_path):
    net = tiny_smsr()
    x = torch.rand(1, 3, 11, 14)
    with torch.no_grad():
        expected = net(x)
    state = freeze(net).state_dict()
    assert is_deploy_state(state) and not any(k.endswith('logits') for k in state)
    torch.save({'params': state}, tmp_path / 'deploy.pth')
    deployed = load_model(TINY, str(tmp_path / 'deploy.pth'))
    assert all(m.body.channel_mask.frozen for m in deployed.body)
    with torch.no_grad():
        assert torch.equal(deployed(x), expected)


def test_relaxed_masks_in_training_and_the_density_they_keep():
    net = tiny_smsr().train()
    for module in net.modules():
        if hasattr(module, 'temperature'):
            module.temperature, module.noise_generator = 0.5, torch.Generator().manual_seed(0)
    net(torch.rand(2, 3, 8, 8)).mean().backward()
    density = net.density()
    assert 0 < density.item() < 1 and density.requires_grad
    assert all(m.body.density is None for m in net.body)  # read once: the net copies again
    assert all(m.body.channel_mask.logits.grad.abs().sum() > 0 for m in net.body)
    assert all(m.spatial_mask.body[-1].weight.grad.abs().sum() > 0 for m in net.body)


def test_ghostsr_export_writes_the_sparse_form(tmp_path, capsys):
    net = tiny_smsr(num_block=1, num_layer=2)  # (export traces every op: the smallest network that has them all)
    torch.save({'params': net.state_dict()}, tmp_path / 'smsr.pth')
    ghostsr_main(['export', '--arch', 'SMSR', '--arch_args', 'num_feat=8', 'num_block=1', 'num_layer=2',
                  '--checkpoint', str(tmp_path / 'smsr.pth'), '--out', str(tmp_path / 'smsr.onnx'), '--check'])
    printed = capsys.readouterr().out
    assert 'freezing its 1 SMSR channel masks' in printed
    differences = [float(line.rsplit(' ', 1)[1]) for line in printed.splitlines() if 'largest difference' in line]
    assert len(differences) == 2 and max(differences) < 1e-5  # one image and two, dynamic sizes
    import onnx

    assert {'NonZero', 'MatMul', 'Gather'} <= {n.op_type for n in onnx.load(tmp_path / 'smsr.onnx').graph.node}


def test_benchmark_counts_flops_per_image_from_its_masks(tiny_benchmark, tmp_path):  # noqa: F811
    bench = tiny_benchmark
    net = tiny_smsr()
    checkpoint = tmp_path / 'smsr.pth'
    torch.save({'params': net.state_dict()}, checkpoint)
    options = write_options(tmp_path / 'smsr.yml', {'name': 'smsr', 'scale': 2, 'network_g': TINY,
                                                    'path': {'pretrain_network_g': str(checkpoint)}})
    benchmark(bench, options, '--latency_input', 'Tiny', '--latency_size', '20', '24')
    result = json.loads((bench['out'] / 'smsr_x2.json').read_text())
    images = result['sets']['Tiny']['images']
    ratios = [r['flops_ratio'] for r in images]
    assert all(0 < r < 1 for r in ratios) and len(set(ratios)) == len(ratios)  # each image its own masks
    assert result['flops'] == pytest.approx(sum(ratios) / len(ratios) * result['dense']['flops'])
    assert result['energy_pj'] < result['dense']['energy_pj']
    assert result['sparsity']['spatial'] == pytest.approx(sum(r['spatial_sparsity'] for r in images) / len(images))
    latency = result['latency']
    assert latency['input_kind'] == 'Tiny' and latency['input'] == [1, 3, 20, 24]
    net.inference = 'dense'
    assert latency['flops'] < latency['flops_dense'] == count_flops(net, torch.zeros(1, 3, 20, 24))


@pytest.mark.parametrize('edit,key', [
    (lambda o: o['network_g'].update(inference='sparce'), 'network_g.inference'),
    (lambda o: o['network_g'].update(num_layer=0), 'network_g.num_layer'),
    (lambda o: o['train']['sparsity_schedule'].update(end=-1), 'train.sparsity_schedule.end'),
    (lambda o: o['train']['sparsity_schedule'].update(spam=1), 'train.sparsity_schedule.spam'),
    (lambda o: o['train']['sparsity_opt'].update(loss_weight='high'), 'train.sparsity_opt.loss_weight'),
    (lambda o: o.update(model_type='SRModel'), 'model_type'),
])
def test_bad_mask_options_name_the_key(tmp_path, tiny_options, edit, key):
    opt = smsr_options(tiny_options)
    edit(opt)
    with pytest.raises(OptionError, match=f"key '{key}'"):
        check_options(write_options(tmp_path / 'o.yml', opt), is_train=True)


def smsr_options(tiny_options, **train):
    """The tiny training options with a tiny SMSR and the paper's mask schedules."""
    opt = {**tiny_options, 'name': 'tiny_smsr', 'model_type': 'SMSRModel', 'network_g': dict(TINY)}
    opt['train'] = {**tiny_options['train'],
                    'temperature_schedule': {'type': 'linear', 'start': 1, 'end': 0.4, 'span': 3, 'unit': 'iter'},
                    'sparsity_opt': {'type': 'SparsityLoss', 'loss_weight': 0.1},
                    'sparsity_schedule': {'type': 'linear', 'start': 0, 'end': 1, 'span': 2, 'unit': 'iter'},
                    **train}
    return opt
