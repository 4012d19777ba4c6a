"""A linear model's objective sharded over a ``(data, model)`` mesh.

For the linear problems of ``optiscale_jax.problems`` the objective is

    f(w) = (1/n) sum_i l(x_i^T w, y_i) + R(w),   R separable over coordinates (L2),

with ``w`` of shape (d,) or (d, k). Examples are split over ``data``, the
feature dimension d over ``model``: device (i, k) holds the rows of shard i and
the columns / weights of block k, forms ``X_ik w_k``, and one ``psum`` over
``model`` gives the logits ``z = X w`` (the one reduction of the layer).

The loss ``l`` and ``R`` are read off the problem's own ``loss(w, X, y)``
rather than written again: with ``I`` the identity (``ones(1)`` for a vector
``w``), ``loss(I, z_i, y_i) - loss(I, 0, y_i) + loss(0, 0, y_i) = l(z_i, y_i)``
and ``R(w) = loss(w, 0, y0) - loss(0, 0, y0)`` (evaluated on the global,
sharded ``w`` outside the shard_map; XLA sums its shards). Rows are padded with
weight 0 and features with zero columns (``padding.py``), so any n and d work.

Under fsdp ``w`` is also split over ``data`` (``sharding.py``) and gathered
inside the loss; ``jax.grad`` turns that gather into a reduce-scatter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from optiscale_jax.parallel.mesh import DATA, MODEL, MeshLayout
from optiscale_jax.parallel.padding import pad_rows, padded_size
from optiscale_jax.parallel.sharding import LeafLayout, gather, pad_to, plan_leaf

LossFn = Callable[[Any, Any, Any], Any]


def example_loss_fn(loss: LossFn, param_shape: tuple[int, ...]) -> Callable:
    """``l(z_i, y_i)``: the per-example data term of ``loss`` from one row of logits."""
    k = param_shape[1] if len(param_shape) == 2 else 1
    eye = jnp.eye(k) if len(param_shape) == 2 else jnp.ones((1,))

    def per_example(z_i, y_i):
        identity = eye.astype(z_i.dtype)
        row = jnp.reshape(z_i, (1, k))
        zero_row = jnp.zeros_like(row)
        label = y_i[None]
        return (loss(identity, row, label) - loss(identity, zero_row, label)
                + loss(jnp.zeros_like(identity), zero_row, label))

    return per_example


def regulariser_fn(loss: LossFn, label_dtype: Any) -> Callable:
    """``R(w_block)``: the regulariser of ``loss`` on one block of weight rows."""

    def R(w_block):
        zero_row = jnp.zeros((1, w_block.shape[0]), w_block.dtype)
        label = jnp.zeros((1,), label_dtype)
        return loss(w_block, zero_row, label) - loss(jnp.zeros_like(w_block), zero_row, label)

    return R


def linear_param_spec(param_shape: tuple[int, ...]) -> P:
    """Weights split over ``model`` along the feature dimension."""
    return P(MODEL) if len(param_shape) == 1 else P(MODEL, None)


def linear_padded_shape(param_shape: tuple[int, ...], layout: MeshLayout) -> tuple[int, ...]:
    """``w``'s shape with d zero-padded to a multiple of the model axis (times the data
    axis under fsdp with a model axis, so that fsdp can split the model blocks evenly)."""
    n_model = layout.n_second if layout.second_axis == MODEL else 1
    multiple = n_model * (layout.n_data if layout.fsdp and n_model > 1 else 1)
    return (padded_size(int(param_shape[0]), multiple),) + tuple(int(s) for s in param_shape[1:])


def linear_plan(param_shape: tuple[int, ...], layout: MeshLayout) -> LeafLayout:
    """Where ``w`` is stored on the mesh (see ``sharding.plan_leaf``)."""
    return plan_leaf(linear_param_spec(tuple(param_shape)), linear_padded_shape(param_shape, layout),
                     layout, layout.fsdp)


def make_linear_loss(loss: LossFn, param_shape: tuple[int, ...], layout: MeshLayout,
                     label_dtype: Any = jnp.float32) -> Callable:
    """``loss(w, X, y) -> scalar`` on a (data, model) mesh, equal to ``loss`` itself.

    Args:
      loss: the single-device objective ``loss(w, X, y)`` (e.g. ``problem.loss``)
        of a linear model with a separable regulariser.
      param_shape: shape of ``w``, (d,) or (d, k).
      layout: a mesh from ``make_layout`` with a ``model`` axis.
      label_dtype: dtype of the labels ``y`` (int for softmax).

    The returned loss accepts ``w`` in its own shape or in its stored shape
    (``linear_plan(param_shape, layout).shape``, zero-padded), and ``X`` with d
    columns or already zero-padded to the stored d.
    """
    if layout.second_axis != MODEL:
        raise ValueError(
            f"strategy {layout.strategy!r} splits a model's layers into pipeline stages, but a "
            "linear model has a single layer; use 'data_parallel', 'model_parallel' or "
            "'data_model_parallel', or train an MLPSpec model")
    param_shape = tuple(int(s) for s in param_shape)
    n_data = layout.n_data
    per_example = example_loss_fn(loss, param_shape)
    R = regulariser_fn(loss, label_dtype)
    plan = linear_plan(param_shape, layout)
    d_padded = linear_padded_shape(param_shape, layout)[0]

    def local_loss(w, X, y, weights, n_rows):
        z = lax.psum(X @ gather(w, plan), MODEL)
        return lax.psum(jnp.sum(weights * jax.vmap(per_example)(z, y)), DATA) / n_rows

    sharded = jax.shard_map(local_loss, mesh=layout.mesh,
                            in_specs=(plan.spec, P(DATA, MODEL), P(DATA), P(DATA), P()),
                            out_specs=P())

    def sharded_loss(w, X, y):
        n_rows = X.shape[0]
        Xp, yp, weights = pad_rows(X, y, n_data)
        Xp = pad_to(Xp, (Xp.shape[0], d_padded))
        wp = pad_to(w, plan.shape)
        return sharded(wp, Xp, yp, weights, jnp.asarray(n_rows, X.dtype)) + R(wp)

    return sharded_loss
