"""`run(problem, optimizer, ...)`: one training run of a Problem on the JAX engine."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from optiscale_jax.training.batching import batch_plan
from optiscale_jax.training.engine import (
    build_program, canonical_dtype, cast_tree, execute, precision, resolve_optimizer, to_result)
from optiscale_jax.training.objectives import prepare
from optiscale_jax.training.result import RunResult


def check_epochs(epochs: Any) -> int:
    """`epochs` as a positive int; ValueError naming the value otherwise."""
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} is invalid; pass an integer >= 1")
    return int(epochs)


def initial_params(problem: Any, params0: Any, dtype: str) -> np.ndarray:
    """`params0` (checked against the problem's parameter shape) or the problem's zeros."""
    if params0 is None:
        return problem.init_params(dtype=np.dtype(dtype), xp=np)
    params = np.asarray(params0, dtype=dtype)
    if params.shape != tuple(problem.param_shape):
        raise ValueError(f"params0 has shape {params.shape}; this problem's parameters have "
                         f"shape {tuple(problem.param_shape)}")
    if not np.all(np.isfinite(params)):
        raise ValueError("params0 contains NaN or Inf; pass finite initial parameters")
    return params


def run(problem: Any, optimizer: Any, *, epochs: int, batch_size: int | None = None,
        seed: int = 0, dtype: str = "float32", f_star: float | None = None,
        divergence_factor: float = 1e6, params0: Any = None,
        hyperparams: dict[str, Any] | None = None, tol: float = 1e-6,
        grad_tol: float | None = None, kernel: str = "auto", repeats: int = 1) -> RunResult:
    """Trains `problem` with `optimizer` for `epochs` epochs as one compiled program.

    Args:
      problem: an `optiscale_jax.problems.Problem`.
      optimizer: a name from `optiscale_jax.optimizers.OPTIMIZER_NAMES` (with
        `hyperparams`, unspecified ones at their defaults) or an optax GradientTransformation.
      epochs: passes over the data (full batch: one step per epoch).
      batch_size: None = full batch; else mini-batches of this many samples in a seeded
        per-epoch permutation, the last batch holding the n % batch_size remainder.
      seed: selects the mini-batch permutations.
      dtype: "float32" (default) or "float64" (64-bit JAX is enabled inside the call only).
      f_star: the optimum value, for suboptimality, epochs_to and "converged";
        e.g. `problem.optimum().f_star`. None: not tracked.
      divergence_factor: an epoch ending with loss > factor * max(|f(w_0)|, 1e-12), or
        with NaN/Inf, is rejected and the run reported "diverged" with its last finite point.
      params0: initial parameters (default: the problem's zeros).
      tol: relative suboptimality counted as "converged" at the end of the run.
      grad_tol: if given, a final gradient norm <= grad_tol also counts as "converged".
      kernel: "auto", "generic", "fused" or "quadratic" (see `objectives.py`).
      repeats: run the compiled program this many times; run_time_s is the median.
    Returns:
      RunResult; times in seconds, compile time separate from run time.
    """
    epochs = check_epochs(epochs)
    dtype_name = canonical_dtype(dtype)
    plan = batch_plan(problem.n_samples, batch_size)
    name, full_hyper, factory = resolve_optimizer(optimizer, hyperparams)
    with precision(dtype_name):
        prepared = prepare(problem, dtype_name, kernel)
        params = cast_tree(initial_params(problem, params0, dtype_name), dtype_name)
        program = build_program(prepared.objective, lambda hyper: factory(), epochs=epochs,
                                plan=plan, divergence_factor=divergence_factor)
        timed = execute(program, params, prepared.data, jnp.asarray(seed, jnp.uint32), (),
                        epochs=epochs, repeats=repeats)
        result = to_result(timed.output, timed, f_star=f_star, tol=tol, grad_tol=grad_tol,
                           dtype=dtype_name, optimizer=name, hyperparams=full_hyper,
                           batch_size=batch_size, seed=seed)
    return dataclasses.replace(result, setup_time_s=prepared.setup_time_s,
                               kernel=prepared.kernel)
