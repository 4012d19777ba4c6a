"""Cost and memory of a streaming problem at large d (command: ``optiscale_jax.cli.streaming_memory``).

Runs ``steps`` SGD steps of a streaming problem (batch drawn inside the compiled program from
``fold_in(key, t)``) as one jitted ``fori_loop``, and, as the floor, the same loop doing only the
random-number generation of those batches. Prints one JSON line: seconds per step of both
(median of ``repeats`` runs, compile excluded), their ratio, the final population loss, and the
process's peak resident memory (Linux ``VmHWM``) in GiB. Run it in a fresh process: the peak
covers the whole process (imports and compilation included).

    python -m optiscale_jax.cli.streaming_memory --dim=1000000 --batch_size=4 --steps=200
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp

from optiscale_jax import profiling
from optiscale_jax.studies.streaming import make_streaming

__all__ = ["measure", "peak_resident_gib"]


def peak_resident_gib() -> float:
    """The process's peak resident set in GiB (``VmHWM``; ``ru_maxrss`` where /proc has none)."""
    return profiling.host_peak().peak_bytes / 2 ** 30


def _timed(compiled, *args, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def measure(dim: int, batch_size: int, steps: int, *, kind: str = "least_squares", kappa: float = 1e6,
            learning_rate: float = 0.05, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """Seconds per SGD step and per batch generation (the floor), final loss, peak memory."""
    problem = make_streaming(kind, dim, spectrum_kind="power", kappa=kappa, seed=seed)
    key = jax.random.key(seed)
    w0 = jnp.zeros(dim, jnp.float32)

    def train(w):
        def step(t, w):
            batch = problem.sample(jax.random.fold_in(key, t), batch_size)
            return w - learning_rate * problem.batch_gradient(w, batch)
        w = jax.lax.fori_loop(0, steps, step, w)
        return w, problem.population_loss(w)

    def generate(acc):
        def step(t, acc):
            return acc + jnp.sum(problem.sample(jax.random.fold_in(key, t), batch_size).z[0, :1])
        return jax.lax.fori_loop(0, steps, step, acc)

    started = time.perf_counter()
    train_c = jax.jit(train).lower(w0).compile()
    floor_c = jax.jit(generate).lower(jnp.float32(0)).compile()
    compile_s = time.perf_counter() - started
    train_s, (_, loss) = _timed(train_c, w0, repeats=repeats)
    floor_s, _ = _timed(floor_c, jnp.float32(0), repeats=repeats)
    return {"dim": dim, "batch_size": batch_size, "steps": steps, "kind": kind,
            "step_s": train_s / steps, "rng_floor_step_s": floor_s / steps,
            "step_over_floor": train_s / floor_s, "compile_s": compile_s,
            "initial_loss": float(problem.population_loss(w0)), "final_loss": float(loss),
            "f_star": problem.f_star(), "peak_resident_gib": peak_resident_gib()}
