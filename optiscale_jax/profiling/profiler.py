"""OptimizerProfiler: wall-clock time per epoch, compile time and peak memory of a training run.

Two ways to feed it, which can be mixed:

* explicitly: ``start()``, then ``record_compile(result)`` once the program is
  compiled and ``record_epoch(result)`` after each epoch, then ``stop()``. Each
  record first blocks on ``result`` (JAX, CuPy or NumPy arrays, any pytree),
  so asynchronous dispatch cannot hide compute time; the time since the
  previous record is attributed to that epoch (or to compilation);
* implicitly: inside ``with OptimizerProfiler() as p:`` (or between ``start``
  and ``stop``) the profiler listens to ``optiscale_jax.training.events``,
  so an estimator's ``fit`` reports its set-up time, its compile time and its
  epoch times; set-up and compile time are kept apart from ``total_time``.

Memory: the host peak is the kernel's ``VmHWM``, reset at ``start()`` (see
``_host_memory``); the accelerator peak is JAX's ``memory_stats()`` where the
device has one (GPU), which is process-wide and cannot be reset.

Units: seconds for times; ``*_mb`` values are MiB (2**20 bytes).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from optiscale_jax.profiling import _device_memory, _host_memory, _sync

MIB = float(2**20)

# Profilers between start() and stop(). VmHWM is one per process: before a new
# profiler resets it, each running one banks the peak it has seen so far, so
# nested profilers (a benchmark inside a user's profiler) keep correct peaks.
_RUNNING: list[OptimizerProfiler] = []


def _training_events():
    """The training package's event hub (profiling may import training, never the reverse)."""
    from optiscale_jax.training import events  # noqa: PLC0415  (heavy import, only when profiling)

    return events


class OptimizerProfiler:
    """Times epochs and compilation, and records host and device peak memory.

    Example::

        with OptimizerProfiler() as profiler:
            Adam(learning_rate=0.01, epochs=1000).fit(X, y)
        stats = profiler.get_stats()

    Args:
      listen_to_training_events: subscribe to ``optiscale_jax.training.events``
        while running, so the engine's ``("compile", s)`` and
        ``("epochs", n, s)`` events are recorded.
      clock: a monotonic clock in seconds (tests may inject one).
    """

    def __init__(self, *, listen_to_training_events: bool = True, clock=time.perf_counter):
        self._listen = bool(listen_to_training_events)
        self._clock = clock
        self._clear()

    def _clear(self) -> None:
        """Forget every record (a profiler can be started again after stop())."""
        self._events = None
        self._running = False
        self._start_time: float | None = None
        self._stop_time: float | None = None
        self._last_mark = 0.0
        self._excluded_since_mark = 0.0
        self._compile_time = 0.0
        self._setup_time = 0.0
        self._epoch_times: list[float] = []
        self._pending_results = 0
        self._reset = _host_memory.PeakReset(False, "profiler not started")
        self._start_rss: int | None = None
        self._host_peak: _host_memory.HostPeak | None = None
        self._banked_peak_bytes = 0
        self._device_start: list[_device_memory.DeviceMemory] = []
        self._device_end: list[_device_memory.DeviceMemory] | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> OptimizerProfiler:
        """Reset the host peak, read device memory and start the clock."""
        if self._running:
            raise RuntimeError("OptimizerProfiler.start() called twice; call stop() first")
        self._clear()
        self._device_start = _device_memory.device_memory()
        for other in _RUNNING:
            other._bank_host_peak()
        self._reset = _host_memory.reset_host_peak()
        self._start_rss = _host_memory.current_rss_bytes()
        if self._listen:
            self._events = _training_events()
            self._events.add_listener(self._on_training_event)
        self._running = True
        _RUNNING.append(self)
        self._start_time = self._last_mark = self._clock()
        return self

    def stop(self, result: Any = None) -> OptimizerProfiler:
        """Block on ``result`` (if given), stop the clock and read the peaks."""
        self._require_running("stop")
        self._pending_results += _sync.block(result)
        self._stop_time = self._clock()
        self._running = False
        _RUNNING.remove(self)
        if self._events is not None:
            self._events.remove_listener(self._on_training_event)
            self._events = None
        self._host_peak = self._current_host_peak()
        self._device_end = _device_memory.device_memory()
        return self

    def _current_host_peak(self) -> _host_memory.HostPeak:
        """The kernel's reading, raised to any peak banked before a nested reset."""
        reading = _host_memory.host_peak(self._reset)
        return reading._replace(peak_bytes=max(reading.peak_bytes, self._banked_peak_bytes))

    def _bank_host_peak(self) -> None:
        """Keep the peak seen so far: another profiler is about to reset VmHWM."""
        self._banked_peak_bytes = self._current_host_peak().peak_bytes

    def __enter__(self) -> OptimizerProfiler:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._running:
            self.stop()

    # ------------------------------------------------------------------ recording
    def record_compile(self, result: Any = None, *, seconds: float | None = None) -> float:
        """Attribute time to compilation.

        Args:
          result: blocked on first; then the time since the previous record is
            compile time (use right after ``jit(f).lower(...).compile()`` or a
            first call).
          seconds: a compile time measured elsewhere (e.g. an estimator's
            ``compile_time_s_``); it is then subtracted from the next epoch
            record instead of timing anything here.

        Returns:
          The compile seconds recorded by this call.
        """
        self._require_running("record_compile")
        if seconds is not None:
            if not (seconds >= 0 and math.isfinite(seconds)):
                raise ValueError(f"seconds={seconds!r}: a compile time must be finite and >= 0")
            self._compile_time += float(seconds)
            self._excluded_since_mark += float(seconds)
            return float(seconds)
        self._pending_results += _sync.block(result)
        now = self._clock()
        elapsed = max(0.0, now - self._last_mark - self._excluded_since_mark)
        self._compile_time += elapsed
        self._last_mark, self._excluded_since_mark = now, 0.0
        return elapsed

    def record_epoch(self, result: Any = None, *, n_epochs: int = 1) -> float:
        """Close one (or ``n_epochs``) epochs: block on ``result``, then read the clock.

        The time since the previous record, less any compile time recorded in
        between, is split evenly over ``n_epochs``.

        Returns:
          The seconds attributed to these epochs together.
        """
        self._require_running("record_epoch")
        if not isinstance(n_epochs, int) or n_epochs < 1:
            raise ValueError(f"n_epochs={n_epochs!r}: must be a positive integer")
        self._pending_results += _sync.block(result)
        now = self._clock()
        elapsed = max(0.0, now - self._last_mark - self._excluded_since_mark)
        self._epoch_times.extend([elapsed / n_epochs] * n_epochs)
        self._last_mark, self._excluded_since_mark = now, 0.0
        return elapsed

    def _on_training_event(self, kind: str, *values: float) -> None:
        """Listener for ``optiscale_jax.training.events``."""
        if kind == "compile":
            (seconds,) = values
            self._compile_time += float(seconds)
            self._excluded_since_mark += float(seconds)
        elif kind == "setup":
            (seconds,) = values
            self._setup_time += float(seconds)
            self._excluded_since_mark += float(seconds)     # kept out of the next record too
        elif kind == "epochs":
            n_epochs, seconds = values
            if int(n_epochs) > 0:
                self._epoch_times.extend([float(seconds) / int(n_epochs)] * int(n_epochs))
            self._last_mark, self._excluded_since_mark = self._clock(), 0.0

    def _require_running(self, method: str) -> None:
        if not self._running:
            raise RuntimeError(
                f"OptimizerProfiler.{method}() needs a running profiler: call start() first "
                "or use `with OptimizerProfiler() as profiler:`")

    # ------------------------------------------------------------------ results
    @property
    def epoch_times(self) -> list[float]:
        """Seconds of each recorded epoch, in order."""
        return list(self._epoch_times)

    def get_stats(self) -> dict[str, Any]:
        """Times (s) and memory (MiB) so far; callable while running or after ``stop()``.

        Keys:
          total_time: wall time from start to stop (or now) minus compile and set-up time.
          wall_time: wall time from start to stop (or now), compile and set-up included.
          compile_time: seconds recorded as compilation.
          setup_time: seconds the engine reported as set-up before compiling (its
            ``("setup", s)`` events: input checks, data layout, transfers).
          epochs, avg_epoch_time, median_epoch_time, epoch_time_sum.
          unattributed_time: ``total_time - epoch_time_sum`` (work outside epochs).
          pending_results: JAX arrays that were still computing when a record
            blocked on them (> 0 means timing without blocking would have been wrong).
          peak_memory_mb, peak_memory_source: host peak (VmHWM since start, or
            the fallback named by the source); start_memory_mb: RSS at start;
            peak_memory_increase_mb: peak minus start RSS.
          gpu_peak_memory_mb, gpu_memory_in_use_mb, gpu_memory_increase_mb,
          gpu_memory_source, gpu_devices: only where a device reports
            ``memory_stats()`` (sums over local devices).
        """
        if self._start_time is None:
            raise RuntimeError("OptimizerProfiler.get_stats(): the profiler was never started")
        end = self._stop_time if self._stop_time is not None else self._clock()
        wall = end - self._start_time
        total = wall - self._compile_time - self._setup_time
        epochs = len(self._epoch_times)
        epoch_sum = math.fsum(self._epoch_times)
        host = self._host_peak if self._host_peak is not None else self._current_host_peak()
        stats: dict[str, Any] = {
            "total_time": total,
            "wall_time": wall,
            "compile_time": self._compile_time,
            "setup_time": self._setup_time,
            "epochs": epochs,
            "epoch_time_sum": epoch_sum,
            "avg_epoch_time": epoch_sum / epochs if epochs else math.nan,
            "median_epoch_time": statistics.median(self._epoch_times) if epochs else math.nan,
            "unattributed_time": total - epoch_sum,
            "pending_results": self._pending_results,
            "running": self._running,
            "peak_memory_mb": host.peak_bytes / MIB,
            "peak_memory_source": host.source,
        }
        if self._start_rss is not None:
            stats["start_memory_mb"] = self._start_rss / MIB
            stats["peak_memory_increase_mb"] = (host.peak_bytes - self._start_rss) / MIB
        end_devices = self._device_end if self._device_end is not None else _device_memory.device_memory()
        if end_devices:
            start_in_use = sum(reading.bytes_in_use for reading in self._device_start)
            stats.update({
                "gpu_peak_memory_mb": sum(r.peak_bytes_in_use for r in end_devices) / MIB,
                "gpu_memory_in_use_mb": sum(r.bytes_in_use for r in end_devices) / MIB,
                "gpu_memory_increase_mb":
                    (sum(r.bytes_in_use for r in end_devices) - start_in_use) / MIB,
                "gpu_memory_source": (f"{_device_memory.SOURCE_DEVICE_STATS} (peak_bytes_in_use: "
                                      "process-wide high-water mark, not reset at start)"),
                "gpu_devices": [reading._asdict() for reading in end_devices],
            })
        return stats
