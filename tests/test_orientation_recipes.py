"""Issue 28's recipes for the learned shift: softmax relaxation, search by loss, hold to the end."""
import copy
import random
import re
import shutil

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ghostsr_plugin.archs import GhostConv2d
from ghostsr_plugin.option_check import OptionError, check_options
from ghostsr_plugin.orientation_search import calibration_batches, candidate_losses, choose, search

from .conftest import write_options
from .test_resume import logged, train_options


def shifted(x, dy, dx):
    """``out[..., i, j] = x[..., i - dy, j - dx]``, zero outside, for |dy|, |dx| <= 1 (by padding)."""
    h, w = x.shape[-2:]
    return F.pad(x, (1, 1, 1, 1))[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def test_softmax_relaxation_mixes_every_offset_with_the_exact_gradient():
    torch.manual_seed(0)
    layer = GhostConv2d(3, 8, ratio=0.5, max_shift=1, orientation_groups=2).double()
    layer.relaxation, layer.temperature = 'softmax', 0.7
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    out = layer(x)
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()

    logits = layer.logits.detach().clone().requires_grad_()
    weights = torch.softmax(logits / 0.7, -1)
    x1 = layer.primary(x).detach()
    offsets = [(k // 3 - 1, k % 3 - 1) for k in range(9)]
    ghosts = [sum(weights[g, k] * shifted(x1[:, 2 * g:2 * g + 2], *offsets[k]) for k in range(9)) for g in range(2)]
    expected = torch.cat([x1, *ghosts], 1)
    torch.testing.assert_close(out.detach(), expected.detach())
    (expected * upstream).sum().backward()
    torch.testing.assert_close(layer.logits.grad, logits.grad)
    assert layer.last_sampled.tolist() == weights.argmax(-1).tolist()


def test_centered_gradient_is_the_straight_through_one_minus_its_mean():
    torch.manual_seed(0)
    layer = GhostConv2d(3, 8, ratio=0.5, orientation_groups=2)
    layer.temperature, x = 0.5, torch.randn(2, 3, 6, 7)
    grads = {}
    for centered in (False, True):
        layer.centered_gradient, layer.logits.grad = centered, None
        layer.noise_generator = torch.Generator().manual_seed(3)  # the same draw: the same offsets
        (layer(x) * torch.arange(6 * 7.).view(6, 7)).sum().backward()
        grads[centered] = layer.logits.grad.clone()
    torch.testing.assert_close(grads[True], grads[False] - grads[False].mean(-1, keepdim=True))
    assert grads[False].mean(-1).abs().min() > 0  # (a shared part to drop)


def planted_net():
    """One Ghost layer whose real conv copies its input: the target is its input and a shifted copy."""
    layer = GhostConv2d(2, 4, ratio=0.5, max_shift=1)
    with torch.no_grad():
        layer.primary.weight.zero_()
        layer.primary.bias.zero_()
        for c in range(2):
            layer.primary.weight[c, c, 1, 1] = 1
    return nn.Sequential(layer)


def test_search_finds_a_planted_offset_and_writes_it_into_every_copy():
    torch.manual_seed(0)
    net = planted_net()
    twin = copy.deepcopy(net)
    x = torch.randn(4, 2, 8, 8)
    batches = [(x, torch.cat([x, shifted(x, 1, -1)], 1))]
    losses = candidate_losses(net, net[0], 0, batches, F.l1_loss)
    by_hand = []
    for k in range(9):  # each offset made the argmax of a copy, run as it is
        probe = copy.deepcopy(net)
        choose(probe[0], 0, k)
        by_hand.append(F.l1_loss(probe.eval()(x), batches[0][1]).item())
    torch.testing.assert_close(losses, torch.tensor(by_hand))
    assert int(losses.argmin()) == 6 and losses[6] == 0  # (dy, dx) = (1, -1) is row-major index 6

    records = search(net, batches, F.l1_loss, also=[twin])
    assert net[0].offset().tolist() == twin[0].offset().tolist() == [[1, -1]]
    assert records[0]['layer'] == '0' and records[0]['after'] == [[1, -1]] and len(records[0]['losses'][0]) == 9
    assert net.training  # the caller's mode is restored


def test_calibration_batches_are_the_seeds_and_leave_the_random_state_alone(tiny_options):
    dataset_opt = {**tiny_options['datasets']['train'], 'scale': 2}  # (as BasicSR's parse completes it)
    states = random.getstate(), torch.get_rng_state()
    first = calibration_batches(dataset_opt, 2, 7, 'cpu')
    assert random.getstate() == states[0] and torch.equal(torch.get_rng_state(), states[1])
    again, other = calibration_batches(dataset_opt, 2, 7, 'cpu'), calibration_batches(dataset_opt, 2, 8, 'cpu')
    assert [lq.shape for lq, _ in first] == [(4, 3, 16, 16)] * 2 and first[0][1].shape == (4, 3, 32, 32)
    assert all(torch.equal(a, b) for pair, same in zip(first, again) for a, b in zip(pair, same))
    assert not torch.equal(first[0][0], other[0][0])


@pytest.mark.parametrize('train,key,fragment', [
    ({'orientation_relaxation': 'soft'}, 'train.orientation_relaxation',
     "expected one of ['gumbel_max', 'softmax'], found 'soft'"),
    ({'orientation_relaxation': 'softmax'}, 'train.orientation_relaxation', 'set train.temperature_schedule.hold_from'),
    ({'orientation_search': 5}, 'train.orientation_search', 'expected a section'),
    ({'orientation_gradient': 'ste'}, 'train.orientation_gradient',
     "expected one of ['straight_through', 'centered'], found 'ste'"),
    ({'orientation_search': {'iter': 0}}, 'train.orientation_search.iter',
     'expected an integer in [1, train.total_iter = 4], found 0'),
    ({'orientation_search': {'iter': 2, 'batch': 3}}, 'train.orientation_search.batch', 'not an option'),
    ({'orientation_search': {'iter': 2, 'batches': 1.5}}, 'train.orientation_search.batches',
     'expected an integer >= 1, found 1.5'),
])
def test_bad_recipe_options_name_the_key(tmp_path, tiny_options, train, key, fragment):
    tiny_options['train'].update(train)
    with pytest.raises(OptionError) as info:
        check_options(write_options(tmp_path / 'o.yml', tiny_options), is_train=True)
    assert f"'{key}'" in str(info.value) and fragment in str(info.value)


def test_softmax_then_hold_then_search_resume_exactly(tmp_path, tiny_options, run_cli):
    """Softmax relaxation to iteration 4, held from 5, a search at 5 (1 calibration batch); resumed from 2."""
    def recipe(name):
        opt = train_options(tiny_options, name, 6)
        opt['train']['temperature_schedule']['hold_from'] = 4
        opt['train'].update(orientation_relaxation='softmax', orientation_search={'iter': 5, 'batches': 1})
        return write_options(tmp_path / f'{name}.yml', opt)

    run_cli('basicsr', 'train', '-opt', recipe('whole'))
    # the run 'parts' was interrupted after iteration 2: its state and weights then, and nothing else
    for folder, file in (('training_states', '2.state'), ('models', 'net_g_2.pth')):
        (tmp_path / 'experiments' / 'parts' / folder).mkdir(parents=True)
        shutil.copy(tmp_path / 'experiments' / 'whole' / folder / file, tmp_path / 'experiments' / 'parts' / folder)
    run_cli('basicsr', 'train', '-opt', recipe('parts'), '--auto_resume')

    exps = {name: tmp_path / 'experiments' / name for name in ('whole', 'parts')}
    searches = {n: logged(e, r'Ghost orientation search on 1 calibration batches, .*: (.*)') for n, e in exps.items()}
    assert searches['parts'] == searches['whole'] and len(searches['whole']) == 1
    states = {n: torch.load(e / 'models' / 'net_g_latest.pth', weights_only=True) for n, e in exps.items()}
    for name, value in states['whole']['params'].items():
        assert torch.equal(states['parts']['params'][name], value), name
    # held from iteration 5: the logits the search wrote are the final ones, and their argmax is what it chose
    chosen = re.findall(r'(\S+) \(-?\d, -?\d\) -> \((-?\d), (-?\d)\)', searches['whole'][0])
    final = {name.removesuffix('.logits'): value for name, value in states['whole']['params'].items()
             if name.endswith('logits')}
    assert [layer for layer, _, _ in chosen] == list(final) and len(final) == 4
    for (layer, dy, dx), logits in zip(chosen, final.values()):
        k = int(logits.argmax())
        assert (int(dy), int(dx)) == (k // 3 - 1, k % 3 - 1), layer


def test_a_compiled_softmax_step_trains_as_the_eager_one(tmp_path, tiny_options, monkeypatch):
    """Under train.compile the softmax temperature is a graph input: one graph while it falls, the eager weights."""
    from torch._dynamo.utils import counters

    from ghostsr_plugin.cli import basicsr_main

    monkeypatch.chdir(tmp_path)
    states = {}
    for name, fast in (('eager', {}), ('compiled', {'compile': {'backend': 'aot_eager', 'fullgraph': True}})):
        opt = train_options(tiny_options, name, 4)
        opt['train']['temperature_schedule']['hold_from'] = 3  # softmax at 1, 0.8, 0.64, then held
        opt['train'].update(orientation_relaxation='softmax', **fast)
        counters.clear()
        basicsr_main(['train', '-opt', write_options(tmp_path / f'{name}.yml', opt)])
        states[name] = torch.load(tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth', weights_only=True)
    assert counters['stats']['unique_graphs'] == 2  # the learning forward and the held one, each compiled once
    for key, value in states['eager']['params'].items():
        torch.testing.assert_close(states['compiled']['params'][key], value, rtol=1e-4, atol=1e-5, msg=key)
