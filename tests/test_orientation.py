"""The learned shift's start and learning rate: ghost_init.orientation and train.orientation_lr."""
import copy
import math

import pytest
import torch

from ghostsr_plugin.archs import named_ghost_layers
from ghostsr_plugin.init import init_from_plain
from ghostsr_plugin.init.from_options import ghost_init_from_section
from ghostsr_plugin.init.orientation import fit_orientations
from ghostsr_plugin.option_check import OptionError, check_options

from .conftest import write_options
from .test_ghost_init import SMALL_ARCHS, build_pair
from .test_ghost_init_training import PLAIN, save_plain

OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def shifted_kernel(kernel, offset):
    """The 3x3 kernel whose response is ``kernel``'s shifted by ``offset`` (out[y, x] = in[y - dy, x - dx]).

    ``kernel``'s row ``1 - dy`` and column ``1 - dx`` (for a non-zero component) must be zero,
    so that nothing falls off the kernel.
    """
    return torch.roll(kernel, shifts=(-offset[0], -offset[1]), dims=(-2, -1))


def plant_shifted_copies(plain, ghost, seed=0):
    """Make every ghosted plain conv's ghost-position filters shifted copies of the intrinsic ones
    (the first filters of each conv group, the ``order`` layout); returns {path: planted offset}."""
    generator = torch.Generator().manual_seed(seed)
    state, planted = plain.state_dict(), {}
    for path, layer in named_ghost_layers(ghost):
        offset = OFFSETS[int(torch.randint(len(OFFSETS), (1,), generator=generator))]
        weight = state[f'{path}.weight']
        if offset[0]:
            weight[:, :, 1 - offset[0], :] = 0
        if offset[1]:
            weight[:, :, :, 1 - offset[1]] = 0
        groups = layer.primary.groups
        per_group, intrinsic = layer.out_channels // groups, layer.primary.out_channels // groups
        for o in range(layer.out_channels):
            local = o % per_group
            if local >= intrinsic:
                source = o - local + local % intrinsic
                weight[o] = shifted_kernel(weight[source], offset)
                state[f'{path}.bias'][o] = state[f'{path}.bias'][source]
        planted[path] = offset
    plain.load_state_dict(state)
    return planted


@pytest.mark.parametrize('ghost_type', sorted(SMALL_ARCHS))
def test_fit_finds_the_planted_offset_of_every_layer(ghost_type):
    plain, ghost = build_pair(ghost_type)
    planted = plant_shifted_copies(plain, ghost)
    assert len(set(planted.values())) > 2  # the layers' offsets differ
    choices = init_from_plain(ghost, plain.state_dict(), 'order')
    fits = fit_orientations(ghost, plain, choices, torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(1)))
    found = {path: tuple(layer.offset()[0].tolist()) for path, layer in named_ghost_layers(ghost)}
    assert found == planted
    for path, errors in fits.items():  # the planted offset fits exactly (away from the border), no other does
        others = torch.cat([errors[:OFFSETS.index(planted[path]), 0], errors[OFFSETS.index(planted[path]) + 1:, 0]])
        assert errors[OFFSETS.index(planted[path]), 0] < 1e-3 * others.min(), path


@pytest.fixture
def section(tmp_path):
    return {'network': dict(PLAIN), 'checkpoint': save_plain(tmp_path / 'plain.pth'), 'method': 'cluster'}


def ghost_net(seed=0):
    from basicsr.archs import build_network

    torch.manual_seed(seed)
    return build_network({**PLAIN, 'type': 'GhostEDSR'})


def logits(net):
    return {path: layer.logits.detach().clone() for path, layer in named_ghost_layers(net)}


def test_zero_starts_every_layer_unshifted_with_the_margin(section):
    net = ghost_net()
    ghost_init_from_section(net, {**section, 'orientation': 'zero'})
    for path, value in logits(net).items():
        expected = torch.zeros(1, 9)
        expected[0, OFFSETS.index((0, 0))] = math.log(8)  # drawn half of the time at noise scale 1
        assert torch.equal(value, expected), path
        assert torch.softmax(value, -1)[0, 4] == pytest.approx(0.5)


def test_random_keeps_the_fresh_logits_and_fit_reads_the_training_set(section, tiny_options):
    fresh = logits(ghost_net())
    net = ghost_net()
    lines = ghost_init_from_section(net, {**section, 'orientation': 'random'})
    assert all(torch.equal(value, fresh[path]) for path, value in logits(net).items())
    assert not any('orientation' in line for line in lines)

    net = ghost_net()
    lines = ghost_init_from_section(net, {**section, 'orientation': 'fit'}, tiny_options)
    fitted = [line for line in lines if 'relative fit error of each offset' in line]
    assert len(fitted) == 4 and fitted[0].startswith('body.0.conv1: orientation (')
    for path, value in logits(net).items():
        assert sorted(value[0].tolist())[-2:] == [0, pytest.approx(math.log(8))], path


def model_options(tiny_options, **train):
    opt = copy.deepcopy(tiny_options)
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['datasets']['train'].update(phase='train', scale=2)
    opt['train'].update(train)
    return opt


@pytest.mark.parametrize('multiple', [1, 10])
def test_logits_step_orientation_lr_times_lr_without_weight_decay(tiny_options, multiple):
    from ghostsr_plugin.models.ghostsr_model import GhostSRModel

    lr = 1e-3
    opt = model_options(tiny_options, orientation_lr=multiple)
    opt['train']['optim_g'].update(lr=lr, weight_decay=0.5)
    model = GhostSRModel(opt)
    groups = model.optimizer_g.param_groups
    assert [g['weight_decay'] for g in groups] == [0.5, 0]
    assert [g['lr'] for g in groups] == [lr, multiple * lr]
    net = model.get_bare_model(model.net_g)
    logit_ids = {id(layer.logits) for _, layer in named_ghost_layers(net)}
    assert {id(p) for p in groups[1]['params']} == logit_ids and len(logit_ids) == 4

    # Adam's first step moves every parameter with a gradient by its group's lr: sign(grad) * lr
    # (with a negligible eps and without weight decay).
    for group in model.optimizer_g.param_groups:
        group.update(weight_decay=0, eps=1e-30)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    model.feed_data({'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    for name, p in net.named_parameters():
        step = (p.detach() - before[name]).abs()
        moved = step[step > 0]
        expected = multiple * lr if name.endswith('logits') else lr
        assert moved.numel() and torch.allclose(moved, torch.full_like(moved, expected), rtol=1e-3), name


@pytest.mark.parametrize('value, found', [(0, 'int 0'), (-2.5, 'float -2.5'), ('10x', "str '10x'"),
                                          (True, 'bool True'), (float('inf'), 'float inf')])
def test_bad_orientation_lr_fails_naming_the_key(tmp_path, tiny_options, value, found):
    tiny_options['train']['orientation_lr'] = value
    with pytest.raises(OptionError, match=r"o\.yml: key 'train\.orientation_lr': expected a positive number "
                                          rf'\(a multiple of train\.optim_g\.lr\), found {found}'):
        check_options(write_options(tmp_path / 'o.yml', tiny_options), is_train=True)
