"""OptimizerProfiler: host peak (VmHWM reset per run), epoch/compile accounting, blocking,
and the engine's events (training.run and the estimators)."""

from __future__ import annotations

import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optiscale_jax import training
from optiscale_jax.problems import make_problem
from optiscale_jax.profiling import OptimizerProfiler, _host_memory
from optiscale_jax.training.estimators import Adam

MIB = 2**20


class FakeClock:
    """A clock the test advances by hand (seconds)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


# ------------------------------------------------------------------ accounting
def test_accounting_with_a_fake_clock():
    clock = FakeClock()
    profiler = OptimizerProfiler(listen_to_training_events=False, clock=clock).start()
    clock.now += 2.0
    assert profiler.record_compile() == 2.0              # start -> here was compilation
    clock.now += 0.5
    profiler.record_epoch()
    clock.now += 0.75
    profiler.record_compile(seconds=0.25)                 # e.g. a recompile timed elsewhere
    profiler.record_epoch(n_epochs=2)                     # 0.75 - 0.25 over two epochs
    running = profiler.get_stats()
    assert running["running"] and running["epochs"] == 3
    clock.now += 0.125
    stats = profiler.stop().get_stats()
    assert profiler.epoch_times == [0.5, 0.25, 0.25]
    assert stats["compile_time"] == 2.25
    assert stats["wall_time"] == 3.375
    assert stats["total_time"] == 3.375 - 2.25
    assert stats["epoch_time_sum"] == 1.0
    assert stats["avg_epoch_time"] == pytest.approx(1.0 / 3)
    assert stats["median_epoch_time"] == 0.25
    assert stats["unattributed_time"] == pytest.approx(0.125)


def test_misuse_raises_clear_errors():
    profiler = OptimizerProfiler(listen_to_training_events=False)
    with pytest.raises(RuntimeError, match="never started"):
        profiler.get_stats()
    with pytest.raises(RuntimeError, match=r"record_epoch\(\) needs a running profiler"):
        profiler.record_epoch()
    profiler.start()
    with pytest.raises(RuntimeError, match="called twice"):
        profiler.start()
    with pytest.raises(ValueError, match="n_epochs=0"):
        profiler.record_epoch(n_epochs=0)
    with pytest.raises(ValueError, match="seconds=-1"):
        profiler.record_compile(seconds=-1)
    profiler.stop()
    with pytest.raises(RuntimeError, match=r"stop\(\) needs a running profiler"):
        profiler.stop()


# ------------------------------------------------------------------ host memory
def test_host_peak_sees_a_freed_allocation_and_resets_between_runs():
    with OptimizerProfiler(listen_to_training_events=False) as profiler:
        block = np.ones(64 * MIB // 8)                    # 64 MiB, every page touched
        del block
    stats = profiler.get_stats()
    assert stats["peak_memory_source"] == "VmHWM"
    assert 63 <= stats["peak_memory_increase_mb"] <= 64 + 24
    assert stats["peak_memory_mb"] >= stats["start_memory_mb"] + 63
    with OptimizerProfiler(listen_to_training_events=False) as quiet:
        np.ones(MIB // 8).sum()
    assert quiet.get_stats()["peak_memory_increase_mb"] < 16   # the 64 MiB peak was reset


def test_peak_source_says_when_the_reset_is_refused(monkeypatch):
    real_open = open

    def refusing_open(path, *args, **kwargs):
        if path == _host_memory._PROC_CLEAR_REFS:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(_host_memory, "open", refusing_open, raising=False)
    with OptimizerProfiler(listen_to_training_events=False) as profiler:
        pass
    source = profiler.get_stats()["peak_memory_source"]
    assert source.startswith("VmHWM (not reset: PermissionError")
    assert "process lifetime peak" in source


def test_peak_falls_back_to_ru_maxrss_without_proc(monkeypatch, tmp_path):
    monkeypatch.setattr(_host_memory, "_PROC_STATUS", str(tmp_path / "missing"))
    with OptimizerProfiler(listen_to_training_events=False) as profiler:
        pass
    stats = profiler.get_stats()
    assert stats["peak_memory_source"].startswith("ru_maxrss (process lifetime peak")
    expected = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB
    assert stats["peak_memory_mb"] == pytest.approx(expected, rel=0.05)
    assert "start_memory_mb" not in stats


# ------------------------------------------------------------------ timing honesty
@pytest.fixture(scope="module")
def matmul():
    """A jitted product costing ~0.1 s on CPU, compiled once."""
    a = jnp.full((1024, 1024), 1.0 / 1024, jnp.float32)
    start = time.perf_counter()
    compiled = jax.jit(lambda m: jnp.tanh(m @ m) @ m).lower(a).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(a))
    return compiled, a, compile_s


class ReadinessClock:
    """A real clock that also counts readings taken while a JAX array was still pending."""

    def __init__(self):
        self.readings_with_pending_work = 0

    def __call__(self) -> float:
        if any(not array.is_ready() for array in jax.live_arrays()):
            self.readings_with_pending_work += 1
        return time.perf_counter()


def test_the_clock_is_read_only_after_the_epoch_is_computed(matmul):
    compiled, a, _ = matmul
    clock = ReadinessClock()
    profiler = OptimizerProfiler(listen_to_training_events=False, clock=clock).start()
    for _ in range(3):
        profiler.record_epoch(compiled(a))                 # handed unblocked arrays
    stats = profiler.stop().get_stats()
    assert stats["pending_results"] >= 1                   # it had to wait for them
    assert clock.readings_with_pending_work == 0


def test_a_clock_read_right_after_dispatch_sees_pending_work(matmul):
    """The check above can fail: reading the clock without blocking is caught."""
    compiled, a, _ = matmul
    clock = ReadinessClock()
    pending = compiled(a)
    clock()
    jax.block_until_ready(pending)
    assert clock.readings_with_pending_work == 1


def test_epoch_times_add_up_to_total_and_exclude_compile(matmul):
    _, a, _ = matmul
    function = jax.jit(lambda m: jnp.tanh(m @ m) @ m + 1.0)   # a new program: compiles here
    with OptimizerProfiler(listen_to_training_events=False) as profiler:
        start = time.perf_counter()
        compiled = function.lower(a).compile()
        measured_compile = time.perf_counter() - start
        profiler.record_compile()
        for _ in range(4):
            profiler.record_epoch(compiled(a))
    stats = profiler.get_stats()
    assert stats["epochs"] == 4
    assert stats["compile_time"] >= measured_compile       # its interval holds the compile
    assert stats["wall_time"] == pytest.approx(stats["compile_time"] + stats["total_time"])
    assert stats["setup_time"] == 0.0
    assert stats["total_time"] == pytest.approx(stats["epoch_time_sum"] + stats["unattributed_time"])
    assert stats["unattributed_time"] >= 0


# ------------------------------------------------------------------ engine events
@pytest.fixture(scope="module")
def logistic_problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4_000, 64))
    y = (X @ rng.standard_normal(64) + rng.standard_normal(4_000) > 0).astype(float)
    return make_problem("logistic", X, y, l2=1e-3)


def test_estimator_fit_inside_the_context_manager(logistic_problem):
    """The spec's usage: the engine's events give compile and epoch times."""
    estimator = Adam(learning_rate=0.01, epochs=300)
    listeners_before = training.events.listeners()
    with OptimizerProfiler() as profiler:
        estimator.fit(logistic_problem.X, logistic_problem.y)
    stats = profiler.get_stats()
    assert training.events.listeners() == listeners_before      # it unsubscribed on exit
    assert stats["epochs"] == 300
    assert stats["compile_time"] == estimator.compile_time_s_
    assert stats["epoch_time_sum"] == pytest.approx(estimator.fit_time_s_, rel=1e-12)
    assert stats["avg_epoch_time"] == pytest.approx(estimator.fit_time_s_ / 300, rel=1e-9)
    assert stats["wall_time"] >= estimator.total_time_s_      # the fit ran inside the profiler
    # Set-up (the estimator's checks and Problem, then the engine's layout and transfer) is
    # reported apart; what is left outside the epochs is the host copy of the results and
    # the release of the compiled program: wall = compile + setup + epochs + rest exactly.
    overhead = stats["unattributed_time"]
    print(f"Adam fit: {stats['epoch_time_sum']:.3f} s of epochs, setup "
          f"{stats['setup_time']:.3f} s (engine {estimator.result_.setup_time_s:.3f} s), "
          f"{overhead:.4f} s other, compile {stats['compile_time']:.3f} s")
    assert stats["setup_time"] > estimator.result_.setup_time_s > 0
    assert overhead >= 0
    assert stats["wall_time"] == pytest.approx(
        stats["compile_time"] + stats["setup_time"] + stats["epoch_time_sum"] + overhead,
        rel=1e-12)
    assert stats["total_time"] == pytest.approx(stats["epoch_time_sum"] + overhead, rel=1e-12)


def test_nested_profilers_keep_their_own_peaks():
    with OptimizerProfiler(listen_to_training_events=False) as outer:
        block = np.ones(64 * MIB // 8)                    # 64 MiB, then freed
        del block
        with OptimizerProfiler(listen_to_training_events=False) as inner:   # resets VmHWM
            np.ones(MIB // 8).sum()
    assert inner.get_stats()["peak_memory_increase_mb"] < 16
    assert outer.get_stats()["peak_memory_increase_mb"] >= 63
