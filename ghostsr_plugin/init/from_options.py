"""The ``ghost_init`` option section: start ``network_g`` from a pretrained plain checkpoint.

```yaml
ghost_init:
  network:                # the plain network, as BasicSR's network_g (same shape and settings)
    type: EDSR
    num_in_ch: 3
    ...
  checkpoint: experiments/EDSR_x2/models/net_g_latest.pth   # BasicSR format
  param_key: params_ema   # which weights of the checkpoint: params (default) or params_ema
  method: cluster         # cluster (k-means, GhostSR) or order (the first filters)
  seed: 0                 # k-means seed (default 0)
```

``GhostSRModel`` runs it once before training (never on resume); ``ghostsr cluster-init``
runs it offline.
"""
import torch
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info
from torch import distributed as dist

from ghostsr_plugin.evaluate import load_model

from .transfer import init_from_plain, summary_lines

SECTION_KEYS = ('network', 'checkpoint', 'param_key', 'method', 'seed')
PARAM_KEYS = ('params', 'params_ema')


def ghost_init_from_section(net, section, progress=False):
    """Initialize Ghost model ``net`` in place as ``section`` says; returns the per-layer choices."""
    param_key = section.get('param_key', 'params')
    plain = load_model(section['network'], section['checkpoint'], param_key)
    return init_from_plain(net, plain.state_dict(), section.get('method', 'cluster'), section.get('seed', 0),
                           plain_name=f"{section['checkpoint']} [{param_key}]", progress=progress)


def describe(section):
    """One line naming what the section does."""
    return (f"Ghost init by {section.get('method', 'cluster')} (seed {section.get('seed', 0)}) from "
            f"{section['checkpoint']} [{section.get('param_key', 'params')}]")


def _run_on_rank0(net, section):
    """Rank 0 initializes ``net``; every other rank receives its tensors (or rank 0's error)."""
    rank, world_size = get_dist_info()
    choices, failure = None, None
    if rank == 0:
        try:
            choices = ghost_init_from_section(net, section)
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
    return choices


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
    choices = _run_on_rank0(net, section)
    for line in summary_lines(choices or {}):
        logger.info(f'  {line}')
    logger.info('Ghost init done.')
