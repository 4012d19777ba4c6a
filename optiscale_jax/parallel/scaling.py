"""Strong scaling of the parallel strategies: time per epoch on 1, 2, 4, 8 devices.

For a strategy on ``n`` devices with time per epoch ``T_n`` (seconds, device work
blocked on, compile excluded; the median over repeats):

    speed-up   S_n = T_1 / T_n
    efficiency E_n = T_1 / (n T_n)       (1 = perfect linear scaling)

``T_1`` is the same strategy on a 1-device mesh (same program, no communication).
On virtual CPU devices all "devices" share the host's cores, so E_n measures the
overhead of sharding and collectives, not a speed-up; on GPUs / TPUs it is the
usual strong-scaling efficiency.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from optiscale_jax.parallel.mesh import STRATEGIES, default_mesh_shape
from optiscale_jax.parallel.mlp import MLPSpec
from optiscale_jax.parallel.trainer import ParallelTrainer

LINEAR_STRATEGIES = ("data_parallel", "model_parallel", "data_model_parallel")


class ScalingRow(NamedTuple):
    """One strategy on one device count."""

    strategy: str
    n_devices: int
    mesh_shape: tuple[int, int]
    compile_time_s: float
    time_per_epoch_s: float
    speedup: float
    efficiency: float


def scaling_efficiency(time_1: float, time_n: float, n_devices: int) -> float:
    """Strong-scaling efficiency T_1 / (n T_n)."""
    if time_n <= 0 or time_1 <= 0 or n_devices < 1:
        raise ValueError(f"times must be > 0 and n_devices >= 1; got T_1={time_1}, "
                         f"T_n={time_n}, n={n_devices}")
    return time_1 / (n_devices * time_n)


def default_strategies(model: Any) -> tuple[str, ...]:
    """Every strategy the model supports (pipelines need an MLP)."""
    return STRATEGIES if isinstance(model, MLPSpec) else LINEAR_STRATEGIES


def time_strategy(strategy: str, n_devices: int, model: Any, X: np.ndarray, y: np.ndarray, *,
                  optimizer: Any, epochs: int, repeats: int = 1, l2: float = 0.0,
                  n_microbatches: int | None = None) -> tuple[float, float]:
    """Median (compile_time_s, time_per_epoch_s) of ``repeats`` fits with the engine."""
    compile_s, epoch_s = [], []
    for _ in range(repeats):
        trainer = ParallelTrainer(n_devices, strategy, optimizer, model=model, l2=l2,
                                  epochs=epochs, n_microbatches=n_microbatches).fit(X, y)
        compile_s.append(trainer.result_.compile_time_s)
        epoch_s.append(trainer.result_.time_per_epoch_s)
    return statistics.median(compile_s), statistics.median(epoch_s)


def scaling_study(model: Any, X: np.ndarray, y: np.ndarray, *, optimizer: Any,
                  strategies: Sequence[str] | None = None,
                  device_counts: Sequence[int] = (1, 2, 4, 8), epochs: int = 20,
                  repeats: int = 1, l2: float = 0.0,
                  n_microbatches: int | None = None) -> list[ScalingRow]:
    """Time each strategy on each device count; the first count is the baseline T_1.

    ``device_counts`` must start with 1 (the baseline) and be increasing.
    """
    counts = [int(n) for n in device_counts]
    if not counts or counts[0] != 1 or counts != sorted(set(counts)):
        raise ValueError(f"device_counts={tuple(device_counts)} must be increasing and start "
                         "with 1 (the baseline), e.g. (1, 2, 4, 8)")
    rows = []
    for strategy in strategies or default_strategies(model):
        baseline = None
        for n in counts:
            compile_s, epoch_s = time_strategy(strategy, n, model, X, y, optimizer=optimizer,
                                               epochs=epochs, repeats=repeats, l2=l2,
                                               n_microbatches=n_microbatches)
            baseline = epoch_s if baseline is None else baseline
            rows.append(ScalingRow(strategy, n, default_mesh_shape(strategy, n), compile_s,
                                   epoch_s, baseline / epoch_s,
                                   scaling_efficiency(baseline, epoch_s, n)))
    return rows


def format_table(rows: Sequence[ScalingRow]) -> str:
    """A Markdown table of the rows."""
    lines = ["| strategy | devices | mesh (data, model/stage) | compile s | ms / epoch "
             "| speed-up | efficiency |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.strategy} | {r.n_devices} | {r.mesh_shape} | {r.compile_time_s:.2f} "
                     f"| {1e3 * r.time_per_epoch_s:.3f} | {r.speedup:.2f} | {r.efficiency:.2f} |")
    return "\n".join(lines)
