"""SpeedBenchmark: repeated, synchronized timings of estimators and of one operation on several backends.

Rules kept here (see ``docs/profiling.md``): device work is waited for before
a clock is read (``block_until_ready`` for JAX, a CUDA stream sync for CuPy);
JAX compilation is timed apart (``jit(f).lower(x).compile()``); warm-up calls
are run and discarded; the median is the headline figure. Times are seconds.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from optiscale_jax.backends import backend_available, get_backend
from optiscale_jax.profiling.profiler import OptimizerProfiler


def summarize_times(times_s: Sequence[float]) -> dict[str, Any]:
    """``mean_time``, ``median_time``, ``std_time`` (sample std, 0 for one run),
    ``min_time``, ``max_time`` and ``times`` of a list of durations in seconds."""
    times = [float(t) for t in times_s]
    if not times:
        raise ValueError("summarize_times needs at least one duration")
    return {
        "mean_time": math.fsum(times) / len(times),
        "median_time": statistics.median(times),
        "std_time": statistics.stdev(times) if len(times) > 1 else 0.0,
        "min_time": min(times),
        "max_time": max(times),
        "times": times,
    }


def _check_runs(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")
    return int(value)


def _max_relative_error(result: Any, reference: np.ndarray | None, to_numpy) -> float | None:
    """max|result - reference| / max|reference| (None when either is not an array)."""
    if reference is None:
        return None
    try:
        values = np.asarray(to_numpy(result), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if values.shape != reference.shape:
        return math.inf
    scale = max(float(np.max(np.abs(reference))) if reference.size else 0.0, np.finfo(float).tiny)
    return float(np.max(np.abs(values - reference))) / scale if reference.size else 0.0


class SpeedBenchmark:
    """Synchronized speed measurements.

    Args:
      warmup: discarded calls before the timed ones in ``compare_backends``.
      clock: a monotonic clock in seconds (``time.perf_counter``); tests inject one
        to check that every reading follows a completed computation.
    """

    def __init__(self, warmup: int = 2, *, clock: Callable[[], float] = time.perf_counter):
        self.warmup = _check_runs("warmup", warmup, 0)
        self._clock = clock

    # ------------------------------------------------------------------ estimators
    def benchmark_optimizer(self, optimizer_cls: Callable[..., Any], X: Any, y: Any,
                            config: dict[str, Any] | None = None, n_runs: int = 3
                            ) -> dict[str, Any]:
        """Fit ``optimizer_cls(**config)`` on (X, y) ``n_runs`` times.

        Each fit runs inside an ``OptimizerProfiler``, which hears the engine's
        compile and epoch events: a run's time is its epochs' time (blocked,
        compile excluded); compile time is reported apart.

        Returns:
          ``summarize_times`` of the run times plus ``compile_time`` (mean over
          runs), ``compile_times``, ``wall_times`` (whole ``fit`` calls),
          ``epochs`` (per run), ``n_samples``, ``time_per_epoch`` (median time /
          epochs) and ``throughput_samples_per_sec`` = n_samples * epochs /
          median time (samples processed per second of training).
        """
        n_runs = _check_runs("n_runs", n_runs, 1)
        config = dict(config or {})
        n_samples = int(np.shape(X)[0])
        run_times, compile_times, wall_times, epochs = [], [], [], []
        for _ in range(n_runs):
            estimator = optimizer_cls(**config)
            with OptimizerProfiler() as profiler:
                estimator.fit(X, y)
            stats = profiler.get_stats()
            if stats["epochs"] == 0:
                raise RuntimeError(
                    f"{getattr(optimizer_cls, '__name__', optimizer_cls)!r}.fit reported no "
                    "epochs to optiscale_jax.training.events; benchmark_optimizer times "
                    "estimators that train on the optiscale_jax engine")
            run_times.append(stats["epoch_time_sum"])
            compile_times.append(stats["compile_time"])
            wall_times.append(stats["wall_time"])
            epochs.append(stats["epochs"])
        result = summarize_times(run_times)
        median_epochs = statistics.median(epochs)
        result.update({
            "compile_time": math.fsum(compile_times) / n_runs,
            "compile_times": compile_times,
            "wall_times": wall_times,
            "epochs": epochs,
            "n_samples": n_samples,
            "n_runs": n_runs,
            "time_per_epoch": result["median_time"] / median_epochs,
            "throughput_samples_per_sec": n_samples * median_epochs / result["median_time"],
        })
        return result

    # ------------------------------------------------------------------ backends
    def compare_backends(self, operation: Callable[[Any], Any], data_numpy: np.ndarray,
                         backends: Sequence[str] = ("numpy", "jax", "cupy"), n_runs: int = 10,
                         *, jit: bool = True) -> dict[str, dict[str, Any]]:
        """Time ``operation(data)`` on each backend's copy of ``data_numpy``.

        Per backend: the data are moved to it once (``transfer_time``, not in
        the timings); JAX's ``jit(operation)`` is compiled ahead of time
        (``compile_time``); ``self.warmup`` calls are discarded; ``n_runs``
        calls are timed, each waiting for the device. The data keep their
        dtype on every backend (a float64 input runs JAX with 64-bit enabled).

        Returns:
          ``{backend: {...}}``; an unavailable backend has ``available=False``
          and its ``reason``; an available one ``summarize_times`` keys,
          ``device``, ``dtype``, ``speedup_vs_numpy`` (NumPy's median / this
          median, when NumPy was timed) and ``max_rel_error_vs_numpy``.
        """
        n_runs = _check_runs("n_runs", n_runs, 1)
        data = np.asarray(data_numpy)
        names = [str(name).lower() for name in backends]
        results: dict[str, dict[str, Any]] = {}
        reference: np.ndarray | None = None
        for name in (["numpy"] if "numpy" in names else []) + [n for n in names if n != "numpy"]:
            available, reason = backend_available(name)
            if not available:
                results[name] = {"available": False, "reason": reason}
                continue
            backend = get_backend(name)
            x64 = name == "jax" and data.dtype.itemsize == 8 and data.dtype.kind in "fc"
            with jax.enable_x64(True) if x64 else contextlib.nullcontext():
                entry, output = self._time_backend(backend, operation, data, n_runs, jit)
                if name == "numpy":
                    try:
                        reference = np.asarray(output, dtype=np.float64)
                    except (TypeError, ValueError):
                        reference = None
                entry["max_rel_error_vs_numpy"] = _max_relative_error(
                    output, reference, backend.to_numpy)
            results[name] = entry
        if "numpy" in results and results["numpy"].get("available"):
            numpy_median = results["numpy"]["median_time"]
            for entry in results.values():
                if entry.get("available"):
                    entry["speedup_vs_numpy"] = numpy_median / entry["median_time"]
        return {name: results[name] for name in names}

    def _time_backend(self, backend: Any, operation: Callable[[Any], Any], data: np.ndarray,
                      n_runs: int, jit: bool) -> tuple[dict[str, Any], Any]:
        start = self._clock()
        x = backend.synchronize(backend.asarray(data))
        transfer_time = self._clock() - start
        compile_time = None
        function = operation
        if backend.name == "jax" and jit:
            start = self._clock()
            function = jax.jit(operation).lower(x).compile()
            compile_time = self._clock() - start
        output = None
        for _ in range(self.warmup):
            output = backend.synchronize(function(x))
        times = []
        for _ in range(n_runs):
            start = self._clock()
            output = backend.synchronize(function(x))
            times.append(self._clock() - start)
        entry = {"available": True, "reason": "", "device": backend.device_description(),
                 "dtype": str(getattr(x, "dtype", data.dtype)), "transfer_time": transfer_time,
                 "compile_time": compile_time, "n_runs": n_runs, "warmup": self.warmup,
                 "jit": bool(backend.name == "jax" and jit), **summarize_times(times)}
        return entry, output
