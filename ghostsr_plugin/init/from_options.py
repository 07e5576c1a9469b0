"""The ``ghost_init`` option section: start ``network_g`` from a pretrained plain checkpoint.

```yaml
ghost_init:
  network:                # the plain network (default: network_g's base, or its plain arch without the Ghost keys)
    type: EDSR
    num_in_ch: 3
    ...
  checkpoint: experiments/EDSR_x2/models/net_g_latest.pth   # BasicSR format
  param_key: params_ema   # which weights of the checkpoint: params (default) or params_ema
  method: cluster         # cluster (k-means, GhostSR) or order (the first filters)
  seed: 0                 # k-means seed (default 0)
  orientation: fit        # starting orientation: fit (default), zero or random, see .orientation
```

``orientation: fit`` reads a calibration batch from the option file's ``datasets.train``.

``GhostSRModel`` runs it once before training (never on resume); ``ghostsr cluster-init``
runs it offline.
"""
import inspect
import os.path as osp

import torch
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.registry import ARCH_REGISTRY
from torch import distributed as dist

from ghostsr_plugin.archs.conversion import base_section
from ghostsr_plugin.evaluate import load_model

from .intrinsic import METHODS
from .orientation import ORIENTATIONS, calibration_batch, fit_orientations, orientation_lines, set_zero_orientations
from .transfer import init_from_plain, summary_lines

SECTION_KEYS = ('network', 'checkpoint', 'param_key', 'method', 'seed', 'orientation')
PARAM_KEYS = ('params', 'params_ema')
DEFAULT_ORIENTATION = 'fit'  # docs/ablation.md: above random at every stage of the teacher-based fine-tunes


def plain_network(network_g):
    """The plain network a Ghost ``network_g`` section is built from.

    A ``Ghost`` wrapper's ``base``; for a hand-written Ghost arch, its arch without ``Ghost``
    and its own arguments: ``GhostEDSR`` -> ``EDSR`` (and ``ghostsr.GhostRDN`` -> ``ghostsr.RDN``),
    keeping the arguments the plain arch takes, so the Ghost layer's keys (ratio, max_shift,
    ...) drop out. Raises ``KeyError`` when no such plain arch is registered.
    """
    base = base_section(network_g)
    if base is not None:
        return dict(base)
    prefix, dot, name = network_g['type'].rpartition('.')
    plain_type = prefix + dot + name.removeprefix('Ghost')
    accepted = inspect.signature(ARCH_REGISTRY.get(plain_type)).parameters
    return {'type': plain_type, **{k: v for k, v in network_g.items() if k != 'type' and k in accepted}}


def section_network(section, opt):
    """``ghost_init.network``, or by default the plain network of ``opt['network_g']``."""
    return section.get('network') or plain_network(opt['network_g'])


def ghost_init_from_section(net, section, opt=None, progress=False):
    """Initialize Ghost model ``net`` in place as ``section`` says; returns the per-layer summary lines.

    ``opt`` (the whole option file) gives the default plain network and the calibration batch of
    ``orientation: fit``.
    """
    param_key = section.get('param_key', 'params')
    plain = load_model(section_network(section, opt), section['checkpoint'], param_key)
    choices = init_from_plain(net, plain.state_dict(), section.get('method', 'cluster'), section.get('seed', 0),
                              plain_name=f"{section['checkpoint']} [{param_key}]", progress=progress)
    lines = summary_lines(choices)
    orientation = section.get('orientation', DEFAULT_ORIENTATION)
    if orientation == 'fit':
        images = calibration_batch(opt['datasets']['train'], opt['scale'])
        lines += orientation_lines(fit_orientations(net, plain, choices, images))
    elif orientation == 'zero':
        set_zero_orientations(net)
    return lines


def check_section(check):
    """Check the ``ghost_init`` section of an option file; ``check`` is the option check's checker.

    (The option check dispatches each section to the module that owns it; this one is it for
    ``ghost_init``.) With no ``network``, the plain network derived from ``network_g`` must exist;
    ``network_g`` itself is checked by the caller, as every network section.
    """
    section = check.get('ghost_init', dict)
    if check.opt['network_g'].get('cheap_op', 'shift') != 'shift':
        check.fail('network_g.cheap_op', f"'{check.opt['network_g']['cheap_op']}': the clustering init starts learned "
                   'shifts (cheap_op: shift); depthwise ghosts train from scratch (remove ghost_init)')
    for name in section:
        if name not in SECTION_KEYS:
            check.fail(f'ghost_init.{name}', f'unknown key{check.suggest(name, SECTION_KEYS)}; '
                       f'expected one of: {", ".join(SECTION_KEYS)}')
    if 'network' not in section:
        try:
            section = {**section, 'network': plain_network(check.opt['network_g'])}
        except KeyError:
            check.fail('ghost_init.network', f"missing, and network_g.type '{check.opt['network_g']['type']}' has no "
                       'plain arch to derive it from; give the plain network')
        plain = ARCH_REGISTRY.get(section['network']['type'])
    else:
        plain = check.network('ghost_init.network')
    plain_args = _effective_arguments(plain, section['network'])
    ghost_key, ghost_args = _ghost_arguments(check.opt['network_g'])
    for name in plain_args.keys() & ghost_args.keys():
        if plain_args[name] != ghost_args[name]:
            check.fail(f'ghost_init.network.{name}', f'{plain_args[name]!r} differs from {ghost_key}.{name} = '
                       f'{ghost_args[name]!r}; the Ghost model needs the plain model\'s shape and settings')
    checkpoint = check.get('ghost_init.checkpoint', str)
    if not osp.isfile(osp.expanduser(checkpoint)):
        check.fail('ghost_init.checkpoint', f"file '{checkpoint}' does not exist")
    check.file('ghost_init.checkpoint')
    for key, choices in (('param_key', PARAM_KEYS), ('method', METHODS), ('orientation', ORIENTATIONS)):
        value = check.get(f'ghost_init.{key}', required=False)
        if value is not None and value not in choices:
            check.fail(f'ghost_init.{key}', f'expected one of {", ".join(choices)}, found {value!r}')
    if section.get('orientation') == 'fit':
        check.get('datasets.train', dict)  # the calibration batch
        check.get('scale', int)
    check.get('ghost_init.seed', int, required=False)
    if check.get('path.pretrain_network_g', required=False) is not None:
        check.fail('path.pretrain_network_g', 'must be empty (~) with ghost_init, which gives the initial weights')


def _effective_arguments(arch, section):
    params = inspect.signature(arch).parameters
    values = {name: section.get(name, p.default) for name, p in params.items()}
    return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


def _ghost_arguments(network_g):
    """``(key, arguments)`` of ``network_g`` that its plain network shares: a wrapper's base's, a Ghost arch's own."""
    base = base_section(network_g)
    key, section = ('network_g.base', base) if base is not None else ('network_g', network_g)
    return key, _effective_arguments(ARCH_REGISTRY.get(section['type']), section)


def describe(section):
    """One line naming what the section does."""
    return (f"Ghost init by {section.get('method', 'cluster')} (seed {section.get('seed', 0)}, orientation "
            f"{section.get('orientation', DEFAULT_ORIENTATION)}) from "
            f"{section['checkpoint']} [{section.get('param_key', 'params')}]")


def _run_on_rank0(net, opt):
    """Rank 0 initializes ``net``; every other rank receives its tensors (or rank 0's error)."""
    rank, world_size = get_dist_info()
    lines, failure = None, None
    if rank == 0:
        try:
            lines = ghost_init_from_section(net, opt['ghost_init'], opt)
        except Exception as err:  # the other ranks wait in broadcast: tell them before raising
            failure = err
    if world_size > 1:
        message = [None if failure is None else f'{type(failure).__name__}: {failure}']
        dist.broadcast_object_list(message, src=0)
        if failure is None and message[0] is not None:
            raise RuntimeError(f'ghost_init failed on rank 0: {message[0]}')
    if failure is not None:
        raise failure
    if world_size > 1:
        with torch.no_grad():
            for tensor in net.state_dict().values():
                dist.broadcast(tensor, src=0)
    return lines


def ghost_init_for_training(opt, net):
    """The training hook: initialize bare ``net`` from ``opt['ghost_init']``, unless resuming.

    Rank 0 computes, all ranks receive (BasicSR has already wrapped the network in DDP,
    whose own broadcast happened at construction). Logs a per-layer summary.
    """
    logger = get_root_logger()
    section = opt['ghost_init']
    resume_state = opt['path'].get('resume_state')
    if resume_state:
        logger.info(f'Ghost init skipped: resuming from {resume_state}')
        return
    logger.info(f'{describe(section)}:')
    for line in _run_on_rank0(net, opt) or ():
        logger.info(f'  {line}')
    logger.info('Ghost init done.')
