"""FastSRModel: BasicSR's SRModel with the training options a GPU needs to be busy.

BasicSR 1.4.2 trains in fp32, NCHW, one op at a time, and reads every loss back to the
host each iteration. FastSRModel (plain networks) and GhostSRModel, which builds on it, add
``train`` options, each off by default::

    train:
      amp: bf16            # bf16 | fp16 | false: forward and loss under torch.autocast; fp16 with a
                           #   GradScaler, whose state goes into the resume state
      channels_last: true  # the network's weights and inputs in NHWC, the layout tensor cores read
      compile: true        # torch.compile the training forward (or a mapping of torch.compile's
                           #   arguments, e.g. {mode: max-autotune})
      time_budget: 600     # seconds from the first iteration: past it the run ends as at total_iter
      progress_seconds: 60 # a progress line this often (iterations, it/s, time left, data wait)

Weights, gradients, the optimizer and the EMA stay fp32, so checkpoints are fp32 and load
anywhere, in BasicSR's keys (the compiled wrapper is only used to run the training forward;
``net_g`` stays the module BasicSR saves, wraps in DDP and copies into ``net_g_ema``).
Validation and testing run in fp32 eager. Whatever the options, the losses are read back
only when logged and the EMA is updated in two foreach ops: with every option off, a
training step computes exactly what SRModel's does (``tests/test_fast_training.py``).

A checkpoint saved on an epoch's last batch records the next epoch, so that ``--auto_resume``
draws the batches an uninterrupted run would (BasicSR's would repeat that epoch); with BasicSR's
EMA the buffers (batch norm's statistics) are copied into ``net_g_ema`` (see ``model_ema``).

At the end of training, or when the budget stops it, ``<experiment>/training.json`` records
the run's speed (``ghostsr_plugin.training_clock``), device and options; ``ghostsr
benchmark`` copies it into the result of that run's ``net_g_latest.pth``.
"""
import collections
import inspect
import json
import math
import os.path as osp
from datetime import datetime, timezone

import torch
from basicsr.data import build_dataset
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY

from ghostsr_plugin.atomic import write_json
from ghostsr_plugin.cost import device_name
from ghostsr_plugin.errors import InputError, did_you_mean
from ghostsr_plugin.registration import register
from ghostsr_plugin.training_clock import TrainingClock

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
FastOptions = collections.namedtuple('FastOptions', 'amp channels_last compile time_budget progress_seconds',
                                     defaults=(None, False, None, None, None))
FAST_KEYS = FastOptions._fields
COMPILE_KINDS = {  # torch.compile's arguments that an option file can give: (kind, what the message says)
    'fullgraph': (bool, 'true or false'), 'dynamic': (bool, 'true, false or null'), 'disable': (bool, 'true or false'),
    'isolate_recompiles': (bool, 'true or false'), 'mode': (str, 'the name of a mode, e.g. max-autotune'),
    'backend': (str, 'the name of a backend, e.g. inductor'), 'options': (dict, 'a mapping of inductor options'),
    'name': (str, 'a string'), 'recompile_limit': (int, 'an integer or null')}
COMPILE_NULLABLE = ('dynamic', 'mode', 'backend', 'options', 'recompile_limit', 'name')
SUMMARY_FORMAT = 'ghostsr-training/1'
SUMMARY_FILE = 'training.json'
BUDGET_CHECK_EVERY = 10  # iterations between the ranks' agreement on the budget (distributed runs)


class BudgetSpent(SystemExit):
    """Ends BasicSR's training loop once ``train.time_budget`` is spent, after the run saved as at its end."""

    def __init__(self):
        super().__init__(0)


def iters_per_epoch(opt):
    """Batches in one of BasicSR's training epochs, exactly as its loader yields them.

    The sampler draws ``ceil(len(dataset) * enlarge_ratio / world_size)`` samples and the
    loader drops the last partial batch.
    """
    dataset_opt = opt['datasets']['train']
    num_samples = math.ceil(
        len(build_dataset(dataset_opt)) * dataset_opt.get('dataset_enlarge_ratio', 1) / opt['world_size'])
    data_parallel = not opt['dist'] and opt['num_gpu'] > 1
    batch_size = dataset_opt['batch_size_per_gpu'] * (opt['num_gpu'] if data_parallel else 1)
    return max(num_samples // batch_size, 1)


def _positive_seconds(train_opt, key):
    value = train_opt.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
        raise InputError(f"key 'train.{key}': expected a positive number of seconds, found "
                         f'{type(value).__name__} {value!r}')
    return None if value is None else float(value)


def _is_kind(value, kind):
    """``isinstance``, but a switch is no number (bool is an int in Python, never in an option file)."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def compile_arguments(arguments, key='train.compile'):
    """``arguments`` for ``torch.compile``, checked as the option file gives them (``InputError`` naming the key).

    Names and kinds here; then torch itself judges the values (mode, backend, inductor
    options) by wrapping a trivial module, which compiles nothing yet.
    """
    accepted = [name for name in inspect.signature(torch.compile).parameters if name != 'model']
    for name, value in arguments.items():
        if name not in accepted:
            raise InputError(f"key '{key}.{name}': not an argument of torch.compile{did_you_mean(name, accepted)}; "
                             f"expected one of: {', '.join(accepted)}")
        kind, expected = COMPILE_KINDS.get(name, (None, ''))
        if kind and not (_is_kind(value, kind) or value is None and name in COMPILE_NULLABLE):
            raise InputError(f"key '{key}.{name}': expected {expected}, found {type(value).__name__} {value!r}")
    if arguments.get('options'):
        from torch._inductor import config

        known = config.get_config_copy()
        for name in arguments['options']:
            if str(name).replace('-', '_') not in known:
                raise InputError(f"key '{key}.options.{name}': not an option of torch's inductor"
                                 f'{did_you_mean(name, known)}')
    try:
        torch.compile(torch.nn.Identity(), **arguments)
    except Exception as err:  # noqa: BLE001  (torch's own refusal; its message names the argument)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"key '{key}': torch.compile refuses it: {reason[:300]}") from None
    return arguments


def fast_options(train_opt):
    """The fast-training keys of a ``train`` section, checked (``InputError`` naming the key)."""
    amp = train_opt.get('amp', False)
    if amp not in (False, None) and amp not in AMP_DTYPES:
        raise InputError(f"key 'train.amp': expected bf16, fp16 or false, found {type(amp).__name__} {amp!r}")
    channels_last = train_opt.get('channels_last', False)
    if not isinstance(channels_last, bool):
        raise InputError(f"key 'train.channels_last': expected true or false, found {channels_last!r}")
    compile_opt = train_opt.get('compile', False)
    if isinstance(compile_opt, bool) or compile_opt is None:
        compile_opt = {'dynamic': False} if compile_opt else None
    elif isinstance(compile_opt, dict):
        compile_opt = compile_arguments({'dynamic': False, **compile_opt})
    else:
        raise InputError("key 'train.compile': expected true, false or a mapping of torch.compile's arguments "
                         f'(e.g. {{mode: max-autotune}}), found {type(compile_opt).__name__} {compile_opt!r}')
    return FastOptions(amp or None, channels_last, compile_opt, _positive_seconds(train_opt, 'time_budget'),
                       _positive_seconds(train_opt, 'progress_seconds'))


@register(MODEL_REGISTRY)
class FastSRModel(SRModel):
    """SRModel with mixed precision, channels_last, torch.compile, a time budget and progress lines."""

    def __init__(self, opt):
        self.fast = fast_options(opt['train']) if opt['is_train'] else FastOptions()
        super().__init__(opt)

    def model_to_device(self, net):
        if self.fast.channels_last:  # before DDP wraps it, so its gradient buckets take this layout
            net = net.to(memory_format=torch.channels_last)
        return super().model_to_device(net)

    def init_training_settings(self):
        super().init_training_settings()
        if self.fast.channels_last and hasattr(self, 'net_g_ema'):
            self.net_g_ema.to(memory_format=torch.channels_last)
        self.grad_scaler = torch.amp.GradScaler(self.device.type) if self.fast.amp == 'fp16' else None
        compiled = self.fast.compile is not None
        self.train_net = torch.compile(self.net_g, **self.fast.compile) if compiled else self.net_g
        self.loss_dict = {}
        self.iters_per_epoch = iters_per_epoch(self.opt)
        self.clock = TrainingClock(int(self.opt['train']['total_iter']), self.fast.time_budget,
                                   self.fast.progress_seconds)
        if self.fast != FastOptions():
            get_root_logger().info(f'Fast training options: amp {self.fast.amp or "off"}, channels_last '
                                   f'{self.fast.channels_last}, compile {self.fast.compile}, time budget '
                                   f'{self.fast.time_budget} s, progress every {self.fast.progress_seconds} s')

    def optimize_parameters(self, current_iter):
        self.clock.step_begins(current_iter)
        self.training_step(current_iter)
        self.clock.step_ends(current_iter)
        if self.clock.progress_due():
            get_root_logger().info(self.clock.progress())
        if self.fast.time_budget is not None and self._budget_spent(current_iter):
            self.stop_at_budget(current_iter)

    def training_step(self, current_iter):
        """SRModel's step (losses, backward, optimizer, EMA) under the fast options."""
        self.optimizer_g.zero_grad()
        lq = self.lq.contiguous(memory_format=torch.channels_last) if self.fast.channels_last else self.lq
        with torch.autocast(self.device.type, dtype=AMP_DTYPES.get(self.fast.amp), enabled=bool(self.fast.amp)):
            self.output = self.train_net(lq)
            l_total, self.loss_dict = self.losses(self.output, self.gt)
        if self.grad_scaler is None:
            l_total.backward()
            self.optimizer_g.step()
        else:
            self.grad_scaler.scale(l_total).backward()
            self.grad_scaler.step(self.optimizer_g)
            self.grad_scaler.update()
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def losses(self, output, gt):
        """``(total, {name: loss})`` of SRModel's pixel and perceptual losses, summed in its order."""
        loss_dict = collections.OrderedDict()
        if self.cri_pix:
            loss_dict['l_pix'] = self.cri_pix(output, gt)
        if self.cri_perceptual:
            for name, loss in zip(('l_percep', 'l_style'), self.cri_perceptual(output, gt)):
                if loss is not None:
                    loss_dict[name] = loss
        return sum(loss_dict.values()), loss_dict

    def get_current_log(self):
        """BasicSR's reduced losses, read back from the device only now that they are logged."""
        self.log_dict = self.reduce_loss_dict(self.loss_dict)
        return self.log_dict

    def model_ema(self, decay=0.999):
        """BasicSR's EMA update (``ema = ema * decay + net * (1 - decay)``) as two foreach ops, and the buffers
        copied.

        BasicSR averages the parameters only, so a batch norm's running statistics (an adder
        layer's, docs/peers.md) would stay at their initial values in ``net_g_ema``, which
        validation and the saved ``params_ema`` use: they are copied from ``net_g`` instead
        (for the plugin's other archs, whose buffers are constants, a copy changes nothing).
        """
        bare = self.get_bare_model(self.net_g)
        if not hasattr(self, '_ema_pairs'):
            net = dict(bare.named_parameters())
            ema = dict(self.net_g_ema.named_parameters())
            self._ema_pairs = (list(ema.values()), [net[name] for name in ema])
        ema, net = self._ema_pairs
        # (buffers looked up afresh: moving a module to another memory format may replace them)
        buffers = dict(bare.named_buffers())
        ema_buffers = dict(self.net_g_ema.named_buffers())
        with torch.no_grad():
            torch._foreach_mul_(ema, decay)
            torch._foreach_add_(ema, net, alpha=1 - decay)
            if ema_buffers:
                torch._foreach_copy_(list(ema_buffers.values()), [buffers[name] for name in ema_buffers])

    def _budget_spent(self, current_iter):
        """Whether to stop now; in a distributed run every rank stops at the same iteration, rank 0's call."""
        if not self.opt['dist']:
            return self.clock.spent()
        if current_iter % BUDGET_CHECK_EVERY:
            return False
        spent = torch.tensor(float(self.clock.spent()), device=self.device)
        torch.distributed.broadcast(spent, src=0)
        return bool(spent.item())

    def stop_at_budget(self, current_iter):
        get_root_logger().info(f'Time budget of {self.fast.time_budget:g} s spent at iteration {current_iter:,} of '
                               f'{self.clock.total_iter:,}: saving as at the end of training, then stopping.')
        self.stopped_at_budget = True
        self.save(-1, -1)  # (BasicSR's "latest": what its loop saves after the last iteration)
        raise BudgetSpent()

    def save(self, epoch, current_iter):
        if current_iter != -1 and current_iter % self.iters_per_epoch == 0:
            epoch += 1  # the epoch's last batch: resume with the next epoch rather than repeat this one
        super().save(epoch, current_iter)
        if current_iter == -1:
            self.save_training_summary()

    @master_only
    def save_training_summary(self):
        """``<experiment>/training.json``: how the run went (speed, device, options)."""
        train_opt, dataset_opt = self.opt['train'], self.opt['datasets']['train']
        summary = {
            'format': SUMMARY_FORMAT, 'name': self.opt['name'], 'model_type': self.opt['model_type'],
            'network_g': self.opt['network_g']['type'], 'device': device_name(self.device),
            'world_size': self.opt['world_size'], 'batch_size_per_gpu': dataset_opt['batch_size_per_gpu'],
            'gt_size': dataset_opt.get('gt_size'), 'dataset': dataset_opt['type'],
            'amp': self.fast.amp, 'channels_last': self.fast.channels_last, 'compile': self.fast.compile,
            'stopped_at_budget': getattr(self, 'stopped_at_budget', False), **self.clock.summary(),
            'manual_seed': self.opt.get('manual_seed'), 'ema_decay': train_opt.get('ema_decay', 0),
            'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        }
        path = osp.join(self.opt['path']['experiments_root'], SUMMARY_FILE)
        write_json(path, summary)

    @master_only
    def save_training_state(self, epoch, current_iter):
        """BasicSR's training state, with the fp16 loss scaler's (so a resume continues it exactly)."""
        if current_iter == -1:
            return
        state = {'epoch': epoch, 'iter': current_iter, 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [s.state_dict() for s in self.schedulers]}
        if self.grad_scaler is not None:
            state['grad_scaler'] = self.grad_scaler.state_dict()
        torch.save(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        if self.grad_scaler is not None:
            if 'grad_scaler' in resume_state:
                self.grad_scaler.load_state_dict(resume_state['grad_scaler'])
            else:
                get_root_logger().warning('The resume state has no fp16 loss scale (saved with another train.amp): '
                                          'the GradScaler starts afresh.')


def training_summary(checkpoint):
    """The ``training.json`` of the run whose ``<experiment>/models/net_g_latest.pth`` is ``checkpoint``, or None."""
    models = osp.dirname(osp.abspath(checkpoint))
    path = osp.join(osp.dirname(models), SUMMARY_FILE)
    if osp.basename(checkpoint) != 'net_g_latest.pth' or osp.basename(models) != 'models' or not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)
