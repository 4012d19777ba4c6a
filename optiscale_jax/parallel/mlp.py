"""A small MLP binary classifier: its spec, parameters and single-device loss.

The model the parallel strategies shard (the single-device loss here is the
reference every sharded loss is tested against):

    a_0 = tanh(X W_in + b_in)                      (n, width)
    a_l = tanh(a_{l-1} W_l + b_l),  l = 1..n_blocks (width -> width)
    z   = a_L w_out + b_out                        (n,) logits
    f   = mean_i [softplus(z_i) - y_i z_i] + (l2/2)(||W_in||^2 + sum_l ||W_l||^2 + ||w_out||^2)

with labels ``y`` in {0, 1} (the logistic convention of ``optiscale_jax.problems``).
The ``n_blocks`` width -> width layers are stored stacked, ``w_hidden`` of shape
``(n_blocks, width, width)``, so that pipeline stages can take equal slices.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class MLPSpec(NamedTuple):
    """Shape and regularisation of the MLP.

    Attributes:
      n_features: input dimension d.
      width: units in every hidden layer.
      n_blocks: number of width -> width hidden layers after the input layer
        (the layers a pipeline splits into stages).
      l2: L2 coefficient on the weight matrices (biases are not penalised).
    """

    n_features: int
    width: int
    n_blocks: int = 2
    l2: float = 0.0

    def validate(self) -> MLPSpec:
        for name in ("n_features", "width"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"MLPSpec.{name} must be a positive int; got {value!r}")
        if not isinstance(self.n_blocks, (int, np.integer)) or self.n_blocks < 0:
            raise ValueError(f"MLPSpec.n_blocks must be an int >= 0; got {self.n_blocks!r}")
        if not np.isfinite(self.l2) or self.l2 < 0:
            raise ValueError(f"MLPSpec.l2 must be finite and >= 0; got {self.l2!r}")
        return self


class MLPParams(NamedTuple):
    """MLP parameters (a pytree)."""

    w_in: jnp.ndarray      # (d, width)
    b_in: jnp.ndarray      # (width,)
    w_hidden: jnp.ndarray  # (n_blocks, width, width)
    b_hidden: jnp.ndarray  # (n_blocks, width)
    w_out: jnp.ndarray     # (width,)
    b_out: jnp.ndarray     # ()


def mlp_shapes(spec: MLPSpec) -> MLPParams:
    """The shape of each parameter (tuples)."""
    d, w, L = spec.n_features, spec.width, spec.n_blocks
    return MLPParams(w_in=(d, w), b_in=(w,), w_hidden=(L, w, w), b_hidden=(L, w), w_out=(w,), b_out=())


def n_params(spec: MLPSpec) -> int:
    """Number of parameters: d w + w + L (w^2 + w) + w + 1."""
    return sum(int(np.prod(s)) for s in mlp_shapes(spec))


def init_mlp_params(spec: MLPSpec, seed: int = 0, dtype=jnp.float32) -> MLPParams:
    """LeCun-normal weights (variance 1 / fan_in), zero biases."""
    spec.validate()
    k_in, k_hidden, k_out = jax.random.split(jax.random.PRNGKey(seed), 3)
    d, w, L = spec.n_features, spec.width, spec.n_blocks
    return MLPParams(
        w_in=(jax.random.normal(k_in, (d, w)) / np.sqrt(d)).astype(dtype),
        b_in=jnp.zeros((w,), dtype),
        w_hidden=(jax.random.normal(k_hidden, (L, w, w)) / np.sqrt(w)).astype(dtype),
        b_hidden=jnp.zeros((L, w), dtype),
        w_out=(jax.random.normal(k_out, (w,)) / np.sqrt(w)).astype(dtype),
        b_out=jnp.zeros((), dtype),
    )


def logistic_terms(z: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Per-example binary cross-entropy from logits: softplus(z) - y z."""
    return jax.nn.softplus(z) - y * z


def weight_sq_norm(params: MLPParams) -> jnp.ndarray:
    """||W_in||^2 + sum_l ||W_l||^2 + ||w_out||^2 (the weights the L2 term covers)."""
    return (jnp.sum(params.w_in ** 2) + jnp.sum(params.w_hidden ** 2)
            + jnp.sum(params.w_out ** 2))


def hidden_block(a: jnp.ndarray, w: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """One width -> width layer: tanh(a W + b)."""
    return jnp.tanh(a @ w + b)


def mlp_logits(params: MLPParams, X: jnp.ndarray) -> jnp.ndarray:
    """Logits z (n,) of the MLP on one device."""
    a = jnp.tanh(X @ params.w_in + params.b_in)
    a, _ = jax.lax.scan(lambda a, wb: (hidden_block(a, *wb), None), a,
                        (params.w_hidden, params.b_hidden))
    return a @ params.w_out + params.b_out


def mlp_loss(params: MLPParams, X: jnp.ndarray, y: jnp.ndarray, l2: float = 0.0) -> jnp.ndarray:
    """The mean objective f above, on one device (the reference)."""
    z = mlp_logits(params, X)
    return jnp.mean(logistic_terms(z, y.astype(z.dtype))) + 0.5 * l2 * weight_sq_norm(params)
