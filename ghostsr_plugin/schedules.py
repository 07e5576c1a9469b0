"""Schedules of a training quantity, a pure function of the iteration: the temperature of every learned
Gumbel choice (Ghost layers' orientations, SMSR's masks) and SMSR's sparsity weight.

Chosen in the option file's ``train`` section (``temperature_schedule``; SMSRModel's
``sparsity_schedule`` takes the same keys)::

    temperature_schedule:
      type: exponential   # exponential | cosine | linear | step | constant, or your own
      base: 0.97          # type-specific arguments (linear and cosine: end, the value they reach)
      unit: epoch         # the clock: BasicSR epochs or iterations
      period: 1           # units per schedule step (e.g. unit: iter, period: 1000)
      span: ~             # units after the warm-up over which linear and cosine reach their end
                          #   (default: the rest of the run)
      floor: 0            # the value never goes below this
      warmup: 0           # units during which the value stays at start (Ghost layers: the orientation
                          #   is held still)
      hold_from: ~        # from this unit on, the orientation is held still to the end

A schedule is a pure function of the iteration, so a resumed run continues it exactly.
Add your own the BasicSR way: decorate a ``TemperatureSchedule`` subclass with
``@SCHEDULE_REGISTRY.register()`` and name it in ``type:``.
"""
import inspect
import math

from basicsr.utils.registry import Registry

from ghostsr_plugin.errors import InputError

SCHEDULE_REGISTRY = Registry('temperature_schedule')
DEFAULT_SCHEDULE = {'type': 'exponential', 'base': 0.97, 'unit': 'epoch'}


class TemperatureSchedule:
    """Clock and common options; subclasses define ``value(step, num_steps)``.

    ``step`` counts schedule steps since the warm-up ended (0 at the first iteration after
    it); ``num_steps`` is how many steps the schedule runs its course over: ``span`` units, or
    the rest of the run after the warm-up.
    """

    def __init__(self, start=1.0, floor=0.0, unit='epoch', period=1, warmup=0, span=None, hold_from=None):
        _check(start >= 0, 'start', f'must be >= 0, found {start}')
        _check(floor >= 0, 'floor', f'must be >= 0, found {floor}')
        _check(unit in ('epoch', 'iter'), 'unit', f"must be 'epoch' or 'iter', found {unit!r}")
        _check(isinstance(period, int) and period >= 1, 'period', f'must be an integer >= 1, found {period!r}')
        _check(isinstance(warmup, int) and warmup >= 0, 'warmup', f'must be an integer >= 0, found {warmup!r}')
        _check(span is None or isinstance(span, int) and span >= 1, 'span', f'must be an integer >= 1, found {span!r}')
        _check(hold_from is None or (isinstance(hold_from, int) and hold_from > warmup), 'hold_from',
               f'must be an integer > warmup ({warmup}), found {hold_from!r}')
        self.start, self.floor, self.unit, self.period, self.warmup = start, floor, unit, period, warmup
        self.span, self.hold_from = span, hold_from

    def _units(self, current_iter, iters_per_epoch):
        """Whole units elapsed before 1-based ``current_iter`` (0 during the first unit)."""
        return (current_iter - 1) // iters_per_epoch if self.unit == 'epoch' else current_iter - 1

    def holds(self, current_iter, iters_per_epoch=1):
        """True while the warm-up, or from ``hold_from`` on the hold, keeps the orientation still."""
        units = self._units(current_iter, iters_per_epoch)
        return units < self.warmup or (self.hold_from is not None and units >= self.hold_from)

    @property
    def ever_holds(self):
        """Whether some iteration leaves the logits without gradient (distributed training must be told)."""
        return self.warmup > 0 or self.hold_from is not None

    def __call__(self, current_iter, total_iter, iters_per_epoch=1):
        """The value at 1-based ``current_iter`` of a ``total_iter``-iteration run."""
        step = max(self._units(current_iter, iters_per_epoch) - self.warmup, 0) // self.period
        total_units = self.span or self._units(total_iter, iters_per_epoch) + 1 - self.warmup
        num_steps = max(math.ceil(total_units / self.period), 1)
        return max(self.value(step, num_steps), self.floor)

    def value(self, step, num_steps):
        raise NotImplementedError


class _BadOption(ValueError):

    def __init__(self, key, message):
        super().__init__(f'{key}: {message}')
        self.key, self.message = key, message


def _check(condition, key, message):
    if not condition:
        raise _BadOption(key, message)


@SCHEDULE_REGISTRY.register()
class ExponentialSchedule(TemperatureSchedule):
    """``start * base^step``: the official code's ``0.97^(epoch - 1)`` with the defaults."""

    def __init__(self, base=0.97, **common):
        super().__init__(**common)
        _check(0 < base <= 1, 'base', f'must be in (0, 1], found {base}')
        self.base = base

    def value(self, step, num_steps):
        return self.start * self.base**step


class _ToEnd(TemperatureSchedule):
    """From ``start`` to ``end`` (default: ``floor``) over the schedule's course, then held there."""

    def __init__(self, end=None, **common):
        super().__init__(**common)
        _check(end is None or end >= 0, 'end', f'must be >= 0, found {end}')
        self.end = self.floor if end is None else end


@SCHEDULE_REGISTRY.register()
class CosineSchedule(_ToEnd):
    """Half a cosine from ``start`` to ``end`` over the training after warm-up (or ``span``)."""

    def value(self, step, num_steps):
        return self.end + (self.start - self.end) * (1 + math.cos(math.pi * min(step / num_steps, 1))) / 2


@SCHEDULE_REGISTRY.register()
class LinearSchedule(_ToEnd):
    """A straight line from ``start`` to ``end`` over the training after warm-up (or ``span``): SMSR's
    temperature, 1 down to 0.4 over the first 30% of training, and its sparsity weight's warm-up."""

    def value(self, step, num_steps):
        return self.start + (self.end - self.start) * min(step / num_steps, 1)


@SCHEDULE_REGISTRY.register()
class StepSchedule(TemperatureSchedule):
    """``start * gamma^k`` after the k-th of ``milestones`` (in schedule steps) has passed."""

    def __init__(self, milestones=(), gamma=0.1, **common):
        super().__init__(**common)
        _check(0 < gamma <= 1, 'gamma', f'must be in (0, 1], found {gamma}')
        _check(list(milestones) == sorted(milestones), 'milestones', f'must be increasing, found {milestones}')
        self.milestones, self.gamma = list(milestones), gamma

    def value(self, step, num_steps):
        return self.start * self.gamma**sum(step >= m for m in self.milestones)


@SCHEDULE_REGISTRY.register()
class ConstantSchedule(TemperatureSchedule):
    """The noise scale stays at ``start``."""

    def value(self, step, num_steps):
        return self.start


def schedule_types():
    """Accepted ``type:`` values: registered class names, and 'exponential' for ``ExponentialSchedule`` etc."""
    types = dict(iter(SCHEDULE_REGISTRY))
    types.update({name.removesuffix('Schedule').lower(): cls for name, cls in SCHEDULE_REGISTRY})
    return types


def build_schedule(schedule_opt=None, key='train.temperature_schedule', default=DEFAULT_SCHEDULE):
    """The schedule an option section at ``key`` describes (without one: ``default``, the official exponential)."""
    opt = dict(default if schedule_opt is None else schedule_opt)
    name = opt.pop('type', None)
    types = schedule_types()
    if name not in types:
        short_names = sorted(t for t in types if t.islower())
        raise InputError(f"key '{key}.type': unknown schedule {name!r}; expected one of {short_names}")
    cls = types[name]
    accepted = {p for c in cls.__mro__[:-1] for p in inspect.signature(c.__init__).parameters} - {'self', 'common'}
    unknown = sorted(set(opt) - accepted)
    if unknown:
        raise InputError(f"key '{key}.{unknown[0]}': not an option of the {name} schedule; "
                         f'expected one of {sorted(accepted)}')
    try:
        return cls(**opt)
    except _BadOption as err:
        raise InputError(f"key '{key}.{err.key}': {err.message}") from None
