"""Progress on the terminal: one line per finished step (a benchmark run), with an ETA.

The ETA is the mean wall time of the runs executed so far in this session
(loading data and computing f* included, since they are part of the wait)
times the number of runs still to do. Runs skipped because they were already
stored (``--resume``) count as done but not in the mean.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from optiscale_jax.benchmark.record import RunRecord

__all__ = ["EtaPrinter", "ProgressReporter", "format_duration"]


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` for a duration in seconds (``?`` when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _fmt(value: Any, spec: str = ".3e") -> str:
    if value is None:
        return "n/a"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


class EtaPrinter:
    """Prints ``[k/N] text | elapsed H:MM:SS | ETA H:MM:SS`` lines for any long loop.

    The ETA is the mean wall time of the steps timed so far (the time since the
    previous step or :meth:`mark_start`) times the steps still to do; steps
    counted with ``timed=False`` (e.g. already stored) count as done but not in
    the mean.

    Args:
      total: steps planned.
      stream: where lines go (default stdout); None prints nothing.
      clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, total: int, stream: TextIO | None = sys.stdout,
                 clock: Callable[[], float] = time.monotonic):
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.total_runs = int(total)
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self._last = self.started
        self.done = 0
        self.executed = 0
        self.executed_wall_s = 0.0

    def add_planned(self, runs: int) -> None:
        """Grows (or, negative, shrinks) the plan."""
        self.total_runs += int(runs)

    def mark_start(self) -> None:
        """Starts the clock of the next step here (e.g. after loading data)."""
        self._last = self.clock()

    def eta_s(self) -> float:
        """Seconds still expected: mean timed-step wall time x steps remaining."""
        remaining = max(self.total_runs - self.done, 0)
        if remaining == 0:
            return 0.0
        if self.executed == 0:
            return math.nan
        return self.executed_wall_s / self.executed * remaining

    def _emit(self, text: str) -> str:
        line = (f"[{self.done:>{len(str(self.total_runs))}}/{self.total_runs}] {text} | "
                f"elapsed {format_duration(self.clock() - self.started)} | "
                f"ETA {format_duration(self.eta_s())}")
        if self.stream is not None:
            print(line, file=self.stream, flush=True)
        return line

    def step(self, text: str, *, timed: bool = True) -> str:
        """Counts one finished step and prints its line (with ``| wall x s`` when timed)."""
        now = self.clock()
        wall = now - self._last
        self._last = now
        self.done += 1
        if timed:
            self.executed += 1
            self.executed_wall_s += wall
            text = f"{text} | wall {wall:.1f} s"
        return self._emit(text)

    def message(self, text: str) -> None:
        """A free-form line (a skipped data set, a phase)."""
        if self.stream is not None:
            print(text, file=self.stream, flush=True)


class ProgressReporter(EtaPrinter):
    """Prints ``[k/N] dataset | optimizer | result | time | elapsed | ETA`` lines.

    Args:
      total_runs: runs planned in the campaign (stored ones included).
      stream: where lines go (default stdout); None prints nothing.
      clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, total_runs: int, stream: TextIO | None = sys.stdout,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(total_runs, stream=stream, clock=clock)

    def run_finished(self, record: RunRecord) -> str:
        """Counts one executed run and prints its line; returns the line."""
        if record.failed:
            result = f"FAILED: {record.error or ''}"[:160]
        else:
            compile_s = ("-" if record.backend != "jax"
                         else f"{_fmt(record.compile_time_s, '.2f')} s")
            result = (f"{record.status.value} | loss {_fmt(record.final_loss)} | "
                      f"rel.subopt {_fmt(record.relative_suboptimality, '.2e')} | "
                      f"run {_fmt(record.run_time_s, '.2f')} s + compile {compile_s}")
        return self.step(f"{record.dataset} | {record.label or record.optimizer} | {result}")

    def run_skipped(self, dataset: str, label: str, why: str = "stored, --resume") -> str:
        """Counts a run that was not executed (already stored) and prints its line."""
        return self.step(f"{dataset} | {label} | skipped ({why})", timed=False)
