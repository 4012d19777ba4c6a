"""The MLP loss sharded over a ``(data, model)`` mesh with ``jax.shard_map``.

Examples are split over ``data``; the hidden units over ``model``
(Megatron-style tensor parallelism, one reduction per layer):

- input layer, column-sharded: device k holds ``W_in[:, cols_k]`` and computes
  its own slice of units ``a_0[:, cols_k] = tanh(X W_in[:, cols_k] + b_in[cols_k])``
  (no communication);
- each width -> width layer, row-sharded: device k holds ``W_l[cols_k, :]``, forms
  the partial product ``a_{l-1}[:, cols_k] W_l[cols_k, :]`` and one
  ``psum_scatter`` (a reduce-scatter) sums the partials and hands device k
  its slice ``cols_k`` of the next pre-activation;
- the head, row-sharded: ``z = psum_k a_L[:, cols_k] w_out[cols_k] + b_out``.

Under fsdp every leaf is also split over ``data`` (``sharding.py``): the input
layer and the head are gathered at the start, each hidden layer's weights inside
the scan over layers, under ``jax.checkpoint`` so the backward pass gathers them
again instead of keeping every layer's gathered copy (ZeRO-3); ``jax.grad`` turns
each gather into a reduce-scatter of the gradient.

The data term is ``psum_data(sum_i m_i l_i) / n`` (``m_i`` the padding weights
of ``padding.py``); the L2 term is evaluated on the global (sharded) weights
outside the shard_map.
Gradients are taken from outside the shard_map (``jax.grad`` of this loss),
which sums the per-device contributions exactly once; see the replicated-gradient
trap in the field notes.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from optiscale_jax.parallel.mesh import DATA, MODEL, MeshLayout
from optiscale_jax.parallel.mlp import MLPParams, MLPSpec, logistic_terms, mlp_shapes, weight_sq_norm
from optiscale_jax.parallel.padding import pad_rows
from optiscale_jax.parallel.sharding import gather, pad_params, plan_params, specs_of


def tensor_parallel_specs() -> MLPParams:
    """PartitionSpecs of each MLP parameter: hidden units split over ``model``."""
    return MLPParams(w_in=P(None, MODEL), b_in=P(MODEL), w_hidden=P(None, MODEL, None),
                     b_hidden=P(None, MODEL), w_out=P(MODEL), b_out=P())


def tensor_parallel_plan(spec: MLPSpec, layout: MeshLayout) -> MLPParams:
    """Where each MLP parameter is stored (``LeafLayout``s; fsdp adds the data split)."""
    return plan_params(tensor_parallel_specs(), mlp_shapes(spec), layout, layout.fsdp)


def check_tensor_parallel(spec: MLPSpec, n_model: int) -> None:
    """The hidden width must split evenly over the model axis."""
    if spec.width % n_model:
        raise ValueError(
            f"model parallelism splits the MLP's width={spec.width} hidden units over "
            f"{n_model} devices, which does not divide; choose a width that is a multiple "
            f"of {n_model} or a mesh with a model axis that divides {spec.width}")


def make_mlp_loss(spec: MLPSpec, layout: MeshLayout) -> Callable:
    """``loss(params, X, y) -> scalar``: the MLP objective on a (data, model) mesh.

    Equal to ``mlp.mlp_loss(params, X, y, spec.l2)`` up to float rounding, for any
    number of rows (rows are zero-padded with weight 0 to a multiple of the data axis).
    """
    spec.validate()
    if layout.second_axis != MODEL:
        raise ValueError(f"make_mlp_loss needs a (data, model) mesh; got axes {layout.mesh.axis_names}")
    check_tensor_parallel(spec, layout.n_second)
    half_l2 = 0.5 * float(spec.l2)
    plan = tensor_parallel_plan(spec, layout)

    def local_loss(p: MLPParams, X, y, weights, n_rows):
        a = jnp.tanh(X @ gather(p.w_in, plan.w_in) + gather(p.b_in, plan.b_in))
        # Stacked layers split over data along the layer axis are gathered whole;
        # otherwise each layer is gathered inside the scan.
        stacked = [gather(x, leaf) if leaf.fsdp_dim == 0 else x
                   for x, leaf in ((p.w_hidden, plan.w_hidden), (p.b_hidden, plan.b_hidden))]

        @jax.checkpoint
        def block(a, wb):
            w, b = (gather(x, leaf, -1) if leaf.fsdp_dim not in (None, 0) else x
                    for x, leaf in zip(wb, (plan.w_hidden, plan.b_hidden)))
            z = lax.psum_scatter(a @ w, MODEL, scatter_dimension=1, tiled=True) + b
            return jnp.tanh(z), None

        a, _ = lax.scan(block, a, tuple(stacked))
        z = lax.psum(a @ gather(p.w_out, plan.w_out), MODEL) + p.b_out
        return lax.psum(jnp.sum(weights * logistic_terms(z, y)), DATA) / n_rows

    sharded = jax.shard_map(
        local_loss, mesh=layout.mesh,
        in_specs=(specs_of(plan), P(DATA, None), P(DATA), P(DATA), P()),
        out_specs=P())

    def loss(params: MLPParams, X, y):
        """``params`` in their own shapes or in the stored (padded) ones."""
        n_rows = X.shape[0]
        stored = pad_params(params, plan)
        Xp, yp, weights = pad_rows(X, y.astype(X.dtype), layout.n_data)
        return (sharded(stored, Xp, yp, weights, jnp.asarray(n_rows, X.dtype))
                + half_l2 * weight_sq_norm(stored))

    return loss
