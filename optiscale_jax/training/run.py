"""`run(problem, optimizer, ...)`: one training run of a Problem on the JAX engine;
`compile_run` keeps the compiled program to execute it again."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from optiscale_jax.problems import ProblemLike
from optiscale_jax.training import events
from optiscale_jax.training.batching import batch_plan
from optiscale_jax.training.engine import (
    build_program,
    canonical_dtype,
    cast_tree,
    check_epochs,
    check_eval_every,
    compile_program,
    precision,
    resolve_optimizer,
    time_runs,
    to_result,
)
from optiscale_jax.training.objectives import check_memory, data_layout, prepare
from optiscale_jax.training.result import RunResult


def initial_params(problem: ProblemLike, params0: Any, dtype: str) -> np.ndarray:
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


class CompiledRun:
    """A run of `problem` compiled once; call it to execute (and time) it, as often as needed.

    `compile_time_s` and `setup_time_s` are known after construction; each call returns a
    RunResult whose run_time_s is the median of `repeats` executions. `setup_time_s` is the
    host work before compiling (checks, `prepare`'s layout and transfer, parameters),
    also sent to `training.events` as ("setup", seconds).
    """

    def __init__(self, problem: ProblemLike, optimizer: Any, *, epochs: int,
                 batch_size: int | None = None, seed: int = 0, dtype: str = "float32",
                 f_star: float | None = None, divergence_factor: float = 1e6,
                 params0: Any = None, hyperparams: dict[str, Any] | None = None,
                 tol: float = 1e-6, grad_tol: float | None = None, kernel: str = "auto",
                 eval_every: int = 1) -> None:
        start = time.perf_counter()
        self.epochs = check_epochs(epochs)
        self.eval_every = check_eval_every(eval_every)
        self.dtype = canonical_dtype(dtype)
        plan = batch_plan(problem.n_samples, batch_size)
        self.optimizer, self.hyperparams, factory = resolve_optimizer(optimizer, hyperparams)
        self._summary = dict(f_star=f_star, tol=tol, grad_tol=grad_tol, dtype=self.dtype,
                             optimizer=self.optimizer, hyperparams=self.hyperparams,
                             batch_size=batch_size, seed=seed, epochs=self.epochs,
                             eval_every=self.eval_every)
        with precision(self.dtype):
            check_memory(data_layout(problem, self.dtype, kernel, full_batch=plan.full_batch))
            prepared = prepare(problem, self.dtype, kernel, full_batch=plan.full_batch)
            params = cast_tree(initial_params(problem, params0, self.dtype), self.dtype)
            program = build_program(prepared.objective, lambda hyper: factory(),
                                    epochs=self.epochs, plan=plan,
                                    divergence_factor=divergence_factor,
                                    eval_every=self.eval_every)
            self.setup_time_s = time.perf_counter() - start
            events.emit("setup", self.setup_time_s)
            self._compiled = compile_program(program, params, prepared.data,
                                             jnp.asarray(seed, jnp.uint32), ())
        self.kernel = prepared.kernel
        self.compile_time_s = self._compiled.compile_time_s

    def __call__(self, repeats: int = 1) -> RunResult:
        """Executes the compiled run `repeats` times (blocking); the result of the last."""
        with precision(self.dtype):
            timed = time_runs(self._compiled, epochs=self.epochs, repeats=repeats)
            result = to_result(timed.output, timed, **self._summary)
        return dataclasses.replace(result, setup_time_s=self.setup_time_s, kernel=self.kernel)


def compile_run(problem: ProblemLike, optimizer: Any, **kwargs: Any) -> CompiledRun:
    """`run`'s program compiled but not yet executed (same arguments as `run`, no repeats)."""
    return CompiledRun(problem, optimizer, **kwargs)


def run(problem: ProblemLike, optimizer: Any, *, epochs: int, batch_size: int | None = None,
        seed: int = 0, dtype: str = "float32", f_star: float | None = None,
        divergence_factor: float = 1e6, params0: Any = None,
        hyperparams: dict[str, Any] | None = None, tol: float = 1e-6,
        grad_tol: float | None = None, kernel: str = "auto", repeats: int = 1,
        eval_every: int = 1) -> RunResult:
    """Trains `problem` with `optimizer` for `epochs` epochs as one compiled program.

    Args:
      problem: an `optiscale_jax.problems.Problem`.
      optimizer: a name from `optiscale_jax.optimizers.OPTIMIZER_NAMES` (with
        `hyperparams`, unspecified ones at their defaults), an
        `optiscale_jax.optimizers.OptimizerSpec` (`hyperparams` override its own) or an
        optax GradientTransformation.
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
      kernel: "auto", "generic", "fused", "fused_nonzero" or "quadratic" (see `objectives.py`);
        the one that ran is `RunResult.kernel`.
      repeats: run the compiled program this many times; run_time_s is the median.
      eval_every: record the full objective every `eval_every` epochs and at the end
        (`RunResult.logged_epochs`); in mini-batch mode the other epochs skip its full pass.
    Returns:
      RunResult; times in seconds, compile time separate from run time.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} is invalid; pass an integer >= 1")
    return CompiledRun(problem, optimizer, epochs=epochs, batch_size=batch_size, seed=seed,
                       dtype=dtype, f_star=f_star, divergence_factor=divergence_factor,
                       params0=params0, hyperparams=hyperparams, tol=tol, grad_tol=grad_tol,
                       kernel=kernel, eval_every=eval_every)(repeats)
