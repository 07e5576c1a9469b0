"""Temperature schedules: values against hand-computed ones, floor, warm-up, registry, errors."""
import math

import pytest

from ghostsr_plugin.cli import basicsr_main
from ghostsr_plugin.errors import InputError
from ghostsr_plugin.schedules import SCHEDULE_REGISTRY, TemperatureSchedule, build_schedule

from .conftest import write_options


def values(opt, iterations, total_iter=100, iters_per_epoch=10):
    schedule = build_schedule(opt)
    return [schedule(i, total_iter, iters_per_epoch) for i in iterations]


def test_default_is_the_official_exponential_per_epoch():
    # epoch e (1-based) covers iterations 10(e-1)+1 .. 10e: noise 0.97^(e-1)
    assert values(None, [1, 10, 11, 20, 21, 95]) == pytest.approx([1, 1, 0.97, 0.97, 0.97**2, 0.97**9])


def test_exponential_per_iteration_with_period_and_floor():
    opt = {'type': 'exponential', 'base': 0.5, 'unit': 'iter', 'period': 2, 'floor': 0.1}
    assert values(opt, [1, 2, 3, 5, 7, 9]) == pytest.approx([1, 1, 0.5, 0.25, 0.125, 0.1])


def test_cosine_and_linear_reach_the_floor_at_the_end():
    # per iteration, 100 steps: step s = i - 1
    cosine = values({'type': 'cosine', 'unit': 'iter', 'start': 2, 'floor': 0.2}, [1, 51, 100])
    assert cosine == pytest.approx([2, 0.2 + 1.8 * (1 + math.cos(math.pi * 0.5)) / 2,
                                    0.2 + 1.8 * (1 + math.cos(math.pi * 0.99)) / 2])
    linear = values({'type': 'linear', 'unit': 'epoch'}, [1, 11, 55, 100])  # 10 epochs, steps 0, 1, 5, 9
    assert linear == pytest.approx([1, 0.9, 0.5, 0.1])


def test_smsr_papers_temperature_and_sparsity_weight_over_a_span():
    # The paper's epochs of 1,000 iterations, 1,000 of them: tau = max(1 - (epoch - 1) / 500, 0.4) and the
    # sparsity weight min((epoch - 1) / 50, 1), as in options/train/SMSR.
    temperature = {'type': 'linear', 'start': 1, 'end': 0.4, 'span': 300_000, 'period': 1000, 'unit': 'iter'}
    weight = {'type': 'linear', 'start': 0, 'end': 1, 'span': 50_000, 'period': 1000, 'unit': 'iter'}
    iterations = [1, 1000, 1001, 150_001, 299_001, 300_001, 999_999]
    epochs = [(i - 1) // 1000 + 1 for i in iterations]
    assert values(temperature, iterations, 1_000_000) == pytest.approx([max(1 - (e - 1) / 500, 0.4) for e in epochs])
    assert values(weight, iterations, 1_000_000) == pytest.approx([min((e - 1) / 50, 1) for e in epochs])
    # the span is in units whatever the run's length: a run moved to 2,000 iterations keeps its ramp
    ramp = {'type': 'linear', 'start': 0, 'end': 1, 'span': 75, 'unit': 'iter'}
    assert values(ramp, [1, 38, 76, 2000], 2000) == pytest.approx([0, 37 / 75, 1, 1])
    # cosine reaches its end too; without end, linear and cosine end at the floor as before
    assert values({'type': 'cosine', 'start': 0, 'end': 2, 'span': 10, 'unit': 'iter'}, [1, 6, 11]) == \
        pytest.approx([0, 1, 2])


def test_step_and_constant():
    opt = {'type': 'step', 'milestones': [2, 5], 'gamma': 0.5, 'unit': 'epoch'}
    assert values(opt, [1, 20, 21, 50, 51]) == pytest.approx([1, 1, 0.5, 0.5, 0.25])
    assert values({'type': 'constant', 'start': 0.3}, [1, 50, 100]) == [0.3, 0.3, 0.3]


def test_warmup_holds_then_starts_the_clock():
    opt = {'type': 'exponential', 'base': 0.5, 'unit': 'epoch', 'warmup': 2}
    schedule = build_schedule(opt)
    assert [schedule.holds(i, 10) for i in (1, 20, 21)] == [True, True, False]
    assert values(opt, [21, 30, 31, 41]) == pytest.approx([1, 1, 0.5, 0.25])
    # linear over the 8 epochs after the warm-up
    assert values({'type': 'linear', 'warmup': 2}, [21, 61]) == pytest.approx([1, 0.5])


def test_hold_from_holds_the_orientation_to_the_end():
    opt = {'type': 'exponential', 'base': 0.5, 'unit': 'iter', 'warmup': 2, 'hold_from': 5}
    schedule = build_schedule(opt)
    # units elapsed before iteration i: i - 1; held while < 2 or >= 5
    assert [schedule.holds(i) for i in range(1, 9)] == [True, True, False, False, False, True, True, True]
    assert values(opt, [3, 4, 5, 6, 8], total_iter=8) == pytest.approx([1, 0.5, 0.25, 0.125, 0.03125])
    assert build_schedule({'type': 'constant', 'unit': 'epoch', 'hold_from': 3}).holds(31, 10)


def test_a_user_schedule_registers_the_basicsr_way():
    @SCHEDULE_REGISTRY.register()
    class HalvingTestSchedule(TemperatureSchedule):

        def value(self, step, num_steps):
            return self.start / 2**step

    try:
        assert values({'type': 'HalvingTestSchedule', 'unit': 'iter'}, [1, 3]) == [1, 0.25]
        assert values({'type': 'halvingtest', 'unit': 'iter'}, [2]) == [0.5]
    finally:
        SCHEDULE_REGISTRY._obj_map.pop('HalvingTestSchedule')


@pytest.mark.parametrize('opt,key,fragment', [
    ({'type': 'expo'}, 'train.temperature_schedule.type', "unknown schedule 'expo'"),
    ({'type': 'exponential', 'base': -0.5}, 'train.temperature_schedule.base', 'must be in (0, 1], found -0.5'),
    ({'type': 'linear', 'bse': 1}, 'train.temperature_schedule.bse', 'not an option of the linear schedule'),
    ({'type': 'cosine', 'unit': 'epochs'}, 'train.temperature_schedule.unit', "found 'epochs'"),
    ({'type': 'linear', 'span': 0}, 'train.temperature_schedule.span', 'must be an integer >= 1, found 0'),
    ({'type': 'linear', 'end': -1}, 'train.temperature_schedule.end', 'must be >= 0, found -1'),
    ({'type': 'linear', 'warmup': 5, 'hold_from': 5}, 'train.temperature_schedule.hold_from',
     'integer > warmup (5), found 5'),
    ({'type': 'cosine', 'hold_from': 0.7}, 'train.temperature_schedule.hold_from', 'found 0.7'),
])
def test_bad_schedules_name_the_key(opt, key, fragment):
    with pytest.raises(InputError) as info:
        build_schedule(opt)
    assert f"'{key}'" in str(info.value) and fragment in str(info.value)


def test_basicsr_train_rejects_a_negative_base_before_running(capsys, tmp_path, tiny_options):
    tiny_options['train']['temperature_schedule'] = {'type': 'exponential', 'base': -0.97}
    path = write_options(tmp_path / 'o.yml', tiny_options)
    with pytest.raises(SystemExit):
        basicsr_main(['train', '-opt', path])
    err = capsys.readouterr().err
    assert 'o.yml' in err and "'train.temperature_schedule.base'" in err and 'found -0.97' in err
