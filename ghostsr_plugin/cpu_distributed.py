"""``basicsr train --launcher pytorch`` on a machine without GPUs: gloo and DistributedDataParallel on the CPU.

BasicSR 1.4.2's ``init_dist`` calls ``torch.cuda.set_device(rank % torch.cuda.device_count())``
and asks for NCCL, and ``BaseModel.model_to_device`` gives DDP
``device_ids=[torch.cuda.current_device()]``; without CUDA both fail. When no GPU is visible
the process group uses gloo and a CPU network is wrapped in DDP without device ids; with a
GPU, BasicSR's own code runs unchanged. ``basicsr train`` (this plugin's command) installs it.
"""
import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel


def install():
    """Route BasicSR's ``init_dist`` and ``BaseModel.model_to_device`` through the CPU cases here."""
    import basicsr.utils.options
    from basicsr.models.base_model import BaseModel
    from basicsr.utils.dist_util import init_dist

    def init_dist_or_gloo(launcher, backend='nccl', **kwargs):
        if launcher == 'pytorch' and not torch.cuda.is_available():
            dist.init_process_group(backend='gloo', **kwargs)  # rank and world size from torchrun's environment
        else:
            init_dist(launcher, backend, **kwargs)

    model_to_device = BaseModel.model_to_device

    def model_to_cpu_or_device(self, net):
        if self.opt['dist'] and self.device.type == 'cpu':
            return DistributedDataParallel(
                net.to(self.device), find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return model_to_device(self, net)

    basicsr.utils.options.init_dist = init_dist_or_gloo
    BaseModel.model_to_device = model_to_cpu_or_device
