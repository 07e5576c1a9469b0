"""A training run's clock: its speed, a progress line every so often, its time budget, its summary.

The clock is told when each training step begins and ends (BasicSR's loop calls the
model's ``optimize_parameters`` once an iteration). The time between one step's end and the
next one's beginning is what the loop spent outside the step: waiting for the next batch
above all (logging and saving too), what BasicSR's log calls ``time (data)``. On a GPU the
step returns once its kernels are queued, so the clock reads the GPU's pace once the queue
is full, without synchronizing.
"""
import time


class TrainingClock:
    """Times the steps of one process's training run.

    Args:
        total_iter: the run's planned last iteration.
        time_budget: seconds from the first step's beginning after which ``spent()`` is True, or None.
        progress_seconds: ``progress_due()`` is True once this many seconds passed since the last
            progress line (or the first step), or never when None.
    """

    MARK_SECONDS = 1.0  # how often the run's (iteration, time) is noted, for the steady rate

    def __init__(self, total_iter, time_budget=None, progress_seconds=None, now=time.perf_counter):
        self.total_iter, self.time_budget, self.progress_seconds, self.now = total_iter, time_budget, \
            progress_seconds, now
        self.start = self.first_iter = self.last_iter = self.step_end = None
        self.waiting = 0.0
        self.marks = []  # (iteration, seconds since start) at step ends, about MARK_SECONDS apart
        self.progress_mark = (None, 0.0)

    def step_begins(self, current_iter):
        now = self.now()
        if self.start is None:
            self.start, self.first_iter = now, current_iter
            self.progress_mark = (current_iter - 1, 0.0)
        else:
            self.waiting += now - self.step_end

    def step_ends(self, current_iter):
        self.step_end, self.last_iter = self.now(), current_iter
        elapsed = self.elapsed()
        if not self.marks or elapsed - self.marks[-1][1] >= self.MARK_SECONDS:
            self.marks.append((current_iter, elapsed))

    def elapsed(self):
        """Seconds from the first step's beginning to the last step's end."""
        return 0.0 if self.step_end is None else self.step_end - self.start

    def spent(self):
        """Whether the time budget is spent."""
        return self.time_budget is not None and self.elapsed() >= self.time_budget

    def progress_due(self):
        return self.progress_seconds is not None and self.elapsed() - self.progress_mark[1] >= self.progress_seconds

    def progress(self):
        """The progress line (and the next one's start): iterations, recent speed, time left, data wait."""
        last_iter, last_time = self.progress_mark
        elapsed = self.elapsed()
        rate = (self.last_iter - last_iter) / max(elapsed - last_time, 1e-9)
        self.progress_mark = (self.last_iter, elapsed)
        left = (self.total_iter - self.last_iter) / rate if rate > 0 else float('inf')
        budget = f', {self.time_budget - elapsed:.0f} s of the {self.time_budget:g} s budget left' \
            if self.time_budget is not None else ''
        return (f'progress: iter {self.last_iter:,}/{self.total_iter:,}, {rate:.1f} it/s over the last '
                f'{elapsed - last_time:.0f} s, {elapsed:.0f} s elapsed, about {left:.0f} s to go{budget}, '
                f'{self.data_wait_fraction():.1%} of the time outside the training step (data)')

    def data_wait_fraction(self):
        """Share of the elapsed time spent between steps (waiting for data, logging, saving)."""
        return self.waiting / self.elapsed() if self.elapsed() > 0 else 0.0

    def steady_rate(self):
        """Iterations per second over the run's second half (compiling and warming up are in the first), or None."""
        if not self.marks:
            return None
        end = self.elapsed()
        mid_iter, mid = next(m for m in self.marks if m[1] >= end / 2 or m is self.marks[-1])
        return (self.last_iter - mid_iter) / (end - mid) if end > mid else None

    def summary(self):
        """The run's speed as a dict (JSON-ready)."""
        elapsed = self.elapsed()
        done = 0 if self.last_iter is None else self.last_iter - self.first_iter + 1
        return {'first_iter': self.first_iter, 'last_iter': self.last_iter, 'total_iter': self.total_iter,
                'seconds': round(elapsed, 3), 'iterations_per_second': done / elapsed if elapsed > 0 else None,
                'steady_iterations_per_second': self.steady_rate(),
                'data_wait_fraction': self.data_wait_fraction(), 'time_budget': self.time_budget}
