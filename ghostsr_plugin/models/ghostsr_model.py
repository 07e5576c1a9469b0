"""GhostSRModel: FastSRModel (BasicSR's SRModel with fast training options) plus the life cycle of
the network's learned Gumbel choices: the Ghost layers' shifts (and SMSR's masks, ``SMSRModel``).

Every iteration it sets the temperature of every learned choice (``archs.gumbel``: a Ghost
layer's Gumbel noise scale, an SMSR mask's softmax temperature) from the temperature
schedule (``train.temperature_schedule``, see ``ghostsr_plugin.schedules``) and seeds the
noise from rank 0's ``manual_seed`` and the iteration, so every rank draws the same noise.
A run resumed with ``--auto_resume`` draws the same noise as an uninterrupted one when the
option file sets ``manual_seed`` (without it, BasicSR draws a new seed for every run). At
BasicSR's print frequency it logs the temperature and every layer's orientation; at
validation, the orientation histogram; at the end of training, how many layers' argmax
moved since the run started, and a frozen deploy checkpoint, ``net_g_deploy.pth``.

Issue 28's recipes for the learned shift, each an option of this one training:
``train.temperature_schedule.hold_from`` holds the orientation still from that unit to the end;
``train.orientation_relaxation: softmax`` trains on a softmax-weighted mix of every offset
(sharpened as the schedule's temperature falls) until the hold hardens it into its argmax;
``train.orientation_gradient: centered`` drops the part of the straight-through gradient that
every offset shares;
``train.orientation_search: {iter: N, batches: B}`` chooses, at iteration N, each layer's offset
by the loss of every candidate on B calibration batches (``ghostsr_plugin.orientation_search``)
and holds it to the end. See docs/ablation.md for what each measured.

The orientation logits get their own optimizer parameter group: learning rate
``train.orientation_lr`` times ``train.optim_g.lr`` (the official code's single group is
``orientation_lr: 1``), no weight decay, and the same BasicSR scheduler as every other
weight. The logits start within about 1/3 of each other, and at the global learning rate
they rarely travel that far in a short run, so the argmax never moves.

With ``train.compile`` the noise of every layer is drawn here before each step, in one draw
(a graph cannot draw from a generator), and handed to the compiled forward: other numbers
than the eager draws, as reproducible; a layer that runs more than once a forward (CARN-M's
shared block) then uses one draw per step rather than one a call.
The Gumbel logits, their noise, the temperatures and the selection's gradient stay fp32
under ``train.amp``.
"""
import collections
import copy
import math

import torch
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.registry import MODEL_REGISTRY

from ghostsr_plugin.archs import freeze, gumbel_modules, shift_layers
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.init import ghost_init_for_training
from ghostsr_plugin.models.fast_sr_model import FastSRModel
from ghostsr_plugin.monitor import OrientationMonitor, format_offsets, orientation_histogram
from ghostsr_plugin.orientation_search import calibration_batches, search
from ghostsr_plugin.registration import register
from ghostsr_plugin.schedules import build_schedule

DEFAULT_ORIENTATION_LR = 100  # docs/ablation.md: most argmaxes move (few at 1), at the same PSNR
RELAXATIONS = ('gumbel_max', 'softmax')
GRADIENTS = ('straight_through', 'centered')
MIN_SOFTMAX_TEMPERATURE = 1e-4  # a schedule may reach 0; softmax at this is an argmax in all but name
OrientationSearch = collections.namedtuple('OrientationSearch', 'iter batches')


def orientation_lr(train_opt):
    """``train.orientation_lr``, checked: a positive number (a multiple of ``train.optim_g.lr``)."""
    value = train_opt.get('orientation_lr', DEFAULT_ORIENTATION_LR)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError("key 'train.orientation_lr': expected a positive number (a multiple of train.optim_g.lr), "
                         f'found {type(value).__name__} {value!r}')
    return float(value)


def orientation_search(train_opt):
    """``train.orientation_search``, checked: None, or when (``iter``) and on how many batches to search."""
    section = train_opt.get('orientation_search')
    if section is None:
        return None
    key = 'train.orientation_search'
    if not isinstance(section, dict):
        raise InputError(f"key '{key}': expected a section {{iter: N, batches: B}}, found {section!r}")
    unknown = sorted(set(section) - set(OrientationSearch._fields))
    if unknown:
        raise InputError(f"key '{key}.{unknown[0]}': not an option of the search; expected iter, batches")
    values = {'iter': section.get('iter'), 'batches': section.get('batches', 4)}
    total = int(train_opt.get('total_iter', 0))
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (name == 'iter' and value > total):
            expected = f'an integer in [1, train.total_iter = {total}]' if name == 'iter' else 'an integer >= 1'
            raise InputError(f"key '{key}.{name}': expected {expected}, found {value!r}")
    return OrientationSearch(**values)


def orientation_relaxation(train_opt):
    """``train.orientation_relaxation``, checked: 'gumbel_max' (default) or 'softmax', which needs a hold."""
    value = train_opt.get('orientation_relaxation', 'gumbel_max')
    if value not in RELAXATIONS:
        raise InputError(f"key 'train.orientation_relaxation': expected one of {list(RELAXATIONS)}, found {value!r}")
    if value == 'softmax' and build_schedule(train_opt.get('temperature_schedule')).hold_from is None \
            and train_opt.get('orientation_search') is None:
        raise InputError("key 'train.orientation_relaxation': softmax trains on a mix of every offset and needs "
                         'where it hardens into one: set train.temperature_schedule.hold_from or '
                         'train.orientation_search')
    return value


def orientation_gradient(train_opt):
    """``train.orientation_gradient``, checked: 'straight_through' (default, the official code's) or 'centered'."""
    value = train_opt.get('orientation_gradient', 'straight_through')
    if value not in GRADIENTS:
        raise InputError(f"key 'train.orientation_gradient': expected one of {list(GRADIENTS)}, found {value!r}")
    return value


def orientation_ever_held(train_opt):
    """Whether some iteration leaves the logits without gradient (distributed training must be told)."""
    return (build_schedule(train_opt.get('temperature_schedule')).ever_holds
            or train_opt.get('orientation_search') is not None)


def rank0_seed(seed):
    """Rank 0's ``seed`` on every rank (BasicSR draws a different one per rank when the options set none)."""
    if get_dist_info()[1] > 1:
        shared = [seed]
        torch.distributed.broadcast_object_list(shared, src=0)
        seed = shared[0]
    return seed


@register(MODEL_REGISTRY)
class GhostSRModel(FastSRModel):
    """FastSRModel that anneals, watches and finally freezes the Ghost layers' orientations."""

    def __init__(self, opt):
        if opt['is_train'] and orientation_ever_held(opt['train']):
            # A hold leaves the logits without gradient, which DistributedDataParallel refuses unless told.
            opt.setdefault('find_unused_parameters', True)
        super().__init__(opt)

    def init_training_settings(self):
        if 'ghost_init' in self.opt:  # before the EMA copy is made; skipped on resume
            ghost_init_for_training(self.opt, self.get_bare_model(self.net_g))
        super().init_training_settings()
        net = self.get_bare_model(self.net_g)
        self.ghost_layers, self.gumbel_modules = shift_layers(net), gumbel_modules(net)
        self.monitor = OrientationMonitor(net)
        self.schedule = build_schedule(self.opt['train'].get('temperature_schedule'))
        self.relaxation = orientation_relaxation(self.opt['train'])
        self.centered_gradient = orientation_gradient(self.opt['train']) == 'centered'
        self.search = orientation_search(self.opt['train'])
        self.total_iter = int(self.opt['train']['total_iter'])
        self.noise_seed = rank0_seed(self.opt['manual_seed'])
        self.temperature = self.schedule(1, self.total_iter, self.iters_per_epoch)
        self.start_orientations = [layer.orientation().clone() for layer in self.ghost_layers]

    def setup_optimizers(self):
        """BasicSR's optimizer, with the orientation logits in a second parameter group.

        That group's learning rate is ``train.orientation_lr`` times the others' and it has
        no weight decay; BasicSR's schedulers and its resume handle every group alike.
        """
        train_opt = self.opt['train']
        logits = {id(layer.logits) for layer in shift_layers(self.get_bare_model(self.net_g)) if not layer.frozen}
        weights, orientation = [], []
        for name, param in self.net_g.named_parameters():
            if not param.requires_grad:
                get_root_logger().warning(f'Params {name} will not be optimized.')
            else:
                (orientation if id(param) in logits else weights).append(param)
        optim_opt = dict(train_opt['optim_g'])
        optim_type, lr = optim_opt.pop('type'), optim_opt.pop('lr')
        groups = [{'params': weights}]
        if orientation:
            groups.append({'params': orientation, 'lr': lr * orientation_lr(train_opt), 'weight_decay': 0})
        self.optimizer_g = self.get_optimizer(optim_type, groups, lr, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def training_step(self, current_iter):
        self.temperature = self.schedule(current_iter, self.total_iter, self.iters_per_epoch)
        if self.search is not None and current_iter == self.search.iter:
            self.search_orientations()
        searched = self.search is not None and current_iter >= self.search.iter
        learn = not (searched or self.schedule.holds(current_iter, self.iters_per_epoch))
        # Same seed on every rank: all replicas pick the same orientation in an iteration.
        noise = torch.Generator(self.device).manual_seed(self.noise_seed * 2**32 + current_iter)
        temperature = self.temperature
        if self.relaxation == 'softmax':
            temperature = max(temperature, MIN_SOFTMAX_TEMPERATURE)
            if self.fast.compile is not None:  # an input of the graph, not a constant it would recompile for
                temperature = torch.tensor(temperature, device=self.device)
        for module in self.gumbel_modules:  # every learned choice (SMSR's masks too): the schedule's value
            module.temperature, module.noise_generator = self.temperature, noise
        for layer in self.ghost_layers:
            layer.temperature, layer.learn_orientation = temperature, learn
            layer.relaxation, layer.centered_gradient = self.relaxation, self.centered_gradient
        if self.fast.compile is not None and learn and self.relaxation == 'gumbel_max':
            self.draw_noise(noise)
        super().training_step(current_iter)
        self.monitor.update(current_iter)

    def search_orientations(self):
        """``train.orientation_search``: every layer's offset chosen by the loss of each candidate, logged."""
        batches = calibration_batches(self.opt['datasets']['train'], self.search.batches, self.noise_seed,
                                      self.device)
        net = self.get_bare_model(self.net_g)
        also = [self.net_g_ema] if hasattr(self, 'net_g_ema') else []
        records = search(net, batches, lambda output, gt: self.losses(output, gt)[0], also=also)
        get_root_logger().info(f'Ghost orientation search on {len(batches)} calibration batches, offsets before -> '
                               'after: ' + ', '.join(f"{r['layer']} {format_offsets(r['before'])} -> "
                                                     f"{format_offsets(r['after'])}" for r in records))

    def draw_noise(self, generator):
        """Every layer's scaled Gumbel noise in one draw, handed to the compiled forward (see ``GhostConv2d.noise``)."""
        layers = [layer for layer in self.ghost_layers if not layer.frozen]
        sizes = [layer.logits.numel() for layer in layers]
        if self.temperature:
            flat = -torch.empty(sum(sizes), device=self.device).exponential_(generator=generator).log()
            flat = self.temperature * flat
        else:  # (0 * inf, from an exponential sample of 0, would be NaN)
            flat = torch.zeros(sum(sizes), device=self.device)
        for layer, noise in zip(layers, flat.split(sizes)):
            layer.noise = noise.view_as(layer.logits)

    def get_current_log(self):
        """BasicSR calls this at its print frequency: add the temperature and the orientations."""
        if not self.ghost_layers:
            return {**super().get_current_log(), 'temperature': self.temperature}
        rows = self.monitor.report()
        get_root_logger().info('Ghost orientations, argmax (dy, dx) [changes of the argmax/sampled orientation '
                               'since the last log]: ' + ', '.join(
                                   f'{name} {format_offsets(offsets)} [{argmax}/{sampled}]'
                                   for name, offsets, argmax, sampled in rows))
        return {**super().get_current_log(), 'temperature': self.temperature,
                'argmax_changes': sum(r[2] for r in rows), 'sampled_changes': sum(r[3] for r in rows)}

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        super().validation(dataloader, current_iter, tb_logger, save_img)
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)
        if not shift_layers(net):
            return
        counts = ', '.join(f'{offset}: {count}' for offset, count in orientation_histogram(net))
        get_root_logger().info(f'Ghost orientation histogram (dy, dx): {counts}')
        if tb_logger:
            indices = torch.cat([layer.orientation() for layer in shift_layers(net)]).cpu()
            tb_logger.add_histogram('ghost/orientation', indices, current_iter)

    def save(self, epoch, current_iter):
        super().save(epoch, current_iter)
        if current_iter != -1:  # (-1: BasicSR's end of training)
            return
        self.save_deploy()
        if self.ghost_layers:
            moved = [name for name, layer, start in zip(self.monitor.names, self.ghost_layers, self.start_orientations)
                     if not torch.equal(layer.orientation(), start)]
            get_root_logger().info(f'Ghost layers whose argmax orientation moved since this run started: '
                                   f'{len(moved)}/{len(self.ghost_layers)} {moved}')
            settling = self.monitor.settling(self.total_iter - self.total_iter // 10)
            for kind, names in settling.items():
                get_root_logger().info(f'Ghost layers whose {kind} orientation changed in the last 10% of training: '
                                       f'{len(names)}/{len(self.ghost_layers)} {names}')

    def save_deploy(self):
        """Write ``net_g_deploy.pth``: the networks with their learned choices frozen (integer shifts, hard masks)."""
        nets, keys = [self.net_g], ['params']
        if hasattr(self, 'net_g_ema'):
            nets, keys = [self.net_g, self.net_g_ema], ['params', 'params_ema']
        frozen = [freeze(copy.deepcopy(self.get_bare_model(net))) for net in nets]
        self.save_network(frozen, 'net_g', 'deploy', param_key=keys)
