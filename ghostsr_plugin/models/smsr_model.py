"""SMSRModel: GhostSRModel's life cycle of learned Gumbel choices, for SMSR's masks, plus its sparsity regularization.

From GhostSRModel: the masks' softmax temperature follows ``train.temperature_schedule`` (the
paper: linear from 1 to 0.4 over the first 30% of training), the Gumbel noise is seeded by
``manual_seed`` and the iteration (an exact ``--auto_resume``), and the end of training writes
``net_g_deploy.pth`` with the channel masks frozen. Added here, the paper's loss::

    train:
      sparsity_opt: {type: SparsityLoss, loss_weight: 3.92e-4}   # lambda_0 times the share of outputs kept
      sparsity_schedule: {type: linear, start: 0, end: 1, span: 50, unit: epoch}   # times loss_weight

The regularization is the share of the masked layers' outputs the relaxed masks keep (averaged
over modules, layers, channels and positions: ``SMSR.density``), weighted by ``loss_weight`` times
``train.sparsity_schedule`` (any schedule of ``ghostsr_plugin.schedules``; default: constant 1).
The paper's lambda_0 = 0.1 sits beside an L1 loss on pixels in 0..255 (the EDSR code's range);
beside BasicSR's L1 on 0..1 the same balance is 0.1 / 255 = 3.92e-4 (at 0.1 the regularization
outweighs the L1 loss and every mask closes within a thousand demo iterations).
At BasicSR's print frequency the log line carries the temperature, the sparsity weight, the
density and the hard masks' ``spatial_sparsity`` (share of positions skipped, this batch) and
``channel_sparsity`` (share of sparse channels).
"""
from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY
from torch import nn

from ghostsr_plugin.models.ghostsr_model import GhostSRModel
from ghostsr_plugin.registration import register
from ghostsr_plugin.schedules import build_schedule

CONSTANT_WEIGHT = {'type': 'constant', 'start': 1, 'unit': 'iter'}


@register(LOSS_REGISTRY)
class SparsityLoss(nn.Module):
    """``loss_weight`` times a network's density (the share of its masked outputs kept): SMSR's regularization
    (the paper's 0.1 on 0..255 pixels is 3.92e-4 beside BasicSR's L1 on 0..1)."""

    def __init__(self, loss_weight=3.92e-4):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, density):
        return self.loss_weight * density


def sparsity_schedule(train_opt):
    """The ``train.sparsity_schedule`` of a ``train`` section (default: constant 1), checked."""
    return build_schedule(train_opt.get('sparsity_schedule'), 'train.sparsity_schedule', CONSTANT_WEIGHT)


@register(MODEL_REGISTRY)
class SMSRModel(GhostSRModel):
    """GhostSRModel for SMSR: anneals its masks, adds the scheduled sparsity regularization, logs the sparsity."""

    def init_training_settings(self):
        super().init_training_settings()
        train_opt = self.opt['train']
        self.cri_sparsity = build_loss(train_opt['sparsity_opt']) if train_opt.get('sparsity_opt') else None
        self.sparsity_schedule = sparsity_schedule(train_opt)
        self.sparsity_weight = self.sparsity_schedule(1, self.total_iter, self.iters_per_epoch)

    def training_step(self, current_iter):
        self.sparsity_weight = self.sparsity_schedule(current_iter, self.total_iter, self.iters_per_epoch)
        super().training_step(current_iter)

    def losses(self, output, gt):
        total, loss_dict = super().losses(output, gt)
        density = self.get_bare_model(self.net_g).density()
        self.density = density.detach()
        if self.cri_sparsity is not None:
            loss_dict['l_sparsity'] = self.sparsity_weight * self.cri_sparsity(density)
            total = total + loss_dict['l_sparsity']
        return total, loss_dict

    def get_current_log(self):
        sparsity = self.get_bare_model(self.net_g).mask_sparsity()
        return {**super().get_current_log(), 'sparsity_weight': self.sparsity_weight,
                'density': self.density.item(), **sparsity}

    def save(self, epoch, current_iter):
        super().save(epoch, current_iter)
        if current_iter == -1:
            sparsity = self.get_bare_model(self.net_g).mask_sparsity()
            get_root_logger().info(f"SMSR masks at the end of training: channel sparsity "
                                   f"{sparsity['channel_sparsity']:.3f}, spatial sparsity (last batch) "
                                   f"{sparsity['spatial_sparsity']:.3f}")
