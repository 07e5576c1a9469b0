"""TrainingClock: speed, data wait, progress lines and the time budget, on a clock the test moves."""
import pytest

from ghostsr_plugin.training_clock import TrainingClock


class FakeTime:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def run(clock, time, steps, step_seconds, wait_seconds, first=1):
    for i in range(first, first + steps):
        clock.step_begins(i)
        time.now += step_seconds
        clock.step_ends(i)
        time.now += wait_seconds


def test_rates_wait_share_and_budget():
    time = FakeTime()
    clock = TrainingClock(1000, time_budget=30, progress_seconds=10, now=time)
    clock.step_begins(1)
    time.now += 8.0  # the first step compiles
    clock.step_ends(1)
    time.now += 0.5
    run(clock, time, 99, step_seconds=0.15, wait_seconds=0.05, first=2)
    elapsed = 8.0 + 0.5 + 99 * 0.2 - 0.05  # (the clock stops at the last step's end)
    summary = clock.summary()
    assert summary['seconds'] == pytest.approx(elapsed) and summary['last_iter'] == 100
    assert summary['iterations_per_second'] == pytest.approx(100 / elapsed)
    assert summary['steady_iterations_per_second'] == pytest.approx(5.0, rel=0.05)  # 0.2 s an iteration
    assert clock.data_wait_fraction() == pytest.approx((0.5 + 98 * 0.05) / elapsed)
    assert not clock.spent()
    run(clock, time, 10, step_seconds=0.15, wait_seconds=0.05, first=101)
    assert clock.spent()


def test_a_progress_line_once_the_interval_passed():
    time = FakeTime()
    clock = TrainingClock(50, progress_seconds=1.0, now=time)
    lines = []
    for i in range(1, 21):
        clock.step_begins(i)
        time.now += 0.25
        clock.step_ends(i)
        if clock.progress_due():
            lines.append(clock.progress())
    assert len(lines) == 5  # every fourth step
    assert lines[1].startswith('progress: iter 8/50, 4.0 it/s over the last 1 s, 2 s elapsed, about 10 s to go')
    assert lines[1].endswith('0.0% of the time outside the training step (data)')
