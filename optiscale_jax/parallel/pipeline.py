"""GPipe pipeline parallelism for the MLP over a ``(data, stage)`` mesh.

The ``n_blocks`` width -> width layers of the MLP are split into ``S`` stages
of ``n_blocks / S`` consecutive layers, stage ``s`` on the devices with stage
index ``s`` (``w_hidden`` sharded over its leading axis). Each data shard's
batch is cut into ``M`` microbatches. At tick ``t = 0 .. M+S-2`` stage ``s``
works on microbatch ``t - s`` and passes its output to stage ``s+1`` with one
``ppermute``; stage 0 reads microbatch ``t``, the last stage stores its output.
Slots with no microbatch (the bubble) compute on zeros, never NaN, so
``jax.grad`` through the schedule gives exact gradients. The bubble fraction
of this schedule is ``(S-1) / (M+S-1)`` of all stage-ticks.

The input layer (d -> width) and the logit head run before and after the
pipeline, under the same jit, sharded over ``data`` by XLA.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from optiscale_jax.parallel.mesh import DATA, STAGE, MeshLayout
from optiscale_jax.parallel.mlp import MLPParams, MLPSpec, hidden_block, logistic_terms, weight_sq_norm
from optiscale_jax.parallel.padding import pad_rows


def pipeline_specs() -> MLPParams:
    """PartitionSpecs of the MLP under a pipeline: each stage stores only its own hidden
    layers (``w_hidden``, ``b_hidden`` split over ``stage``); the input layer and the head,
    which run outside the pipeline, are replicated."""
    return MLPParams(w_in=P(), b_in=P(), w_hidden=P(STAGE, None, None), b_hidden=P(STAGE, None),
                     w_out=P(), b_out=P())


def bubble_fraction(n_microbatches: int, n_stages: int) -> float:
    """Idle share of stage-ticks in GPipe's forward pass: (S-1)/(M+S-1)."""
    return (n_stages - 1) / (n_microbatches + n_stages - 1)


def default_microbatches(n_stages: int) -> int:
    """4 microbatches per stage keeps the bubble under 20% (GPipe's advice, M >= 4S)."""
    return 4 * n_stages


def check_pipeline(spec: MLPSpec, n_stages: int, n_microbatches: int) -> None:
    """Layers must split evenly over stages; at least one microbatch."""
    if spec.n_blocks < n_stages or spec.n_blocks % n_stages:
        raise ValueError(
            f"pipeline parallelism splits the MLP's n_blocks={spec.n_blocks} hidden "
            f"width->width layers over {n_stages} stages, which does not divide; use "
            f"n_blocks equal to a positive multiple of {n_stages}, or fewer stages")
    if isinstance(n_microbatches, bool) or not isinstance(n_microbatches, int) or n_microbatches < 1:
        raise ValueError(f"n_microbatches must be a positive int; got {n_microbatches!r}")


def _gpipe(stage_fn: Callable, inputs: jnp.ndarray, n_stages: int) -> jnp.ndarray:
    """Run ``stage_fn`` as a GPipe schedule inside shard_map.

    ``inputs`` (M, mb, ...) are this data shard's microbatches (same on every
    stage); returns the last stage's outputs (M, mb, ...) on every stage.
    """
    n_micro = inputs.shape[0]
    stage = lax.axis_index(STAGE)

    def varying(x):
        return lax.pcast(x, (DATA, STAGE), to="varying")

    state0 = varying(jnp.zeros(inputs.shape[1:], inputs.dtype))
    outputs0 = varying(jnp.zeros(inputs.shape, inputs.dtype))
    to_next = [(s, (s + 1) % n_stages) for s in range(n_stages)]

    def tick(carry, t):
        state, outputs = carry
        feed = lax.dynamic_index_in_dim(inputs, jnp.minimum(t, n_micro - 1), keepdims=False)
        feed = jnp.where(t < n_micro, feed, jnp.zeros_like(feed))
        out = stage_fn(jnp.where(stage == 0, feed, state))
        done = t - (n_stages - 1)
        stored = lax.dynamic_update_index_in_dim(outputs, out, jnp.maximum(done, 0), 0)
        outputs = jnp.where((stage == n_stages - 1) & (done >= 0), stored, outputs)
        return (lax.ppermute(out, STAGE, to_next), outputs), None

    (_, outputs), _ = lax.scan(tick, (state0, outputs0),
                               jnp.arange(schedule_ticks(n_micro, n_stages)))
    return lax.psum(jnp.where(stage == n_stages - 1, outputs, jnp.zeros_like(outputs)), STAGE)


def schedule_ticks(n_microbatches: int, n_stages: int) -> int:
    """Ticks of the GPipe forward schedule: M + S - 1."""
    return n_microbatches + n_stages - 1


def measure_bubble_fraction(layout: MeshLayout, n_microbatches: int) -> float:
    """Idle share of stage-ticks, counted by running the training schedule on the mesh.

    ``_gpipe`` (the schedule the pipeline loss uses) runs a stage function that adds
    1 to its input; every microbatch enters as 0, so what the last stage hands back
    is the number of stages that worked on it. Their sum over microbatches is the
    busy stage-ticks, out of ``S x (M + S - 1)``. Independent of the closed form
    ``bubble_fraction``, which the tests compare it with.
    """
    n_stages = layout.n_second

    def local(zeros):
        visits = _gpipe(lambda a: a + 1.0, zeros.reshape(n_microbatches, 1), n_stages)
        return jnp.sum(visits)[None]

    fn = jax.jit(jax.shard_map(local, mesh=layout.mesh, in_specs=P(DATA), out_specs=P(DATA)))
    busy = fn(jnp.zeros((layout.n_data * n_microbatches,), jnp.float32))
    if not bool(jnp.all(busy == busy[0])):
        raise RuntimeError(f"data shards disagree on the busy stage-ticks: {busy}")
    return 1.0 - float(busy[0]) / (n_stages * schedule_ticks(n_microbatches, n_stages))


def make_pipeline_loss(spec: MLPSpec, layout: MeshLayout, n_microbatches: int | None = None) -> Callable:
    """``loss(params, X, y) -> scalar``: the MLP objective with a GPipe pipeline.

    Rows are zero-padded with weight 0 to a multiple of ``n_data * n_microbatches``.
    """
    spec.validate()
    if layout.second_axis != STAGE:
        raise ValueError(f"make_pipeline_loss needs a (data, stage) mesh; got axes {layout.mesh.axis_names}")
    n_stages = layout.n_second
    n_micro = default_microbatches(n_stages) if n_microbatches is None else n_microbatches
    check_pipeline(spec, n_stages, n_micro)
    half_l2 = 0.5 * float(spec.l2)

    def local_pipeline(w_hidden, b_hidden, h0):
        rows, width = h0.shape
        micro = h0.reshape(n_micro, rows // n_micro, width)

        def stage_fn(a):
            a, _ = lax.scan(lambda a, wb: (hidden_block(a, *wb), None), a, (w_hidden, b_hidden))
            return a

        return _gpipe(stage_fn, micro, n_stages).reshape(rows, width)

    pipelined = jax.shard_map(
        local_pipeline, mesh=layout.mesh,
        in_specs=(P(STAGE, None, None), P(STAGE, None), P(DATA, None)),
        out_specs=P(DATA, None))

    def loss(params: MLPParams, X, y):
        n_rows = X.shape[0]
        Xp, yp, weights = pad_rows(X, y.astype(X.dtype), layout.n_data * n_micro)
        h0 = jnp.tanh(Xp @ params.w_in + params.b_in)
        z = pipelined(params.w_hidden, params.b_hidden, h0) @ params.w_out + params.b_out
        data = jnp.sum(weights * logistic_terms(z, yp)) / n_rows
        return data + half_l2 * weight_sq_norm(params)

    return loss
