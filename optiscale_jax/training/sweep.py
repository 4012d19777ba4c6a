"""`sweep`: a grid of learning rates x seeds as one vmapped, jit-compiled program.

Every configuration is one lane of `jax.vmap` over the engine's program, with
the learning rate traced (no recompilation per value). Lanes are independent:
a diverging configuration freezes its own parameters (see `engine.py`) and
leaves the other lanes' arithmetic untouched.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optiscale_jax.problems import ProblemLike
from optiscale_jax.training import events
from optiscale_jax.training.batching import batch_plan
from optiscale_jax.training.engine import (
    Timed,
    build_program,
    canonical_dtype,
    cast_tree,
    check_epochs,
    check_eval_every,
    device_description,
    execute,
    learning_rate_factory,
    precision,
    resolve_optimizer,
    to_result,
)
from optiscale_jax.training.objectives import check_memory, data_layout, prepare
from optiscale_jax.training.result import RunResult, jsonable
from optiscale_jax.training.run import initial_params


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """All configurations of a sweep, in grid order (learning-rate major, then seed).

    Attributes:
      learning_rates, seeds: the configuration of each run, shape (G,).
      runs: one RunResult per configuration; their compile_time_s and run_time_s are the
        whole sweep's (one shared program), time_per_epoch_s the sweep's per epoch.
      train_loss, grad_norm: (G, epochs) curves; suboptimality likewise or None.
      best_index: index of the lowest final loss among non-diverged runs (None if all diverged).
      compile_time_s, run_time_s, time_per_epoch_s: of the one vmapped program, seconds.
    """

    learning_rates: np.ndarray
    seeds: np.ndarray
    runs: tuple[RunResult, ...]
    best_index: int | None
    compile_time_s: float
    run_time_s: float
    time_per_epoch_s: float
    optimizer: str
    epochs: int

    @property
    def train_loss(self) -> np.ndarray:
        return np.stack([r.train_loss for r in self.runs])

    @property
    def grad_norm(self) -> np.ndarray:
        return np.stack([r.grad_norm for r in self.runs])

    @property
    def suboptimality(self) -> np.ndarray | None:
        if self.runs[0].suboptimality is None:
            return None
        return np.stack([r.suboptimality for r in self.runs])

    @property
    def statuses(self) -> list[str]:
        return [r.status for r in self.runs]

    @property
    def best(self) -> RunResult | None:
        """The best run (lowest final loss among non-diverged), or None."""
        return None if self.best_index is None else self.runs[self.best_index]

    @property
    def best_config(self) -> dict[str, Any] | None:
        """{"learning_rate", "seed", "final_loss"} of the best run, or None."""
        if self.best_index is None:
            return None
        return {"learning_rate": float(self.learning_rates[self.best_index]),
                "seed": int(self.seeds[self.best_index]),
                "final_loss": self.runs[self.best_index].final_loss}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary with every run."""
        return {"learning_rates": jsonable(self.learning_rates), "seeds": jsonable(self.seeds),
                "best_index": self.best_index, "best_config": jsonable(self.best_config),
                "compile_time_s": self.compile_time_s, "run_time_s": self.run_time_s,
                "time_per_epoch_s": self.time_per_epoch_s, "optimizer": self.optimizer,
                "epochs": self.epochs, "runs": [r.to_dict() for r in self.runs]}


def _check_grid(learning_rates: Any, seeds: Any) -> tuple[np.ndarray, np.ndarray]:
    rates = np.asarray(learning_rates, dtype=np.float64).reshape(-1)
    if rates.size == 0 or not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError(f"learning_rates={learning_rates!r} is invalid; pass a non-empty "
                         "sequence of finite numbers >= 0")
    seed_array = np.asarray(seeds).reshape(-1)
    if seed_array.size == 0 or not np.issubdtype(seed_array.dtype, np.integer) or \
            np.any(seed_array < 0):
        raise ValueError(f"seeds={seeds!r} is invalid; pass a non-empty sequence of "
                         "integers >= 0")
    grid_rates = np.repeat(rates, seed_array.size)
    grid_seeds = np.tile(seed_array.astype(np.int64), rates.size)
    return grid_rates, grid_seeds


def best_index(final_losses: np.ndarray, diverged: np.ndarray) -> int | None:
    """Index of the lowest final loss among non-diverged runs (first on ties), or None."""
    candidates = np.where(diverged | ~np.isfinite(final_losses), np.inf, final_losses)
    if not np.any(np.isfinite(candidates)):
        return None
    return int(np.argmin(candidates))


def sweep(problem: ProblemLike, optimizer_name: str, *, learning_rates: Any, seeds: Any = (0,),
          epochs: int, batch_size: int | None = None, dtype: str = "float32",
          f_star: float | None = None, divergence_factor: float = 1e6, params0: Any = None,
          hyperparams: dict[str, Any] | None = None, tol: float = 1e-6,
          grad_tol: float | None = None, kernel: str = "auto", repeats: int = 1,
          eval_every: int = 1) -> SweepResult:
    """Runs every (learning rate, seed) pair as one vmapped program.

    Args:
      problem: a Problem. optimizer_name: an optimizer name, or an
        `optiscale_jax.optimizers.OptimizerSpec` whose factory takes `learning_rate`
        (`spec.build(learning_rate=rate)` with the rate traced: still one program).
      learning_rates: the rates to try; seeds: the mini-batch seeds to try (grid product).
      hyperparams: the other hyperparameters, fixed across the grid (no learning_rate).
      Others: as `run`.
    Returns:
      SweepResult with every curve, per-run status and the best configuration.
    """
    start = time.perf_counter()
    epochs = check_epochs(epochs)
    eval_every = check_eval_every(eval_every)
    if hyperparams and "learning_rate" in hyperparams:
        raise ValueError("pass learning rates with learning_rates=..., not in hyperparams")
    rates, seed_grid = _check_grid(learning_rates, seeds)
    dtype_name = canonical_dtype(dtype)
    plan = batch_plan(problem.n_samples, batch_size)
    name, full_hyper, factory = resolve_optimizer(optimizer_name, hyperparams)
    make_transform = learning_rate_factory(optimizer_name, factory)
    with precision(dtype_name):
        check_memory(data_layout(problem, dtype_name, kernel, full_batch=plan.full_batch))
        prepared = prepare(problem, dtype_name, kernel, full_batch=plan.full_batch)
        params = cast_tree(initial_params(problem, params0, dtype_name), dtype_name)
        program = build_program(prepared.objective,
                                make_transform, epochs=epochs,
                                plan=plan, divergence_factor=divergence_factor,
                                eval_every=eval_every)
        vmapped = jax.vmap(program, in_axes=(None, None, 0, 0))
        seed_array, rate_array = jnp.asarray(seed_grid, jnp.uint32), jnp.asarray(rates, dtype_name)
        setup_time_s = time.perf_counter() - start
        events.emit("setup", setup_time_s)
        timed = execute(vmapped, params, prepared.data, seed_array, rate_array,
                        epochs=epochs, repeats=repeats)
        device = device_description(timed.output)
        outputs = jax.tree.map(np.asarray, timed.output)
    runs = []
    for i, (rate, seed) in enumerate(zip(rates, seed_grid)):
        lane = jax.tree.map(lambda leaf, i=i: leaf[i], outputs)
        result = to_result(lane, Timed(None, timed.compile_time_s, timed.run_time_s),
                           f_star=f_star, tol=tol, grad_tol=grad_tol, dtype=dtype_name,
                           optimizer=name, hyperparams={**full_hyper, "learning_rate": float(rate)},
                           batch_size=batch_size, seed=int(seed), device=device, epochs=epochs,
                           eval_every=eval_every)
        runs.append(dataclasses.replace(result, setup_time_s=setup_time_s,
                                        kernel=prepared.kernel))
    final = np.array([r.final_loss for r in runs])
    diverged = np.array([r.status == "diverged" for r in runs])
    return SweepResult(learning_rates=rates, seeds=seed_grid, runs=tuple(runs),
                       best_index=best_index(final, diverged),
                       compile_time_s=timed.compile_time_s, run_time_s=timed.run_time_s,
                       time_per_epoch_s=timed.run_time_s / epochs, optimizer=name, epochs=epochs)
