"""Strong scaling of the parallel strategies: time, memory and communication per step.

For each strategy on each device count, one row with

- time per full-batch step ``T_n`` (seconds, device work blocked on, compile
  excluded and reported apart; the median over repeats);
- bytes per device of parameters and optimizer state (measured from the trained
  arrays' shards) and of gradients (the estimate: gradients come back sharded
  like the parameters, which ``tests/test_sharded.py`` checks by measurement);
- communication per step and device, read from the compiled program's HLO
  (``hlo_comm.collective_volume``: ring traffic of each all-gather,
  reduce-scatter, all-reduce and collective-permute, loops counted by their trip
  counts), divided by the program's ``epochs + 1`` full gradient evaluations;

and, with ``T_1`` the same strategy on one device:

    speed-up   S_n = T_1 / T_n
    efficiency E_n = T_1 / (n T_n)       (1 = perfect linear scaling)

``T_1`` is the same strategy on a 1-device mesh (same program, no communication).
On virtual CPU devices all "devices" share the host's cores, so E_n measures the
overhead of sharding and collectives, not a speed-up; on GPUs / TPUs it is the
usual strong-scaling efficiency.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from optiscale_jax.parallel.hlo_comm import collective_volume
from optiscale_jax.parallel.memory import estimate_parallel_memory, measure
from optiscale_jax.parallel.mesh import STRATEGIES
from optiscale_jax.parallel.mlp import MLPSpec
from optiscale_jax.parallel.trainer import ParallelTrainer

LINEAR_STRATEGIES = ("data_parallel", "fsdp", "model_parallel", "data_model_parallel",
                     "fsdp_model_parallel")


class ScalingRow(NamedTuple):
    """One strategy on one device count."""

    strategy: str
    n_devices: int
    mesh_shape: tuple[int, int]
    compile_time_s: float
    time_per_epoch_s: float
    speedup: float
    efficiency: float
    params_bytes: int = 0          # per device, measured
    opt_state_bytes: int = 0       # per device, measured
    grads_bytes: int = 0           # per device, estimated (sharded like the parameters)
    all_gather_bytes: float = 0.0  # per device and step, from the HLO
    reduce_scatter_bytes: float = 0.0
    all_reduce_bytes: float = 0.0
    permute_bytes: float = 0.0

    @property
    def time_per_step_s(self) -> float:
        """Full batch: one optimizer step per epoch."""
        return self.time_per_epoch_s

    @property
    def comm_bytes(self) -> float:
        return self.all_gather_bytes + self.reduce_scatter_bytes + self.all_reduce_bytes + self.permute_bytes


def scaling_efficiency(time_1: float, time_n: float, n_devices: int) -> float:
    """Strong-scaling efficiency T_1 / (n T_n)."""
    if time_n <= 0 or time_1 <= 0 or n_devices < 1:
        raise ValueError(f"times must be > 0 and n_devices >= 1; got T_1={time_1}, "
                         f"T_n={time_n}, n={n_devices}")
    return time_1 / (n_devices * time_n)


def default_strategies(model: Any) -> tuple[str, ...]:
    """Every strategy the model supports (pipelines need an MLP)."""
    return STRATEGIES if isinstance(model, MLPSpec) else LINEAR_STRATEGIES


class Measured(NamedTuple):
    """One strategy on one device count (medians over repeats; bytes from the last run)."""

    compile_time_s: float
    time_per_epoch_s: float
    mesh_shape: tuple[int, int]
    params_bytes: int
    opt_state_bytes: int
    grads_bytes: int
    comm: Any  # hlo_comm.CommVolume per step


def measure_point(strategy: str, n_devices: int, model: Any, X: np.ndarray, y: np.ndarray, *,
                  optimizer: Any, epochs: int, repeats: int = 1, l2: float = 0.0,
                  n_microbatches: int | None = None) -> Measured:
    """Train ``repeats`` times; time, bytes per device and communication per step."""
    compile_s, epoch_s = [], []
    for _ in range(repeats):
        trainer = ParallelTrainer(n_devices, strategy, optimizer, model=model, l2=l2,
                                  epochs=epochs, n_microbatches=n_microbatches).fit(X, y)
        compile_s.append(trainer.result_.compile_time_s)
        epoch_s.append(trainer.result_.time_per_epoch_s)
    memory = measure(trainer)
    mesh_shape = tuple(int(v) for v in trainer.layout_.mesh.shape.values())
    estimate = estimate_parallel_memory(trainer.fitted_model_, optimizer, strategy, mesh_shape)
    comm = collective_volume(trainer.compiled_.compiled.as_text()).scaled(1.0 / (epochs + 1))
    return Measured(statistics.median(compile_s), statistics.median(epoch_s), mesh_shape,
                    memory.max_per_device("params"), memory.max_per_device("opt_state"),
                    estimate.grads, comm)


def time_strategy(strategy: str, n_devices: int, model: Any, X: np.ndarray, y: np.ndarray, *,
                  optimizer: Any, epochs: int, repeats: int = 1, l2: float = 0.0,
                  n_microbatches: int | None = None) -> tuple[float, float]:
    """Median (compile_time_s, time_per_epoch_s) of ``repeats`` fits."""
    point = measure_point(strategy, n_devices, model, X, y, optimizer=optimizer, epochs=epochs,
                          repeats=repeats, l2=l2, n_microbatches=n_microbatches)
    return point.compile_time_s, point.time_per_epoch_s


def scaling_study(model: Any, X: np.ndarray, y: np.ndarray, *, optimizer: Any,
                  strategies: Sequence[str] | None = None,
                  device_counts: Sequence[int] = (1, 2, 4, 8), epochs: int = 20,
                  repeats: int = 1, l2: float = 0.0,
                  n_microbatches: int | None = None,
                  on_row: Callable[[ScalingRow], None] | None = None) -> list[ScalingRow]:
    """Measure each strategy on each device count; the first count is the baseline T_1.

    ``device_counts`` must start with 1 (the baseline) and be increasing. ``on_row`` is
    called after each point (progress lines).
    """
    counts = [int(n) for n in device_counts]
    if not counts or counts[0] != 1 or counts != sorted(set(counts)):
        raise ValueError(f"device_counts={tuple(device_counts)} must be increasing and start "
                         "with 1 (the baseline), e.g. (1, 2, 4, 8)")
    rows = []
    for strategy in strategies or default_strategies(model):
        baseline = None
        for n in counts:
            p = measure_point(strategy, n, model, X, y, optimizer=optimizer, epochs=epochs,
                              repeats=repeats, l2=l2, n_microbatches=n_microbatches)
            baseline = p.time_per_epoch_s if baseline is None else baseline
            comm = p.comm.bytes_by_kind
            rows.append(ScalingRow(
                strategy, n, p.mesh_shape, p.compile_time_s, p.time_per_epoch_s,
                baseline / p.time_per_epoch_s, scaling_efficiency(baseline, p.time_per_epoch_s, n),
                p.params_bytes, p.opt_state_bytes, p.grads_bytes, comm["all-gather"],
                comm["reduce-scatter"], comm["all-reduce"], comm["collective-permute"] + comm["all-to-all"]))
            if on_row is not None:
                on_row(rows[-1])
    return rows


def format_table(rows: Sequence[ScalingRow]) -> str:
    """A Markdown table of the rows (bytes per device; communication per step and device)."""
    lines = ["| strategy | devices | mesh (data, model/stage) | compile s | ms / step | speed-up "
             "| efficiency | params B | opt state B | grads B | all-gather B | reduce-scatter B "
             "| all-reduce B | permute B |", "|---" * 14 + "|"]
    for r in rows:
        lines.append(f"| {r.strategy} | {r.n_devices} | {r.mesh_shape} | {r.compile_time_s:.2f} "
                     f"| {1e3 * r.time_per_epoch_s:.3f} | {r.speedup:.2f} | {r.efficiency:.2f} "
                     f"| {r.params_bytes} | {r.opt_state_bytes} | {r.grads_bytes} "
                     f"| {r.all_gather_bytes:.0f} | {r.reduce_scatter_bytes:.0f} "
                     f"| {r.all_reduce_bytes:.0f} | {r.permute_bytes:.0f} |")
    return "\n".join(lines)
