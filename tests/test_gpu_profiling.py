"""Profiling on a real NVIDIA GPU (run by scripts/gpu_check.sh; deselected elsewhere).

NVML readings are sane and move under load, JAX's device memory statistics
are present and seen by the profiler and the tracker, CuPy and JAX agree with
NumPy, and a JAX training run on the GPU matches the same run on the CPU.
Without a GPU these tests skip, unless OPTISCALE_REQUIRE_GPU=1 (set by the
check script), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optiscale_jax import training
from optiscale_jax.backends import backend_available
from optiscale_jax.problems import make_problem
from optiscale_jax.profiling import GPUMonitor, MemoryTracker, OptimizerProfiler, SpeedBenchmark, first_gpu

pytestmark = pytest.mark.gpu
MIB = 2**20


@pytest.fixture(scope="module")
def gpu():
    """The first JAX GPU device."""
    device, why = first_gpu()
    if device is None:
        message = f"no GPU visible to JAX ({why}); install jax[cuda12] on a machine with a GPU"
        if os.environ.get("OPTISCALE_REQUIRE_GPU") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return device


def _busy(gpu, seconds: float) -> int:
    """Keep the GPU busy with large products for about `seconds`; returns the count."""
    with jax.default_device(gpu):
        a = jnp.ones((8192, 8192), jnp.bfloat16)
        step = jax.jit(lambda m: (m @ m) * (1.0 / 8192))
        jax.block_until_ready(step(a))
        count, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            a = step(a)
            jax.block_until_ready(a)
            count += 1
    return count


def test_nvml_readings_are_sane(gpu):
    monitor = GPUMonitor(device_id=0)
    assert monitor.available, monitor.reason
    assert monitor.name
    sample = monitor.record()
    assert 1 * 2**30 <= sample.memory_total_bytes <= 2**40
    assert 0 <= sample.memory_used_bytes <= sample.memory_total_bytes
    assert 0 <= sample.gpu_utilization_percent <= 100
    assert 0 <= sample.memory_utilization_percent <= 100
    assert 10 <= sample.temperature_c <= 100
    assert 5 <= sample.power_w <= 1500
    monitor.close()


def test_monitor_sees_gpu_work(gpu):
    with GPUMonitor(device_id=0, interval_s=0.05) as monitor:
        products = _busy(gpu, 2.0)
    stats = monitor.get_stats()
    print(f"{products} bf16 8192^3 products in 2 s; {stats}")
    assert stats["n_samples"] >= 10 and stats["duration_s"] >= 1.5
    assert stats["utilization"]["gpu_max_percent"] >= 50
    assert stats["power"]["max_w"] > stats["power"]["avg_w"] * 0.5 > 0
    assert stats["energy"]["joules"] > 0
    # Energy is roughly mean power x time, whichever source gave it.
    assert 0.3 < stats["energy"]["joules"] / (stats["power"]["avg_w"] * stats["duration_s"]) < 3
    monitor.close()


def test_device_memory_in_profiler_and_tracker(gpu):
    assert "peak_bytes_in_use" in gpu.memory_stats()
    with OptimizerProfiler(listen_to_training_events=False) as profiler:
        block = jax.device_put(jnp.ones((64, MIB), jnp.float32), gpu)   # 256 MiB
        jax.block_until_ready(block)
    stats = profiler.get_stats()
    assert stats["gpu_memory_increase_mb"] >= 255
    assert stats["gpu_peak_memory_mb"] >= stats["gpu_memory_in_use_mb"] >= 256
    assert stats["gpu_memory_source"].startswith("device memory_stats")
    tracker = MemoryTracker()
    tracker.track_array("block", block)
    summary = tracker.get_summary()
    assert summary["by_device"] == {str(gpu): 256 * MIB}
    del block


def test_cupy_and_jax_match_numpy(gpu):
    available, reason = backend_available("cupy")
    assert available, reason
    X = np.random.default_rng(0).random((512, 512))          # float64: no TF32 anywhere
    result = SpeedBenchmark(warmup=1).compare_backends(lambda m: m @ m.T, X, n_runs=3)
    for name in ("cupy", "jax"):
        entry = result[name]
        assert entry["available"], entry
        assert entry["dtype"] == "float64"
        assert entry["max_rel_error_vs_numpy"] < 1e-12, (name, entry["max_rel_error_vs_numpy"])
    assert "gpu" in result["cupy"]["device"] and "gpu" in result["jax"]["device"]


def test_jax_gpu_run_matches_cpu(gpu):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2_000, 50))
    y = (X @ rng.standard_normal(50) + rng.standard_normal(2_000) > 0).astype(float)
    problem = make_problem("logistic", X, y, l2=1e-3)
    runs = {}
    for platform, device in (("cpu", jax.devices("cpu")[0]), ("gpu", gpu)):
        with jax.default_device(device):
            runs[platform] = training.run(problem, "adam", epochs=200, dtype="float64",
                                          hyperparams={"learning_rate": 1e-2})
    np.testing.assert_allclose(runs["gpu"].train_loss, runs["cpu"].train_loss, rtol=1e-10)
    np.testing.assert_allclose(runs["gpu"].params, runs["cpu"].params, rtol=1e-8, atol=1e-12)


def test_profiler_blocks_on_unfinished_gpu_work(gpu):
    """On a GPU, dispatch returns long before the product is done: the profiler waits."""
    import cupy  # noqa: PLC0415  (optional GPU dependency, only on a machine with CUDA)

    with jax.default_device(gpu):
        a = jnp.ones((8192, 8192), jnp.float32) / 8192
        product = jax.jit(lambda m: ((m @ m) @ m) @ m).lower(a).compile()
        jax.block_until_ready(product(a))
        start = time.perf_counter()
        pending = product(a)
        dispatch = time.perf_counter() - start
        jax.block_until_ready(pending)
        start = time.perf_counter()
        jax.block_until_ready(product(a))
        blocked = time.perf_counter() - start
        jax_profiler = OptimizerProfiler(listen_to_training_events=False).start()
        jax_profiler.record_epoch(product(a))
        jax_profiler.stop()
    c = cupy.ones((8192, 8192), cupy.float32) / 8192
    cupy_product = lambda m: ((m @ m) @ m) @ m  # noqa: E731
    cupy.cuda.get_current_stream().synchronize()
    cupy_product(c)
    cupy.cuda.get_current_stream().synchronize()
    start = time.perf_counter()
    cupy.cuda.get_current_stream().synchronize()
    cupy_product(c)
    cupy.cuda.get_current_stream().synchronize()
    cupy_blocked = time.perf_counter() - start
    cupy_profiler = OptimizerProfiler(listen_to_training_events=False).start()
    cupy_profiler.record_epoch(cupy_product(c))             # CuPy: stream sync inside
    cupy_profiler.stop()
    (jax_epoch,), (cupy_epoch,) = jax_profiler.epoch_times, cupy_profiler.epoch_times
    print(f"jax dispatch {dispatch:.2e} s, compute {blocked:.2e} s; profiler {jax_epoch:.2e} s; "
          f"cupy compute {cupy_blocked:.2e} s, profiler {cupy_epoch:.2e} s")
    assert dispatch < 0.5 * blocked
    assert jax_epoch > 0.7 * blocked and jax_profiler.get_stats()["pending_results"] == 1
    assert cupy_epoch > 0.7 * cupy_blocked


def test_tracker_counts_cupy_arrays(gpu):
    import cupy  # noqa: PLC0415  (optional GPU dependency, only on a machine with CUDA)

    tracker = MemoryTracker()
    record = tracker.track_array("c", cupy.zeros((1024, 256), cupy.float64))
    assert record.library == "cupy" and record.resident_bytes == 1024 * 256 * 8
    assert record.bytes_by_device == {"cuda:0": 1024 * 256 * 8}
