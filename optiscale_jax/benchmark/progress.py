"""Progress on the terminal: one line per finished run, with an ETA.

The ETA is the mean wall time of the runs executed so far in this session
(loading data and computing f* included, since they are part of the wait)
times the number of runs still to do. Runs skipped because they were already
stored (``--resume``) count as done but not in the mean.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

__all__ = ["ProgressReporter", "format_duration"]


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


class ProgressReporter:
    """Prints ``[k/N] dataset | optimizer | result | time | elapsed | ETA`` lines.

    Args:
      total_runs: runs planned in the campaign (stored ones included).
      stream: where lines go (default stdout); None prints nothing.
      clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, total_runs: int, stream: TextIO | None = sys.stdout,
                 clock: Callable[[], float] = time.monotonic):
        if total_runs < 0:
            raise ValueError(f"total_runs must be >= 0, got {total_runs}")
        self.total_runs = int(total_runs)
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self._last = self.started
        self.done = 0
        self.executed = 0
        self.executed_wall_s = 0.0

    def add_planned(self, runs: int) -> None:
        """Grows the plan (e.g. one more ``benchmark_dataset`` call)."""
        self.total_runs += int(runs)

    def mark_start(self) -> None:
        """Starts the clock of the next run here (e.g. after a skipped run)."""
        self._last = self.clock()

    def eta_s(self) -> float:
        """Seconds still expected: mean executed-run time x runs remaining."""
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

    def run_finished(self, record: Mapping[str, Any]) -> str:
        """Counts one executed run and prints its line; returns the line."""
        now = self.clock()
        wall = now - self._last
        self._last = now
        self.done += 1
        self.executed += 1
        self.executed_wall_s += wall
        status = record.get("status", "?")
        if status in ("failed",):
            result = f"FAILED: {record.get('error', '')}"[:160]
        else:
            result = (f"{status} | loss {_fmt(record.get('final_loss'))} | "
                      f"rel.subopt {_fmt(record.get('relative_suboptimality'), '.2e')} | "
                      f"run {_fmt(record.get('run_time_s'), '.2f')} s + compile "
                      f"{_fmt(record.get('compile_time_s'), '.2f')} s")
        return self._emit(f"{record.get('dataset')} | {record.get('label', record.get('optimizer'))}"
                          f" | {result} | wall {wall:.1f} s")

    def run_skipped(self, dataset: str, label: str, why: str = "stored, --resume") -> str:
        """Counts a run that was not executed (already stored) and prints its line."""
        self.done += 1
        self._last = self.clock()
        return self._emit(f"{dataset} | {label} | skipped ({why})")

    def message(self, text: str) -> None:
        """A free-form line (a skipped data set, a phase)."""
        if self.stream is not None:
            print(text, file=self.stream, flush=True)
