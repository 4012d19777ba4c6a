"""The sharded training loop: epochs as one jitted ``lax.scan`` whose carry stays sharded.

The state between steps is a pytree of sharded ``jax.Array``s: the parameters in
their stored layout (``sharding.py``) and the optimizer state, built by
``jax.jit(transform.init, out_shardings=...)`` with every parameter-shaped
sub-tree (optax's moments, traces, accumulators) sharded like the parameters.
The compiled program takes and returns them with those shardings (``out_shardings``,
inputs donated), so nothing is gathered between steps or epochs. (The engine of
``optiscale_jax.training`` carries one optimizer state inside its program and hands
back only host parameters, so it cannot keep a sharded state between calls,
checkpoint it or report its bytes per device; this loop runs the same epoch.)

One epoch follows ``optiscale_jax.training``'s engine step for step, so runs are
comparable with single-device ones:

- full batch: one update with the gradient of the full objective, carried from the
  previous epoch's evaluation;
- mini-batches: epoch ``e`` visits the rows in the order
  ``permutation(fold_in(PRNGKey(seed), e), n)`` (``training.batching``), in
  ``n // batch_size`` full batches and a final smaller one;
- after each epoch the full objective and its gradient norm are recorded; an epoch
  whose loss is not finite or exceeds ``divergence_factor x max(|f(w_0)|, 1e-12)``
  marks the run diverged and no further epoch runs (the parameters are those at the
  end of that epoch; the engine instead keeps the last accepted ones).

A run can be cut into segments of epochs (for checkpoints): a segment starts at
epoch ``epoch0`` and recomputes the carried gradient from the parameters, which is
the same gradient the uninterrupted run carries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optiscale_jax.parallel.sharding import state_shardings
from optiscale_jax.training.batching import BatchPlan, permutation_in_program, seed_key
from optiscale_jax.training.engine import DIVERGENCE_FLOOR


class TrainState(NamedTuple):
    """What a run carries between epochs (and what a checkpoint holds).

    Attributes:
      params: stored parameters (sharded ``jax.Array`` leaves).
      opt_state: optimizer state, parameter-shaped parts sharded like the parameters.
      epoch: epochs done (host int).
      diverged_epoch: the first rejected epoch, 0 when none (host int).
    """

    params: Any
    opt_state: Any
    epoch: int = 0
    diverged_epoch: int = 0


def opt_state_shardings(transform: optax.GradientTransformation, param_shapes: Any,
                        param_shardings: Any, mesh: Any) -> Any:
    """Shardings of ``transform``'s state for parameters with ``param_shardings``."""
    shapes = jax.eval_shape(transform.init, param_shapes)
    return state_shardings(shapes, param_shapes, param_shardings, NamedSharding(mesh, P()))


def init_opt_state(transform: optax.GradientTransformation, params: Any, param_shardings: Any,
                   mesh: Any) -> Any:
    """``transform.init(params)`` built on the devices, already sharded like the parameters."""
    shardings = opt_state_shardings(transform, params, param_shardings, mesh)
    return jax.jit(transform.init, out_shardings=shardings)(params)


def _global_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


def build_segment(loss: Callable, transform: optax.GradientTransformation, plan: BatchPlan,
                  n_epochs: int, divergence_factor: float) -> Callable:
    """``segment(params, opt_state, X, y, seed, epoch0, diverged0, threshold)`` ->
    ``(params, opt_state, diverged, losses, gnorms)`` over ``n_epochs`` epochs.

    One scan of ``n_epochs + 1`` iterations, each evaluating the full objective and its
    gradient once (so the program holds a single full-data gradient): iteration ``k``
    records ``f(w_{epoch0+k})`` and its gradient norm, then runs epoch ``epoch0 + k``
    (full batch: with that gradient) unless it is the last iteration or the run has
    diverged. ``losses[0]`` is the segment's start, ``losses[k]`` the end of its k-th
    epoch. ``threshold`` is the divergence bound (negative: from this segment's start).
    """
    value_and_grad = jax.value_and_grad(loss)

    def update(params, opt_state, grad):
        updates, opt_state = transform.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def segment(params, opt_state, X, y, seed, epoch0, diverged0, threshold):
        key = seed_key(seed)

        def batch_step(carry, index):
            params, opt_state = carry
            _, grad = value_and_grad(params, jnp.take(X, index, axis=0), jnp.take(y, index, axis=0))
            return update(params, opt_state, grad), None

        def run_epoch(params, opt_state, grad, epoch):
            if plan.full_batch:
                return update(params, opt_state, grad)
            order = permutation_in_program(key, epoch, plan.n_samples)
            cut = plan.n_full * plan.batch_size
            (params, opt_state), _ = jax.lax.scan(
                batch_step, (params, opt_state), order[:cut].reshape(plan.n_full, plan.batch_size))
            if plan.remainder:
                (params, opt_state), _ = batch_step((params, opt_state), order[cut:])
            return params, opt_state

        def body(carry, k):
            params, opt_state, diverged, threshold = carry
            value, grad = value_and_grad(params, X, y)
            threshold = jnp.where(threshold < 0, divergence_factor * jnp.maximum(
                jnp.abs(value), DIVERGENCE_FLOOR), threshold)
            epoch = epoch0 + k  # the epoch this iteration runs; k epochs of the segment are done
            bad = (k > 0) & (~jnp.isfinite(value) | (value > threshold))
            diverged = jnp.where(bad & (diverged == 0), epoch, diverged)
            params, opt_state = jax.lax.cond(
                (k == n_epochs) | (diverged > 0), lambda: (params, opt_state),
                lambda: run_epoch(params, opt_state, grad, epoch))
            return (params, opt_state, diverged, threshold), (value, _global_norm(grad))

        (params, opt_state, diverged, _), (losses, gnorms) = jax.lax.scan(
            body, (params, opt_state, diverged0, threshold), jnp.arange(n_epochs + 1, dtype=jnp.int32))
        return params, opt_state, diverged, losses, gnorms

    return segment


class CompiledSegment(NamedTuple):
    """A compiled segment and what compiling it took."""

    run: Callable
    compile_time_s: float
    compiled: Any  # jax.stages.Compiled (memory_analysis, as_text)


def compile_segment(segment: Callable, state: TrainState, X: jax.Array, y: jax.Array,
                    param_shardings: Any, state_shardings_: Any, mesh: Any) -> CompiledSegment:
    """AOT-compile ``segment`` for these inputs, with the carry's shardings pinned."""
    rep = NamedSharding(mesh, P())
    jitted = jax.jit(segment, out_shardings=(param_shardings, state_shardings_, rep, rep, rep),
                     donate_argnums=(0, 1))
    start = time.perf_counter()
    compiled = jitted.lower(state.params, state.opt_state, X, y, *_scalars(0, 0, 0, -1.0)).compile()
    return CompiledSegment(compiled, time.perf_counter() - start, compiled)


def _scalars(seed: int, epoch0: int, diverged: int, threshold: float) -> tuple:
    return (jnp.asarray(seed, jnp.uint32), jnp.asarray(epoch0, jnp.int32),
            jnp.asarray(diverged, jnp.int32), jnp.asarray(threshold, jnp.float32))


def run_segment(compiled: CompiledSegment, state: TrainState, X: jax.Array, y: jax.Array, *,
                seed: int, threshold: float) -> tuple[TrainState, Any, float]:
    """Run one compiled segment; returns (new state, device outputs, seconds, blocked)."""
    start = time.perf_counter()
    params, opt_state, diverged, *record = compiled.run(
        state.params, state.opt_state, X, y,
        *_scalars(seed, state.epoch, state.diverged_epoch, threshold))
    jax.block_until_ready((params, opt_state, record))
    seconds = time.perf_counter() - start
    n_epochs = int(record[0].shape[0]) - 1
    return (TrainState(params, opt_state, state.epoch + n_epochs, int(diverged)),
            record, seconds)
