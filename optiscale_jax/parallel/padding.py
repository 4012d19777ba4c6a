"""Padding so that rows and features divide over a mesh axis, exactly.

A batch of ``n`` rows that does not divide over ``k`` data shards (times the
pipeline's microbatches) is padded with zero rows carrying weight 0; every
sharded loss is a weighted mean ``sum_i m_i l_i / sum_i m_i`` with ``m_i`` in
{0, 1}, so padding changes neither the loss nor its gradient. Features of a
linear model are padded inside the loss, X with zero columns and w with zero
entries: the logits X w are unchanged, and since the padding is part of the
differentiated function, the gradient with respect to the real (d,) weights is
exactly the unpadded one. Padding happens inside the compiled step, so it costs
a copy of the batch per step: sizes that divide avoid it.
"""

from __future__ import annotations

import jax.numpy as jnp


def padded_size(n: int, multiple: int) -> int:
    """The least multiple of ``multiple`` that is >= ``n``."""
    return -(-n // multiple) * multiple


def pad_rows(X: jnp.ndarray, y: jnp.ndarray, multiple: int):
    """Pad ``X`` (n, ...) and ``y`` (n, ...) to a multiple of ``multiple`` rows.

    Returns ``(X_padded, y_padded, weights)`` with ``weights`` (float, X's
    dtype) equal to 1 on the real rows and 0 on the padding.
    """
    n = X.shape[0]
    extra = padded_size(n, multiple) - n
    weights = jnp.ones((n,), dtype=X.dtype)
    if extra == 0:
        return X, y, weights
    X = jnp.pad(X, [(0, extra)] + [(0, 0)] * (X.ndim - 1))
    y = jnp.pad(y, [(0, extra)] + [(0, 0)] * (y.ndim - 1))
    return X, y, jnp.pad(weights, (0, extra))


def pad_axis(x: jnp.ndarray, axis: int, multiple: int) -> jnp.ndarray:
    """Zero-pad ``x`` along ``axis`` to a multiple of ``multiple``."""
    extra = padded_size(x.shape[axis], multiple) - x.shape[axis]
    if extra == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths)
