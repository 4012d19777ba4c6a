"""Objective functions written once against an array namespace ``xp``.

Each function works with ``xp = jax.numpy`` (pure, jittable, traced inputs),
``numpy`` and ``cupy``: only functions common to the three namespaces are used
(``matmul``, ``logaddexp``, ``tanh``, ``exp``, ``log``, ``sum``, ``mean``, ``max``,
``arange``, ``astype``). All objectives are means over the n rows of X:

- least squares: ``f(w) = 1/(2n) ||X w - y||^2``,  ``grad = X^T (X w - y) / n``
- ridge:         least squares ``+ (l2/2) ||w||^2``, ``grad += l2 w``
- logistic (y in {0, 1}): ``f(w) = mean(softplus(X w) - y * X w) + (l2/2) ||w||^2``,
  ``grad = X^T (sigmoid(X w) - y) / n + l2 w``
- softmax (y int in [0, k), W of shape (d, k)):
  ``f(W) = mean(logsumexp(X W) - (X W)[i, y_i]) + (l2/2) ||W||_F^2``,
  ``grad = X^T (softmax(X W) - onehot(y)) / n + l2 W``

``softplus(z) = log(1 + e^z)`` is computed as ``logaddexp(0, z)`` and
``sigmoid(z)`` as ``(1 + tanh(z/2)) / 2``: both stable for large |z|.
"""

from __future__ import annotations

from typing import Any

Array = Any


def _sigmoid(z: Array, xp: Any) -> Array:
    return 0.5 * (1.0 + xp.tanh(0.5 * z))


def _log_softmax(z: Array, xp: Any) -> Array:
    shift = xp.max(z, axis=1, keepdims=True)
    zs = z - shift
    return zs - xp.log(xp.sum(xp.exp(zs), axis=1, keepdims=True))


def _one_hot(y: Array, n_classes: int, dtype: Any, xp: Any) -> Array:
    return (y[:, None] == xp.arange(n_classes)[None, :]).astype(dtype)


def _l2_term(w: Array, l2: float, xp: Any) -> Array:
    return 0.5 * l2 * xp.sum(w * w)


def least_squares_loss(w: Array, X: Array, y: Array, l2: float, xp: Any) -> Array:
    """``1/(2n) ||X w - y||^2 + (l2/2) ||w||^2`` (l2 = 0 for plain least squares)."""
    r = X @ w - y.astype(w.dtype)
    loss = 0.5 * xp.mean(r * r)
    return loss + _l2_term(w, l2, xp) if l2 else loss


def least_squares_grad(w: Array, X: Array, y: Array, l2: float, xp: Any) -> Array:
    """``X^T (X w - y) / n + l2 w``."""
    r = X @ w - y.astype(w.dtype)
    g = (r @ X) / X.shape[0]
    return g + l2 * w if l2 else g


def least_squares_predict(w: Array, X: Array, xp: Any) -> Array:
    """Regression values ``X w``."""
    del xp
    return X @ w


def logistic_loss(w: Array, X: Array, y: Array, l2: float, xp: Any) -> Array:
    """``mean(softplus(X w) - y X w) + (l2/2) ||w||^2`` with y in {0, 1}."""
    z = X @ w
    loss = xp.mean(xp.logaddexp(0.0, z) - y.astype(z.dtype) * z)
    return loss + _l2_term(w, l2, xp) if l2 else loss


def logistic_grad(w: Array, X: Array, y: Array, l2: float, xp: Any) -> Array:
    """``X^T (sigmoid(X w) - y) / n + l2 w``."""
    z = X @ w
    g = ((_sigmoid(z, xp) - y.astype(z.dtype)) @ X) / X.shape[0]
    return g + l2 * w if l2 else g


def logistic_predict(w: Array, X: Array, xp: Any) -> Array:
    """``P(y = 1 | x) = sigmoid(x . w)``."""
    return _sigmoid(X @ w, xp)


def softmax_loss(W: Array, X: Array, y: Array, l2: float, xp: Any) -> Array:
    """Mean cross-entropy of ``softmax(X W)`` against integer labels, ``+ (l2/2)||W||_F^2``."""
    z = X @ W
    onehot = _one_hot(y, W.shape[1], z.dtype, xp)
    loss = -xp.sum(onehot * _log_softmax(z, xp)) / X.shape[0]
    return loss + _l2_term(W, l2, xp) if l2 else loss


def softmax_grad(W: Array, X: Array, y: Array, l2: float, xp: Any) -> Array:
    """``X^T (softmax(X W) - onehot(y)) / n + l2 W``."""
    z = X @ W
    residual = xp.exp(_log_softmax(z, xp)) - _one_hot(y, W.shape[1], z.dtype, xp)
    g = (X.T @ residual) / X.shape[0]
    return g + l2 * W if l2 else g


def softmax_predict(W: Array, X: Array, xp: Any) -> Array:
    """Class probabilities ``softmax(X W)``, shape (n, k)."""
    return xp.exp(_log_softmax(X @ W, xp))
