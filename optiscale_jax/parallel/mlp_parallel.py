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

The data term is ``psum_data(sum_i m_i l_i) / n`` (``m_i`` the padding weights
of ``padding.py``), the L2 term ``psum_model`` of each shard's squared norms.
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
from optiscale_jax.parallel.mlp import MLPParams, MLPSpec, logistic_terms, weight_sq_norm
from optiscale_jax.parallel.padding import pad_rows


def tensor_parallel_specs() -> MLPParams:
    """PartitionSpecs of each MLP parameter: hidden units split over ``model``."""
    return MLPParams(w_in=P(None, MODEL), b_in=P(MODEL), w_hidden=P(None, MODEL, None),
                     b_hidden=P(None, MODEL), w_out=P(MODEL), b_out=P())


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

    def local_loss(p: MLPParams, X, y, weights, n_rows):
        a = jnp.tanh(X @ p.w_in + p.b_in)

        def block(a, wb):
            w, b = wb
            z = lax.psum_scatter(a @ w, MODEL, scatter_dimension=1, tiled=True) + b
            return jnp.tanh(z), None

        a, _ = lax.scan(block, a, (p.w_hidden, p.b_hidden))
        z = lax.psum(a @ p.w_out, MODEL) + p.b_out
        data = lax.psum(jnp.sum(weights * logistic_terms(z, y)), DATA) / n_rows
        return data + half_l2 * lax.psum(weight_sq_norm(p), MODEL)

    sharded = jax.shard_map(
        local_loss, mesh=layout.mesh,
        in_specs=(tensor_parallel_specs(), P(DATA, None), P(DATA), P(DATA), P()),
        out_specs=P())

    def loss(params: MLPParams, X, y):
        n_rows = X.shape[0]
        Xp, yp, weights = pad_rows(X, y.astype(X.dtype), layout.n_data)
        return sharded(params, Xp, yp, weights, jnp.asarray(n_rows, X.dtype))

    return loss
