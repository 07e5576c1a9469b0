"""GhostSRModel: BasicSR's SRModel plus the Ghost layers' orientation annealing."""
import math

from basicsr.data import build_dataset
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from ghostsr_plugin.archs import GhostConv2d
from ghostsr_plugin.init import ghost_init_for_training


def iters_per_epoch(opt):
    """BasicSR's epoch length in iterations, computed as ``basicsr.train`` does."""
    dataset_opt = opt['datasets']['train']
    num_images = len(build_dataset(dataset_opt)) * dataset_opt.get('dataset_enlarge_ratio', 1)
    return math.ceil(num_images / (dataset_opt['batch_size_per_gpu'] * opt['world_size']))


def ghost_layers(net):
    """Every Ghost layer of ``net``, in module order."""
    return [m for m in net.modules() if isinstance(m, GhostConv2d)]


@MODEL_REGISTRY.register()
class GhostSRModel(SRModel):
    """SRModel that sets every Ghost layer's Gumbel noise scale each iteration.

    The noise scale follows the official code: ``0.97 ** (epoch - 1)`` with 1-based epochs.
    """

    def init_training_settings(self):
        if 'ghost_init' in self.opt:  # before the EMA copy is made; skipped on resume
            ghost_init_for_training(self.opt, self.get_bare_model(self.net_g))
        super().init_training_settings()
        self.iters_per_epoch = iters_per_epoch(self.opt)
        self.ghost_layers = ghost_layers(self.net_g)

    def optimize_parameters(self, current_iter):
        temperature = 0.97**((current_iter - 1) // self.iters_per_epoch)
        for layer in self.ghost_layers:
            layer.temperature = temperature
        super().optimize_parameters(current_iter)
