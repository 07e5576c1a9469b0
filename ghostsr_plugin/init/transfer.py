"""Initialize a Ghost model from a pretrained plain model of the same shape.

The Ghost layer at module path ``P`` replaces the plain conv at ``P``: plain ``P.weight``
and ``P.bias`` become ``P.primary.weight`` and ``P.primary.bias`` (its rows are the chosen
intrinsic filters, see ``intrinsic``). Every other tensor of the Ghost model has a
counterpart of the same name and shape (head, upsampler, tail, layers not ghosted) and is
copied as is; the Ghost layers' own tensors besides ``primary`` (the orientation logits)
keep their fresh initialization.

Index screening. Where a Ghost layer's input channels come from is traced
(``relations``): segments in channel order, each an earlier Ghost layer's whole output
or a number of channels from anything else (a plain layer, a residual stream mixing
several layers, the input of a dense block), kept as they are; ``None`` for an input with
nothing to screen. Where a segment is a Ghost layer, the plain filters are clustered on
the input channels that layer keeps as intrinsic (in their new order), as GhostSR does. A
Ghost layer whose real conv is a group conv (CARN-M) lays its output out per conv group,
as the plain group conv does (each group's ghosts follow that group's intrinsic channels,
see ``GhostConv2d``), so its intrinsic filters are chosen within each conv group and
placed on that group's positions; its input is not screened (its groups read fixed input
channels), and its output channel ``o`` stands in for plain filter ``o`` as far as the
placement allows, where later layers read it unchanged. A Ghost layer the trace cannot
follow gets the first filters (``order``), which keep its first output channels in place
for whatever reads them, with a warning naming it.

Input channels fed by a Ghost layer. In the plain model, the feeding layer's channel ``o``
enters through the weight column ``W[:, o]``. In the Ghost model only the intrinsic
channels are computed, and intrinsic channel ``q`` stands in for every plain channel
labelled ``q`` (its cluster). Each plain contribution ``W[:, o] x_o`` is replaced by its
least-squares estimate from the representative's response, ``a_o W[:, o] x_q``, where
``a_o = <v_o, r_q> / <r_q, r_q>`` is the coefficient of filter ``v_o`` on representative
``r_q`` (exact for the pre-activations under white input; see
``IntrinsicChoice.coefficients``). So the input column of intrinsic channel ``q`` is
``sum_{o labelled q} a_o W[:, o]``, and the input columns of the ghost (shifted) channels
start at zero: they receive gradient from the first step (the orientation logits from the
second). Exact duplicates get ``a = 1``, and then the Ghost model computes the plain
function exactly (with unshifted ghosts); an unrelated member gets ``a ~ 0`` and is
dropped instead of being fed a wrong feature. The simpler rules are worse in principle:
summing the cluster's columns (``a = 1``) adds the full error of every loose member, and
copying the columns unchanged feeds each ghost channel's column with a shifted copy of
another filter's response.
"""
import warnings

import numpy as np
import torch
from tqdm import tqdm

from ghostsr_plugin.archs import named_ghost_layers
from ghostsr_plugin.errors import InputError

from .intrinsic import choose_intrinsic
from .relations import trace_relations


def _plain_key(key, layers):
    """The plain model's key for a Ghost model key; None for a Ghost layer's own tensors."""
    for path in layers:
        if key.startswith(f'{path}.primary.'):
            return path + key[len(path) + len('.primary'):]
        if key.startswith(f'{path}.'):
            return None
    return key


def plain_counterparts(net, plain_state, plain_name='the plain model'):
    """Ghost key -> plain key; fails on the first key without a counterpart of the right shape.

    A Ghost layer's ``primary.weight`` needs a plain weight with all of the layer's output
    channels; every other tensor needs one of the same shape.
    """
    layers = dict(named_ghost_layers(net))
    mapping = {}
    for key, value in net.state_dict().items():
        plain_key = _plain_key(key, layers)
        if plain_key is None:
            continue
        expected = tuple(value.shape)
        path = plain_key.rsplit('.', 1)[0]
        if path in layers:
            expected = (layers[path].out_channels, *expected[1:])
        if plain_key not in plain_state:
            raise InputError(f"{plain_name} has no key '{plain_key}' (shape {expected}) for {type(net).__name__}'s "
                             f"'{key}'")
        found = tuple(plain_state[plain_key].shape)
        if found != expected:
            raise InputError(f"{plain_name}: key '{plain_key}' has shape {found}, {type(net).__name__}'s '{key}' "
                             f'needs {expected}')
        mapping[key] = plain_key
    unused = sorted(set(plain_state) - set(mapping.values()))
    if unused:
        raise InputError(f"{plain_name}: key '{unused[0]}' (shape {tuple(plain_state[unused[0]].shape)}) has no "
                         f'counterpart in {type(net).__name__}')
    return mapping


def screening(sources, choices, layers, in_channels):
    """Input columns to cluster on, and the fold matrix of plain to Ghost input columns.

    ``sources``: the layer's input segments (see ``relations``), whose Ghost layers are in
    ``choices``. Returns ``(columns, fold)``: ``columns`` are the plain input channels the
    clustering sees; ``fold`` (c_in, c_in) maps plain input columns to Ghost input columns
    (``W_ghost = W_plain @ fold`` over the input axis).
    """
    columns, fold, offset = [], torch.zeros(in_channels, in_channels, dtype=torch.float64), 0
    for segment in [in_channels] if sources is None else sources:
        width = segment if isinstance(segment, int) else layers[segment].out_channels
        plain = offset + np.arange(width)
        if isinstance(segment, int):
            columns.extend(plain)
            fold[plain, plain] = 1
        else:
            choice = choices[segment]
            columns.extend(offset + choice.intrinsic)
            fold[plain, offset + choice.labels] = torch.as_tensor(choice.coefficients)
        offset += width
    return np.asarray(columns), fold


@torch.no_grad()
def init_from_plain(net, plain_state, method='cluster', seed=0, plain_name='the plain model', progress=False):
    """Initialize Ghost model ``net`` in place from the plain state dict ``plain_state``.

    Checks every counterpart first (``InputError`` naming the first mismatching key and
    both shapes), so a failure leaves ``net`` untouched. Ghost layers are processed in
    forward order, as traced. Returns ``{layer path: IntrinsicChoice}``, in that order.
    """
    layers = dict(named_ghost_layers(net))
    if not layers:
        raise InputError(f'{type(net).__name__} has no Ghost layers: nothing to initialize (a plain model '
                         'loads pretrained weights with path.pretrain_network_g)')
    mapping = plain_counterparts(net, plain_state, plain_name)
    relations = trace_relations(net)
    for path, reason in relations.untraced.items():
        warnings.warn(f"ghost init: '{path}': {reason}; its intrinsic filters are the first filters", stacklevel=2)
    state = net.state_dict()
    for key, plain_key in mapping.items():
        state[key] = plain_state[plain_key].clone()

    choices = {}
    for path in tqdm(relations.order, desc=f'ghost init ({method})', unit='layer', disable=not progress):
        layer = layers[path]
        weight = plain_state[f'{path}.weight'].to(torch.float64)
        columns, fold = screening(relations.sources[path], choices, layers, weight.shape[1])
        vectors = weight[:, torch.as_tensor(columns)].flatten(1).numpy()
        layer_method = 'order' if path in relations.untraced else method
        choice = choose_intrinsic(vectors, layer.primary.out_channels, layer_method, seed, layer.primary.groups)
        choices[path] = choice
        rows = torch.as_tensor(choice.intrinsic)
        primary = torch.einsum('oikl,ij->ojkl', weight[rows], fold)
        state[f'{path}.primary.weight'] = primary.to(state[f'{path}.primary.weight'].dtype)
        if f'{path}.primary.bias' in state:
            state[f'{path}.primary.bias'] = plain_state[f'{path}.bias'][rows].clone()
    net.load_state_dict(state)
    return choices


def summary_lines(choices):
    """One line per Ghost layer: filters, clusters, cluster sizes, mean distance to center.

    The distance is also given relative to the mean filter norm: near 0, the layer's
    filters are near-duplicates of their representatives; near 1, they are unrelated.
    """
    lines = []
    for path, choice in choices.items():
        sizes = choice.sizes
        lines.append(f'{path}: {len(choice.labels)} filters -> {len(sizes)} clusters, sizes min {sizes.min()} / '
                     f'median {np.median(sizes):g} / max {sizes.max()} ({np.sum(sizes == 1)} singletons), '
                     f'mean distance to center {choice.distances.mean():.3g} '
                     f'({choice.distances.mean() / choice.norms.mean():.2f} of the mean filter norm)')
    return lines
