"""Steps-to-target mode: a grid of configurations trained on one shared stream of batches.

One jit-compiled program: an outer ``lax.while_loop`` over evaluation points (it stops as soon
as one configuration has crossed the target, or all have diverged), an inner ``fori_loop`` over the
optimizer steps between two evaluations. Per step the batch is drawn ONCE (e.g. from the step's own
counter-based key ``fold_in(key, t)``) and every configuration (``jax.vmap`` over the
hyperparameter grid) takes its step on it, so the grid sees common random numbers and the
random-number cost is paid once per step, not once per configuration.

Evaluation points are geometric: ``t_k = round(ratio^k)`` (deduplicated, every step up to
``1 / (ratio - 1)``), so the steps to target are known to a relative resolution of
``ratio - 1`` at every scale, which is what a log-log steps-vs-batch plot needs. At every
evaluation point the exact objective (closed form or the full data set) is recorded; the
steps to target are the first evaluation point with ``objective <= target``. Since every
configuration shares the schedule, the first configuration to cross is the best of the grid, and
the program stops right there: the other configurations' steps are then -1 ("not reached before
the best"); several crossing at one point are all recorded (rank them by their objective).

A configuration is frozen (``jnp.where``) once it has crossed the target or diverged (a
non-finite objective or one above ``divergence_factor * max(|f(w_0)|, 1e-12)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["StepsToTargetResult", "evaluation_schedule", "steps_to_target"]

Params = Any
Batch = Any


class StepsToTargetResult(NamedTuple):
    """Per configuration (leading axis G): first step at target (-1: not reached), curves, flags.

    ``noise`` (G, E, 2), when measured: per evaluation point, the batch estimates of
    ``tr(Sigma)`` (per-example gradient covariance) and ``|G|^2`` (see :func:`noise_estimates`).
    """

    steps: np.ndarray
    eval_steps: np.ndarray
    objective: np.ndarray
    diverged: np.ndarray
    noise: np.ndarray | None
    steps_run: int
    compile_time_s: float
    run_time_s: float


def evaluation_schedule(max_steps: int, ratio: float = 1.02) -> np.ndarray:
    """``0`` and the distinct ``round(ratio^k)`` up to ``max_steps`` (always ending at ``max_steps``)."""
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not (1.0 < ratio <= 4.0):
        raise ValueError(f"evaluation ratio must be in (1, 4], got {ratio!r}")
    count = int(np.ceil(np.log(max_steps) / np.log(ratio))) + 2
    points = np.unique(np.round(ratio ** np.arange(count)).astype(np.int64))
    points = points[points < max_steps]
    return np.concatenate([[0], points, [int(max_steps)]]).astype(np.int64)


def noise_estimates(
    per_example_sq_norm_mean: jax.Array, batch_grad_sq_norm: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array]:
    """Unbiased ``(tr Sigma, |G|^2)`` from one batch of ``m`` per-example gradients g_i.

    With ``S = mean_i |g_i|^2`` and ``|g_B|^2`` the squared norm of the batch mean:
    ``E S = tr Sigma + |G|^2`` and ``E |g_B|^2 = tr Sigma / m + |G|^2``, hence
    ``tr Sigma = m (S - |g_B|^2) / (m - 1)`` and ``|G|^2 = (m |g_B|^2 - S) / (m - 1)``.
    """
    m = batch_size
    return (
        m * (per_example_sq_norm_mean - batch_grad_sq_norm) / (m - 1),
        (m * batch_grad_sq_norm - per_example_sq_norm_mean) / (m - 1),
    )


def _stack_hyper(hyper: Mapping[str, Any]) -> tuple[dict[str, jax.Array], int]:
    arrays = {k: jnp.atleast_1d(jnp.asarray(v, jnp.float32)) for k, v in hyper.items()}
    sizes = {k: int(v.shape[0]) for k, v in arrays.items()}
    if not arrays or len(set(sizes.values())) != 1:
        raise ValueError(f"hyperparameter grid must be non-empty arrays of one length, got sizes {sizes}")
    return arrays, next(iter(sizes.values()))


def steps_to_target(
    *,
    params0: Params,
    sample: Callable[[jax.Array, Any, Any], tuple[Batch, Any]],
    grad: Callable[[Params, Batch, Any], Params],
    objective: Callable[[Params, Any], jax.Array],
    make_transform: Callable[..., optax.GradientTransformation],
    hyper: Mapping[str, Any],
    target: float,
    max_steps: int,
    sample_state: Any = (),
    data: Any = (),
    eval_ratio: float = 1.02,
    divergence_factor: float = 1e6,
    measure: Callable[[Params, jax.Array, Any], tuple[jax.Array, jax.Array]] | None = None,
    measure_every: int = 8,
) -> StepsToTargetResult:
    """Trains every configuration of ``hyper`` (name -> (G,) values) until it reaches ``target``.

    Args:
      params0: start (a pytree, shared by all configurations).
      sample: ``(t, sample_state, data) -> (batch, sample_state)``: the batch of step t (e.g. drawn
        from ``fold_in(key, t)``, or rows of the epoch's permutation carried in ``sample_state``).
      grad: ``(params, batch, data) -> gradient`` of the mini-batch loss.
      objective: ``(params, data) -> scalar``, the exact objective whose crossing of ``target`` counts.
      data: arrays the functions read (e.g. a data set), passed to the program as an argument:
        arrays captured by a closure become constants of the program, which XLA then spends
        a long time constant-folding (MNIST-sized: tens of seconds).
      make_transform: ``(**hyperparameters) -> GradientTransformation`` (values may be traced).
      measure: optional ``(params, t, data) -> (tr Sigma, |G|^2)`` recorded at t = 0 and at every
        ``measure_every``-th evaluation point (NaN elsewhere).
    """
    # Over 60 lines on purpose: the loop bodies below are closures over the grid, the schedule and
    # the caller's functions; split out, each would need a dozen arguments threaded through it.
    arrays, size = _stack_hyper(hyper)
    schedule = evaluation_schedule(max_steps, eval_ratio)
    n_evals = schedule.size

    def lane_init(h):
        return make_transform(**h).init(params0)

    def lane_step(params, state, h, batch):
        updates, state = make_transform(**h).update(grad(params, batch, data), state, params)
        return optax.apply_updates(params, updates), state

    def program(arrays, sample_state, data):
        params = jax.tree.map(lambda x: jnp.broadcast_to(x, (size,) + jnp.shape(x)), params0)
        state = jax.vmap(lane_init)(arrays)
        f0 = objective(params0, data)
        limit = divergence_factor * jnp.maximum(jnp.abs(f0), 1e-12)
        curve = jnp.full((size, n_evals), jnp.nan, f0.dtype).at[:, 0].set(f0)
        noise = jnp.full((size, n_evals, 2), jnp.nan, f0.dtype)
        if measure is not None:
            noise = noise.at[:, 0].set(jnp.stack(measure(params0, jnp.asarray(0), data)))
        done0 = jnp.broadcast_to(f0 <= target, (size,))
        first = jnp.where(done0, 0, -1)
        sched = jnp.asarray(schedule)

        def cond(c):
            k, _, _, _, done, diverged, *_ = c
            return (k < n_evals - 1) & ~jnp.any(done) & ~jnp.all(diverged)

        def body(c):
            k, params, state, stream, done, diverged, first, curve, noise = c
            frozen = done | diverged

            def one_step(t, ps):
                batch, state = sample(t, ps[2], data)
                new_p, new_s = jax.vmap(lane_step, in_axes=(0, 0, 0, None))(ps[0], ps[1], arrays, batch)
                keep = lambda old, new: jnp.where(  # noqa: E731
                    frozen.reshape((-1,) + (1,) * (new.ndim - 1)), old, new
                )
                return jax.tree.map(keep, ps[0], new_p), jax.tree.map(keep, ps[1], new_s), state

            carry = (params, state, stream)
            params, state, stream = jax.lax.fori_loop(sched[k], sched[k + 1], one_step, carry)
            value = jax.vmap(objective, in_axes=(0, None))(params, data)
            bad = ~jnp.isfinite(value) | (value > limit)
            newly_diverged = ~frozen & bad
            crossed = ~frozen & ~bad & (value <= target)
            first = jnp.where(crossed, sched[k + 1], first)
            curve = curve.at[:, k + 1].set(jnp.where(frozen, jnp.nan, value))
            if measure is not None:

                def record(noise):
                    stats = jax.vmap(measure, in_axes=(0, None, None))(params, sched[k + 1], data)
                    return noise.at[:, k + 1].set(jnp.where(frozen[:, None], jnp.nan, jnp.stack(stats, -1)))

                noise = jax.lax.cond((k + 1) % measure_every == 0, record, lambda n: n, noise)
            return (
                k + 1,
                params,
                state,
                stream,
                done | crossed,
                diverged | newly_diverged,
                first,
                curve,
                noise,
            )

        init = (
            jnp.asarray(0),
            params,
            state,
            sample_state,
            done0,
            jnp.zeros(size, bool),
            first,
            curve,
            noise,
        )
        k, _, _, _, _, diverged, first, curve, noise = jax.lax.while_loop(cond, body, init)
        return first, curve, diverged, noise, k

    started = time.perf_counter()
    compiled = jax.jit(program).lower(arrays, sample_state, data).compile()
    compile_time = time.perf_counter() - started
    started = time.perf_counter()
    first, curve, diverged, noise, k = jax.block_until_ready(compiled(arrays, sample_state, data))
    run_time = time.perf_counter() - started
    return StepsToTargetResult(
        steps=np.asarray(first, np.int64),
        eval_steps=schedule,
        objective=np.asarray(curve, np.float64),
        diverged=np.asarray(diverged),
        noise=None if measure is None else np.asarray(noise, np.float64),
        steps_run=int(schedule[int(k)]),
        compile_time_s=compile_time,
        run_time_s=run_time,
    )
