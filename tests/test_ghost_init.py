"""Clustering initialization: intrinsic filters, index screening, weight transfer."""
import numpy as np
import pytest
import torch
from basicsr.archs.edsr_arch import EDSR
from basicsr.utils.registry import ARCH_REGISTRY
from sklearn.cluster import KMeans

from ghostsr_plugin.archs import GhostConv2d, named_ghost_layers
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.init import choose_intrinsic, init_from_plain
from ghostsr_plugin.init.relations import trace_relations


def planted(groups, dim=27, spread=0.05, seed=0):
    """Filters in planted clusters: ``groups`` lists each filter's cluster; returns (vectors, centers)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(groups) + 1, dim))
    return centers[groups] + spread * rng.normal(size=(len(groups), dim)), centers


def partition(labels):
    return {frozenset(np.flatnonzero(labels == g)) for g in np.unique(labels)}


def ghost_edsr(**kwargs):
    return ARCH_REGISTRY.get('GhostEDSR')(3, 3, upscale=2, **kwargs)


def test_one_intrinsic_filter_per_planted_cluster_nearest_its_center():
    groups = np.array([3, 0, 1, 3, 2, 0, 0, 1, 2, 3, 1, 0])
    vectors, _ = planted(groups)
    choice = choose_intrinsic(vectors, 4, 'cluster', seed=0)
    assert partition(choice.labels) == partition(groups)
    assert sorted(groups[choice.intrinsic]) == [0, 1, 2, 3]
    for g in range(4):  # the member nearest its cluster's mean
        members = np.flatnonzero(groups == g)
        nearest = members[np.linalg.norm(vectors[members] - vectors[members].mean(0), axis=1).argmin()]
        assert nearest in choice.intrinsic
        assert choice.labels[nearest] == list(choice.intrinsic).index(nearest)
    assert sorted(choice.sizes) == sorted(np.bincount(groups))
    again = choose_intrinsic(vectors, 4, 'cluster', seed=0)
    assert np.array_equal(again.intrinsic, choice.intrinsic) and np.array_equal(again.labels, choice.labels)


def test_clusters_are_placed_where_the_output_positions_match():
    # Output position p carries intrinsic channel p % 4: filters p and p + 4 belong together.
    groups = np.array([2, 0, 3, 1, 2, 0, 3, 1])
    vectors, _ = planted(groups)
    choice = choose_intrinsic(vectors, 4, 'cluster', seed=3)
    assert np.array_equal(choice.labels, np.arange(8) % 4)
    assert all(q in (i, i + 4) for q, i in zip(choice.intrinsic, range(4)))


def test_exact_duplicates_still_give_distinct_intrinsic_filters():
    vectors, _ = planted(np.array([0, 1, 0, 1, 2, 2, 0]), spread=0)  # 3 distinct filters, 4 clusters asked
    with pytest.warns(Warning):  # sklearn: fewer distinct points than clusters
        choice = choose_intrinsic(vectors, 4, 'cluster')
    assert len(set(choice.intrinsic)) == 4 and set(choice.labels) == {0, 1, 2, 3}


def test_order_keeps_the_first_filters():
    vectors, _ = planted(np.arange(6) % 3)
    choice = choose_intrinsic(vectors, 4, 'order')
    assert list(choice.intrinsic) == [0, 1, 2, 3] and list(choice.labels) == [0, 1, 2, 3, 0, 1]
    center_0 = vectors[[0, 4]].mean(0)
    assert choice.distances[4] == pytest.approx(np.linalg.norm(vectors[4] - center_0))


def test_screening_clusters_on_the_previous_layers_intrinsic_channels():
    """conv2 sees only conv1's intrinsic input channels: noise elsewhere must not matter."""
    c = 12
    plain = EDSR(3, 3, num_feat=c, num_block=1, upscale=2).state_dict()
    rng = np.random.default_rng(1)
    # conv1: clusters {q, q+4, q+8} with filter q exactly at the center -> intrinsic [0, 1, 2, 3].
    centers = rng.normal(size=(4, c * 9))
    noise = 0.05 * rng.normal(size=(4, c * 9))
    conv1 = np.concatenate([centers, centers + noise, centers - noise])
    plain['body.0.conv1.weight'] = torch.tensor(conv1, dtype=torch.float32).view(c, c, 3, 3)
    # conv2: planted clusters on input channels 0-3, loud noise on the others.
    groups = np.array([0, 1, 2, 3, 1, 2, 3, 0, 2, 3, 0, 1])
    on_intrinsic, _ = planted(groups, dim=4 * 9, seed=2)
    conv2 = np.concatenate([on_intrinsic.reshape(c, 4, 9), 20 * rng.normal(size=(c, c - 4, 9))], axis=1)
    plain['body.0.conv2.weight'] = torch.tensor(conv2, dtype=torch.float32).view(c, c, 3, 3)

    choices = init_from_plain(ghost_edsr(num_feat=c, num_block=1, ratio=1 / 3), plain)  # 4 intrinsic
    assert list(choices['body.0.conv1'].intrinsic) == [0, 1, 2, 3]
    assert partition(choices['body.0.conv2'].labels) == partition(groups)
    unscreened = KMeans(4, n_init=10, random_state=0).fit(conv2.reshape(c, -1)).labels_
    assert partition(unscreened) != partition(groups)  # the noise would have decided without screening


@pytest.fixture(scope='module')
def plain_and_ghost():
    torch.manual_seed(0)
    plain = EDSR(3, 3, num_feat=16, num_block=2, upscale=2)
    for p in plain.parameters():  # random biases too, so that copying them is visible
        torch.nn.init.normal_(p, std=0.1)
    ghost = ghost_edsr(num_feat=16, num_block=2)
    fresh = {k: v.clone() for k, v in ghost.state_dict().items()}
    choices = init_from_plain(ghost, plain.state_dict(), 'cluster', seed=0)
    return plain.state_dict(), fresh, ghost.state_dict(), choices


def test_plain_tensors_are_copied_bit_for_bit(plain_and_ghost):
    plain, fresh, ghost, choices = plain_and_ghost
    outside = [k for k in ghost if not k.startswith('body.')]
    assert {k.split('.')[0] for k in outside} == {'conv_first', 'conv_after_body', 'upsample', 'conv_last'}
    for key in outside:
        assert torch.equal(ghost[key], plain[key]), key
    for block in range(2):
        conv1, conv2 = f'body.{block}.conv1', f'body.{block}.conv2'
        rows = choices[conv1].intrinsic
        assert torch.equal(ghost[f'{conv1}.primary.weight'], plain[f'{conv1}.weight'][rows])
        for conv in (conv1, conv2):
            assert torch.equal(ghost[f'{conv}.primary.bias'], plain[f'{conv}.bias'][choices[conv].intrinsic])
            assert torch.equal(ghost[f'{conv}.logits'], fresh[f'{conv}.logits'])  # fresh init kept


def coefficients(vectors, choice):
    """Least-squares coefficient of each filter on its representative, computed directly."""
    vectors = vectors.flatten(1).double()
    rep = vectors[choice.intrinsic[choice.labels]]
    return (vectors * rep).sum(1) / (rep * rep).sum(1)


def fold_reference(weight, offset, choice, feeder_vectors):
    """Intrinsic column q gets sum over plain channels o labelled q of a_o * column o; ghost columns 0."""
    folded = torch.zeros_like(weight)
    a = coefficients(feeder_vectors, choice)
    for o, q in enumerate(choice.labels):
        folded[:, offset + q] += a[o].item() * weight[:, offset + o]
    return folded


def test_inputs_from_a_ghost_layer_fold_their_clusters(plain_and_ghost):
    plain, _, ghost, choices = plain_and_ghost
    weight = plain['body.1.conv2.weight'][choices['body.1.conv2'].intrinsic]
    expected = fold_reference(weight, 0, choices['body.1.conv1'], plain['body.1.conv1.weight'])
    assert torch.allclose(ghost['body.1.conv2.primary.weight'], expected, atol=1e-6)
    assert not ghost['body.1.conv2.primary.weight'][:, 8:].any()  # ghost channels start at zero
    a = coefficients(plain['body.1.conv1.weight'], choices['body.1.conv1'])
    assert torch.all(a[choices['body.1.conv1'].intrinsic] == 1) and (a != 1).any()  # not a plain sum


def duplicated_plain(c, num_block, seed=0):
    """A plain EDSR whose body convs hold every filter twice.

    conv1: random pairs (any pairing can be folded into conv2); conv2, which writes the
    residual stream: filter p + c/2 = filter p, the Ghost layer's own layout.
    """
    torch.manual_seed(seed)
    net = EDSR(3, 3, num_feat=c, num_block=num_block, upscale=2)
    state = net.state_dict()
    half = c // 2
    for block in range(num_block):
        for conv, twin in ((f'body.{block}.conv1', torch.randperm(c)), (f'body.{block}.conv2', torch.arange(c))):
            pairs = twin.view(2, half)
            for key in (f'{conv}.weight', f'{conv}.bias'):
                state[key][pairs[1]] = state[key][pairs[0]]
    net.load_state_dict(state)
    return net.eval()


def test_ghost_model_computes_the_plain_function_when_filters_are_duplicates():
    plain = duplicated_plain(16, num_block=3)
    x = torch.rand(1, 3, 12, 10)
    errors = {}
    for method in ('cluster', 'order'):
        ghost = ghost_edsr(num_feat=16, num_block=3).eval()
        init_from_plain(ghost, plain.state_dict(), method)
        with torch.no_grad():
            for name, p in ghost.named_parameters():
                if name.endswith('logits'):  # orientation (0, 0): ghosts are unshifted copies
                    p.zero_()[..., 4] = 1
            errors[method] = (ghost(x) - plain(x)).abs().max().item()
    assert errors['cluster'] < 1e-4
    assert errors['order'] > 1e-2  # conv1's pairs are not in the first-filters layout


def test_wrong_shape_fails_naming_the_key_and_both_shapes():
    ghost = ghost_edsr(num_feat=16, num_block=2)
    before = {k: v.clone() for k, v in ghost.state_dict().items()}
    plain = EDSR(3, 3, num_feat=16, num_block=2, upscale=2).state_dict()
    plain['body.1.conv2.weight'] = plain['body.1.conv2.weight'][:, :8]
    with pytest.raises(InputError, match=r"'body.1.conv2.weight' has shape \(16, 8, 3, 3\).*needs \(16, 16, 3, 3\)"):
        init_from_plain(ghost, plain, plain_name='teacher.pth')
    assert all(torch.equal(v, before[k]) for k, v in ghost.state_dict().items())  # untouched
    with pytest.raises(InputError, match=r"teacher.pth: key 'body.2.conv1.bias' \(shape \(16,\)\) has no counterpart"):
        init_from_plain(ghost, EDSR(3, 3, num_feat=16, num_block=3, upscale=2).state_dict(), plain_name='teacher.pth')


class DenseToy(torch.nn.Module):
    """Layer ``c`` reads concat(input, a, b), as a dense block's third layer does; modules declared out of order."""

    def __init__(self):
        super().__init__()
        self.c = GhostConv2d(20, 8, 3)
        self.b = GhostConv2d(8, 8, 3)
        self.a = GhostConv2d(4, 8, 3)

    def forward(self, x):
        a = self.a(x)
        b = self.b(torch.relu(a))
        return self.c(torch.cat([x, torch.relu(a), 0.5 * b], dim=1))


def dense_toy_plain(seed=0):
    torch.manual_seed(seed)
    return {f'{n}.{p}': torch.randn(8, c_in, 3, 3) if p == 'weight' else torch.randn(8)
            for n, c_in in (('a', 4), ('b', 8), ('c', 20)) for p in ('weight', 'bias')}


def test_concatenated_inputs_are_screened_segment_by_segment():
    plain = dense_toy_plain()
    net = DenseToy()
    choices = init_from_plain(net, plain, seed=1)
    assert list(choices) == ['a', 'b', 'c']  # forward order, not module order
    a, b = choices['a'], choices['b']
    screened = torch.cat([plain['c.weight'][:, :4], plain['c.weight'][:, 4 + a.intrinsic],
                          plain['c.weight'][:, 12 + b.intrinsic]], dim=1)
    expected = choose_intrinsic(screened.flatten(1).double().numpy(), 4, seed=1)
    assert np.array_equal(choices['c'].intrinsic, expected.intrinsic)

    weight = plain['c.weight'][expected.intrinsic]
    folded = fold_reference(weight, 4, a, plain['a.weight'])
    folded += fold_reference(weight, 12, b, plain['b.weight'][:, a.intrinsic])
    folded[:, :4] = weight[:, :4]  # the network input: kept as is
    assert torch.allclose(net.c.primary.weight, folded, atol=1e-6)


class OpaqueInside(torch.nn.Module):
    """Branches on a tensor's value, which fx cannot trace."""

    def __init__(self):
        super().__init__()
        self.a = GhostConv2d(4, 8, 3)

    def forward(self, x):
        return self.a(x) if x.sum() > 0 else self.a(-x)


class PartlyUntraceable(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.inner = OpaqueInside()
        self.b = GhostConv2d(8, 8, 3)

    def forward(self, x):
        return self.b(torch.relu(self.inner(x)))


def test_a_layer_the_trace_cannot_follow_gets_the_first_filters_with_a_warning():
    plain = dense_toy_plain()
    plain = {'inner.a.weight': plain['a.weight'], 'inner.a.bias': plain['a.bias'],
             'b.weight': plain['b.weight'], 'b.bias': plain['b.bias']}
    net = PartlyUntraceable()
    with pytest.warns(UserWarning, match=r"'inner.a': 'inner' cannot be traced \(TraceError.*first filters"):
        choices = init_from_plain(net, plain, 'cluster', seed=0)
    assert list(choices['inner.a'].intrinsic) == [0, 1, 2, 3]
    unscreened = choose_intrinsic(plain['b.weight'].flatten(1).double().numpy(), 4, 'cluster', seed=0)
    assert np.array_equal(choices['b'].intrinsic, unscreened.intrinsic)  # its input comes out of 'inner'
    x = torch.rand(1, 4, 6, 6)
    assert net.eval()(x).shape == (1, 8, 6, 6)  # the trace left the modules working


SMALL_ARCHS = {  # every Ghost arch of the project, small: (plain arch, arguments)
    'GhostEDSR': ('EDSR', dict(num_feat=16, num_block=2)),
    'GhostRDN': ('RDN', dict(num_feat=8, num_block=2, num_layer=3, num_grow_ch=8)),
    'GhostCARN': ('CARN', dict(num_feat=8)),
    'GhostCARN_M': ('CARN_M', dict(num_feat=16)),
}


def build_pair(ghost_type, seed=0):
    plain_type, kwargs = SMALL_ARCHS[ghost_type]
    torch.manual_seed(seed)
    plain = ARCH_REGISTRY.get(plain_type)(3, 3, upscale=2, **kwargs).eval()
    return plain, ARCH_REGISTRY.get(ghost_type)(3, 3, upscale=2, **kwargs).eval()


def hand_written_sources(ghost_type, ghost):
    """What each Ghost arch stated by hand before the trace replaced the tables."""
    layers = [path for path, _ in named_ghost_layers(ghost)]
    if ghost_type == 'GhostRDN':
        return {f'rdbs.{b}.convs.{i}': None if i == 0 else [8, *(f'rdbs.{b}.convs.{j}' for j in range(i))]
                for b in range(2) for i in range(3)}
    if ghost_type == 'GhostCARN_M':
        return dict.fromkeys(layers)
    return {path: [path[:-1] + '1'] if path.endswith('conv2') else None for path in layers}


def test_the_traced_relations_are_what_each_ghost_arch_stated_by_hand():
    assert {name for name in ARCH_REGISTRY.keys() if name.startswith('Ghost')} == {*SMALL_ARCHS, 'Ghost'}
    for ghost_type in SMALL_ARCHS:
        plain, ghost = build_pair(ghost_type)
        relations = trace_relations(ghost)
        assert relations.sources == hand_written_sources(ghost_type, ghost) and not relations.untraced
        assert relations.order == [path for path, _ in named_ghost_layers(ghost)]
        init_from_plain(ghost, plain.state_dict())


@pytest.mark.parametrize('ghost_type', ['GhostEDSR', 'GhostRDN', 'GhostCARN', 'GhostCARN_M'])
def test_ghost_arch_computes_its_plain_arch_when_filters_repeat_in_ghost_layout(ghost_type):
    """Plain filter p equal to filter p mod c_i in every ghosted conv (within each conv group
    of a group conv: local filter p equal to local filter p mod c_i / groups): the clustering
    must find those pairs, place them where the Ghost layer's output carries them, and copy
    everything else, so that the Ghost model (unshifted) computes the plain function."""
    plain, ghost = build_pair(ghost_type)
    state = plain.state_dict()
    for path, layer in named_ghost_layers(ghost):
        groups = layer.primary.groups
        per_group, intrinsic_per_group = layer.out_channels // groups, layer.primary.out_channels // groups
        position = torch.arange(layer.out_channels)
        source = position // per_group * per_group + position % per_group % intrinsic_per_group
        for key in (f'{path}.weight', f'{path}.bias'):
            state[key] = state[key][source]
    plain.load_state_dict(state)
    init_from_plain(ghost, state, 'cluster')
    with torch.no_grad():
        for name, p in ghost.named_parameters():
            if name.endswith('logits'):
                p.zero_()[..., 4] = 1  # orientation (0, 0)
        x = torch.rand(1, 3, 10, 12)
        assert (ghost(x) - plain(x)).abs().max() < 1e-4


def test_group_convs_choose_intrinsic_filters_within_each_group():
    plain, ghost = build_pair('GhostCARN_M')
    state = plain.state_dict()
    choices = init_from_plain(ghost, state, seed=0)
    path = 'body.units.1.units.0.conv2'
    layer, choice = ghost.get_submodule(path), choices[path]
    groups, per_group = layer.primary.groups, layer.out_channels // layer.primary.groups
    assert groups == 4
    weight = state[f'{path}.weight']
    for g, part in enumerate(np.split(np.arange(layer.out_channels), groups)):
        alone = choose_intrinsic(weight[part].flatten(1).double().numpy(), 2, seed=0)
        assert list(choice.intrinsic[2 * g:2 * g + 2]) == list(part[alone.intrinsic])
        assert np.all(choice.intrinsic[2 * g:2 * g + 2] // per_group == g)
    assert torch.equal(ghost.state_dict()[f'{path}.primary.weight'], weight[choice.intrinsic])
