"""Make basicsr 1.4.2 (2022) run on today's torch and torchvision.

Its gaps, closed here and nowhere else:

* basicsr imports ``torchvision.transforms.functional_tensor``, a module torchvision
  removed in 0.17; we register its successor under the old name before basicsr loads.
* ``basicsr.train.load_resume_state`` maps the state to ``cuda`` unconditionally and
  loads it with pickle; ours maps to the model's device (CPU included) and loads through
  ``ghostsr_plugin.checkpoint`` (tensors only), allowing the ``collections.Counter``
  BasicSR's LR scheduler stores. ``BaseModel.load_network`` checks its file there first.
"""
import collections
import importlib
import os.path as osp
import sys

import torch

from ghostsr_plugin.checkpoint import install as check_basicsr_network_loads
from ghostsr_plugin.checkpoint import load_checkpoint


def _register_functional_tensor():
    name = 'torchvision.transforms.functional_tensor'
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        sys.modules[name] = importlib.import_module('torchvision.transforms._functional_tensor')


def load_resume_state(opt):
    """Drop-in for ``basicsr.train.load_resume_state`` that also works without CUDA."""
    from basicsr.utils import check_resume, scandir

    resume_state_path = opt['path'].get('resume_state')
    if opt['auto_resume']:
        state_dir = osp.join('experiments', opt['name'], 'training_states')
        states = list(scandir(state_dir, suffix='state')) if osp.isdir(state_dir) else []
        if states:
            latest = max(int(osp.splitext(s)[0]) for s in states)
            resume_state_path = osp.join(state_dir, f'{latest}.state')
            opt['path']['resume_state'] = resume_state_path
    if not resume_state_path:
        return None
    use_cuda = opt['num_gpu'] != 0 and torch.cuda.is_available()
    device = torch.device('cuda', torch.cuda.current_device()) if use_cuda else torch.device('cpu')
    resume_state = load_checkpoint(resume_state_path, map_location=device, allowed_globals=[collections.Counter])
    check_resume(opt, resume_state['iter'])
    return resume_state


def apply():
    """Install the fixes; idempotent."""
    _register_functional_tensor()
    import basicsr.train

    basicsr.train.load_resume_state = load_resume_state
    check_basicsr_network_loads()
