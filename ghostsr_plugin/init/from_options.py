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
  orientation: fit        # starting orientation: fit, zero or random (default random), see .orientation
```

``orientation: fit`` reads a calibration batch from the option file's ``datasets.train``.

``GhostSRModel`` runs it once before training (never on resume); ``ghostsr cluster-init``
runs it offline.
"""
import torch
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info
from torch import distributed as dist

from ghostsr_plugin.evaluate import load_model

from .orientation import calibration_batch, fit_orientations, orientation_lines, set_zero_orientations
from .transfer import init_from_plain, summary_lines

SECTION_KEYS = ('network', 'checkpoint', 'param_key', 'method', 'seed', 'orientation')
PARAM_KEYS = ('params', 'params_ema')
DEFAULT_ORIENTATION = 'random'


def ghost_init_from_section(net, section, opt=None, progress=False):
    """Initialize Ghost model ``net`` in place as ``section`` says; returns the per-layer summary lines.

    ``opt`` (the whole option file) gives the calibration batch of ``orientation: fit``.
    """
    param_key = section.get('param_key', 'params')
    plain = load_model(section['network'], section['checkpoint'], param_key)
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
