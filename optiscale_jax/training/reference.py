"""`run_reference`: the same run as a plain Python loop on a reference backend.

One epoch of the loop does exactly what one epoch of the compiled engine does
(same optimizer code via `get_backend(name).optimizer`, same Problem
loss/gradient via `xp=backend.xp`, same mini-batch order via
`batching.epoch_permutation`, same divergence rule), one array operation at a
time. It returns the same `RunResult` record, so backends are compared on
identical work. `backend="jax"` runs the loop op by op on JAX arrays with
`jax.disable_jit()` (the un-jitted baseline of the JIT speed-up).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Any

import jax
import numpy as np

from optiscale_jax.backends import get_backend
from optiscale_jax.optimizers import default_hyperparams
from optiscale_jax.problems import ProblemLike
from optiscale_jax.training import events
from optiscale_jax.training.batching import batch_plan, batches, epoch_permutation
from optiscale_jax.training.engine import (
    DIVERGENCE_FLOOR,
    canonical_dtype,
    check_epochs,
    check_eval_every,
    precision,
)
from optiscale_jax.training.result import RunResult, logged_epochs, make_result
from optiscale_jax.training.run import initial_params


def _norm(tree: Any) -> float:
    """sqrt(sum of squares of every leaf), on the host."""
    return math.sqrt(sum(float((leaf * leaf).sum()) for leaf in jax.tree.leaves(tree)))


def _finite(tree: Any, backend: Any) -> bool:
    """True when every entry of every leaf is finite."""
    return all(bool(backend.xp.all(backend.xp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


# Over 60 lines: the loop mirrors the engine's epoch step by step, kept in one place so the
# two can be read side by side.
def run_reference(problem: ProblemLike, optimizer_name: str, hyperparams: dict[str, Any] | None = None,
                  *, backend: str = "numpy", epochs: int, batch_size: int | None = None,
                  seed: int = 0, dtype: str = "float32", f_star: float | None = None,
                  divergence_factor: float = 1e6, params0: Any = None, tol: float = 1e-6,
                  grad_tol: float | None = None, eval_every: int = 1) -> RunResult:
    """Trains `problem` in a Python loop on `backend` ("numpy", "cupy" or "jax").

    Arguments mean what they mean for `run`. The clock starts after the data is on the
    device and the initial loss is known, and stops after the last epoch's
    records (synchronised); there is no compile step (compile_time_s = 0).
    Raises BackendUnavailableError for CuPy without a GPU.
    """
    epochs = check_epochs(epochs)
    eval_every = check_eval_every(eval_every)
    logged = set(logged_epochs(epochs, eval_every).tolist())
    dtype_name = canonical_dtype(dtype)
    plan = batch_plan(problem.n_samples, batch_size)
    be = get_backend(backend)
    xp = be.xp
    given = dict(hyperparams or {})
    transform = be.optimizer(optimizer_name, **given)
    eager = jax.disable_jit() if be.name == "jax" else contextlib.nullcontext()
    with precision(dtype_name), eager:
        setup_start = time.perf_counter()
        X = be.asarray(np.asarray(problem.X, dtype_name))
        y_host = np.asarray(problem.y)
        y = be.asarray(y_host if problem.kind == "softmax" else y_host.astype(dtype_name))
        params = be.asarray(initial_params(problem, params0, dtype_name))
        state = transform.init(params)
        loss = problem.loss(params, X, y, xp=xp)
        grad = problem.grad(params, X, y, xp=xp)
        initial_loss, initial_grad_norm = float(loss), _norm(grad)
        threshold = divergence_factor * max(abs(initial_loss), DIVERGENCE_FLOOR)
        be.synchronize(grad)
        setup_time = time.perf_counter() - setup_start

        losses, grad_norms = [], []
        diverged_epoch = None
        start = time.perf_counter()
        new_params, new_state = params, state
        for epoch in range(epochs):
            if plan.full_batch:
                updates, new_state = transform.update(grad, state, params)
                new_params = be.apply_updates(params, updates)
            else:
                order = epoch_permutation(seed, epoch, plan.n_samples)
                for index in batches(order, plan):
                    index = be.asarray(index)
                    x_batch, y_batch = X[index], y[index]
                    batch_grad = problem.grad(new_params, x_batch, y_batch, xp=xp)
                    updates, new_state = transform.update(batch_grad, new_state, new_params)
                    new_params = be.apply_updates(new_params, updates)
                if epoch + 1 not in logged:   # the engine evaluates logged epochs only
                    continue
            new_loss = problem.loss(new_params, X, y, xp=xp)
            new_grad = problem.grad(new_params, X, y, xp=xp)
            value = float(new_loss)
            if not (math.isfinite(value) and value <= threshold and _finite(new_params, be)
                    and _finite(new_grad, be)):
                diverged_epoch = epoch + 1
                remaining = sum(1 for mark in logged if mark > epoch)
                losses += [float(loss)] * remaining
                grad_norms += [_norm(grad)] * remaining
                break
            params, state, loss, grad = new_params, new_state, new_loss, new_grad
            if epoch + 1 in logged:
                losses.append(value)
                grad_norms.append(_norm(grad))
        be.synchronize(params)
        run_time = time.perf_counter() - start
        events.emit("epochs", epochs, run_time)
        result_dtype = np.dtype(dtype_name)
        return_params = be.to_numpy(params)
    full_hyper = {**default_hyperparams(optimizer_name), **given}
    result = make_result(
        params=return_params, initial_loss=initial_loss, initial_grad_norm=initial_grad_norm,
        train_loss=np.asarray(losses).astype(result_dtype),
        grad_norm=np.asarray(grad_norms).astype(result_dtype),
        diverged_epoch=diverged_epoch, f_star=f_star, tol=tol, grad_tol=grad_tol,
        compile_time_s=0.0, run_time_s=run_time, backend=be.name,
        device=be.device_description(), dtype=dtype_name, optimizer=optimizer_name.lower(),
        hyperparams=full_hyper, batch_size=batch_size, seed=seed, epochs=epochs,
        eval_every=eval_every)
    return dataclasses.replace(result, setup_time_s=setup_time, kernel="reference")
