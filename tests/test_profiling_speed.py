"""SpeedBenchmark: compare_backends (sync, medians, speed-ups, unavailable CuPy) and
benchmark_optimizer on the engine's estimators."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optiscale_jax.profiling import SpeedBenchmark, speed, summarize_times
from optiscale_jax.training.estimators import Adam


def test_summarize_times_matches_numpy():
    times = [0.3, 0.1, 0.2, 0.7]
    summary = summarize_times(times)
    assert summary["mean_time"] == pytest.approx(np.mean(times))
    assert summary["median_time"] == pytest.approx(np.median(times))
    assert summary["std_time"] == pytest.approx(np.std(times, ddof=1))
    assert (summary["min_time"], summary["max_time"]) == (0.1, 0.7)
    assert summarize_times([2.0])["std_time"] == 0.0
    with pytest.raises(ValueError, match="at least one"):
        summarize_times([])


class ReadinessClock:
    """A real clock that also notes, at every reading, whether any JAX array was still pending."""

    def __init__(self):
        self.readings_with_pending_work = 0
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        if any(not array.is_ready() for array in jax.live_arrays()):
            self.readings_with_pending_work += 1
        return time.perf_counter()


def test_compare_backends_numpy_jax_and_an_unavailable_cupy(monkeypatch):
    reason = "CuPy is not installed (test): pip install -r requirements-cuda.txt"
    real_available = speed.backend_available
    monkeypatch.setattr(speed, "backend_available",
                        lambda name: (False, reason) if name == "cupy" else real_available(name))
    rng = np.random.default_rng(0)
    X = rng.random((768, 768), dtype=np.float32)
    operation = lambda m: m @ m.T  # noqa: E731  (the spec's example operation)
    clock = ReadinessClock()
    result = SpeedBenchmark(warmup=1, clock=clock).compare_backends(operation, X, n_runs=3)
    assert list(result) == ["numpy", "jax", "cupy"]
    assert result["cupy"] == {"available": False, "reason": reason}
    for name in ("numpy", "jax"):
        entry = result[name]
        assert entry["available"] and len(entry["times"]) == 3
        assert entry["median_time"] == pytest.approx(np.median(entry["times"]))
        assert entry["speedup_vs_numpy"] == pytest.approx(
            result["numpy"]["median_time"] / entry["median_time"])
        assert entry["dtype"] == "float32"
        assert entry["max_rel_error_vs_numpy"] < 1e-5
    assert result["numpy"]["speedup_vs_numpy"] == 1.0
    assert result["jax"]["compile_time"] > 0 and result["numpy"]["compile_time"] is None
    # Every clock reading came after the product was computed: an unblocked timing would
    # read the clock while the 768 x 768 product is still pending.
    assert clock.readings >= 2 * (3 + 1)
    assert clock.readings_with_pending_work == 0


def test_the_readiness_clock_sees_unblocked_work():
    """The check above can fail: a reading right after a dispatch sees pending work."""
    a = jnp.ones((1536, 1536), jnp.float32)
    product = jax.jit(lambda m: jnp.tanh(m @ m) @ m)
    jax.block_until_ready(product(a))
    clock = ReadinessClock()
    pending = product(a)
    clock()
    jax.block_until_ready(pending)
    assert clock.readings_with_pending_work == 1


def test_compare_backends_keeps_float64_on_jax():
    X = np.random.default_rng(1).random((64, 32))
    result = SpeedBenchmark(warmup=0).compare_backends(lambda m: m @ m.T, X,
                                                       backends=["jax", "numpy"], n_runs=2)
    assert list(result) == ["jax", "numpy"]
    assert result["jax"]["dtype"] == "float64"
    assert result["jax"]["max_rel_error_vs_numpy"] < 1e-13


def test_compare_backends_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_runs=0"):
        SpeedBenchmark().compare_backends(lambda m: m, np.ones(3), n_runs=0)
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        SpeedBenchmark().compare_backends(lambda m: m, np.ones(3), backends=["torch"])
    with pytest.raises(ValueError, match="warmup=-1"):
        SpeedBenchmark(warmup=-1)


def test_benchmark_optimizer_with_the_adam_estimator():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2_000, 20))
    y = (X @ rng.standard_normal(20) > 0).astype(float)
    start = time.perf_counter()
    result = SpeedBenchmark().benchmark_optimizer(
        Adam, X, y, config={"learning_rate": 0.01, "epochs": 200}, n_runs=2)
    outer = time.perf_counter() - start
    assert result["epochs"] == [200, 200] and result["n_samples"] == 2_000
    assert result["median_time"] == pytest.approx(np.median(result["times"]))
    assert result["throughput_samples_per_sec"] == pytest.approx(
        2_000 * 200 / result["median_time"])
    assert result["time_per_epoch"] == pytest.approx(result["median_time"] / 200)
    for run_time, compile_time, wall in zip(result["times"], result["compile_times"],
                                            result["wall_times"]):
        assert 0 < run_time and 0 < compile_time and run_time + compile_time <= wall
    assert sum(result["wall_times"]) <= outer
    assert result["compile_time"] == pytest.approx(np.mean(result["compile_times"]))


def test_benchmark_optimizer_needs_an_engine_estimator():
    class Silent:
        def __init__(self, **config):
            self.config = config

        def fit(self, X, y):
            return self

    with pytest.raises(RuntimeError, match="reported no epochs"):
        SpeedBenchmark().benchmark_optimizer(Silent, np.ones((4, 2)), np.ones(4), n_runs=1)
