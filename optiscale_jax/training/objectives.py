"""Problem -> engine Objective: the loss-and-gradient kernels the engine runs.

Every kernel computes exactly the Problem's objective and gradient (the
formulas of `optiscale_jax.problems`); they differ only in data layout and
precomputation, chosen for speed:

- "generic": `problem.loss` and `problem.grad` traced together (XLA shares X w).
- "fused" (logistic, softmax): one pass z = X w, then the gradient as X^T r with
  X^T stored once in row-major layout (a contiguous matrix-vector product; XLA's
  CPU `X.T @ r` on the original layout can be several times slower).
- "fused_nonzero" (logistic, softmax; "auto" picks it when some column of X is zero
  in every row, e.g. MNIST's 116 blank pixels): the same two passes over only the
  nonzero columns, X_nz = X[:, nz]: z = X_nz w[nz], grad[nz] = r^T X_nz / n, and
  grad = l2 w on the zero columns (their data gradient is exactly 0). Fewer bytes read
  per epoch, same function.
- "quadratic" (least squares, ridge, when d <= n/2): with H = X^T X / n,
  w_ref = a float64 point near the optimum (Cholesky solve of (H + s I) w = X^T y / n on the
  d x d matrix, s = max(l2, 1e-10 tr(H)/d): the exact optimum for ridge), g_ref = grad f_data(w_ref)
  and f_ref = f_data(w_ref), all computed once on the host in float64,
      f(w)      = f_ref + g_ref . (w - w_ref) + (w - w_ref)^T H (w - w_ref) / 2 + (l2/2)||w||^2
      grad f(w) = g_ref + H (w - w_ref) + l2 w
  which is the same quadratic (Taylor expansion is exact), costs O(d^2) instead
  of O(n d) per evaluation, and is centred at w_ref so float32 keeps its digits.
Mini-batch steps always use the Problem's own loss/gradient on the gathered rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from optiscale_jax.training.engine import Objective, TrainData, cast_tree

KERNELS: tuple[str, ...] = ("auto", "generic", "fused", "fused_nonzero", "quadratic")
QUADRATIC_MAX_FEATURES = 4096


class PreparedObjective(NamedTuple):
    """An Objective, the device data it reads, the kernel chosen and its host setup time."""
    objective: Objective
    data: TrainData
    kernel: str
    setup_time_s: float


def _generic(problem: Any) -> Objective:
    def value_and_grad(w: jax.Array, X: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return problem.loss(w, X, y, xp=jnp), problem.grad(w, X, y, xp=jnp)

    def full(w: jax.Array, data: TrainData) -> tuple[jax.Array, jax.Array]:
        return value_and_grad(w, data.X, data.y)

    return Objective(value_and_grad, full)


def _l2_terms(w: jax.Array, l2: float) -> tuple[jax.Array, jax.Array]:
    if not l2:
        return jnp.zeros((), w.dtype), jnp.zeros_like(w)
    return 0.5 * l2 * jnp.sum(w * w), l2 * w


def _logistic_pieces(z: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean logistic loss of the margins z = X w and the residual sigmoid(z) - y."""
    y = labels.astype(z.dtype)
    loss = jnp.mean(jnp.logaddexp(0.0, z) - y * z)
    return loss, 0.5 * (1.0 + jnp.tanh(0.5 * z)) - y


def _softmax_pieces(z: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy of the logits z = X W (n, k) and the residual softmax(z) - onehot(y)."""
    log_p = jax.nn.log_softmax(z, axis=1)
    onehot = jax.nn.one_hot(labels, z.shape[1], dtype=z.dtype)
    return -jnp.sum(onehot * log_p) / z.shape[0], jnp.exp(log_p) - onehot


def _pieces(problem: Any) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    return _logistic_pieces if problem.kind == "logistic" else _softmax_pieces


def _fused(problem: Any) -> Objective:
    """Loss from one pass z = X w; gradient X^T r / n with X^T stored once (`data.extra`)."""
    pieces = _pieces(problem)

    def full(w: jax.Array, data: TrainData) -> tuple[jax.Array, jax.Array]:
        loss, residual = pieces(data.X @ w, data.y)
        grad = (data.extra @ residual) / data.X.shape[0]
        l2_loss, l2_grad = _l2_terms(w, problem.l2)
        return loss + l2_loss, grad + l2_grad

    return Objective(_generic(problem).batch_value_and_grad, full)


def _fused_nonzero(problem: Any) -> Objective:
    """As `_fused` over the columns of X that are not all zero; the others' data gradient is 0."""
    pieces = _pieces(problem)

    def full(w: jax.Array, data: TrainData) -> tuple[jax.Array, jax.Array]:
        columns, X_nonzero = data.extra["columns"], data.extra["X_nonzero"]
        loss, residual = pieces(X_nonzero @ w[columns], data.y)
        # r @ X for a vector residual (no transpose materialised); X^T R for a matrix one.
        data_grad = residual @ X_nonzero if residual.ndim == 1 else X_nonzero.T @ residual
        grad = jnp.zeros_like(w).at[columns].set(data_grad / data.X.shape[0])
        l2_loss, l2_grad = _l2_terms(w, problem.l2)
        return loss + l2_loss, grad + l2_grad

    return Objective(_generic(problem).batch_value_and_grad, full)


def nonzero_columns(X: np.ndarray) -> np.ndarray:
    """Indices (int32) of the columns of X with at least one nonzero entry."""
    return np.flatnonzero(np.any(np.asarray(X) != 0, axis=0)).astype(np.int32)


def quadratic_centre(hessian: np.ndarray, b: np.ndarray, l2: float) -> np.ndarray:
    """A float64 point near argmin of w^T H w / 2 - b^T w + (l2/2)||w||^2: Cholesky of H + s I.

    s = max(l2, 1e-10 tr(H)/d), so for ridge (l2 > 0) the point is the exact optimum and for
    least squares a minimiser up to a 1e-10 relative shift (H may be singular). O(d^3/3) on
    the d x d matrix already formed, instead of an O(n d^2) SVD least-squares solve of X.
    Any centre gives the same quadratic exactly; a near-optimal one keeps float32's digits.
    """
    d = hessian.shape[0]
    scale = max(float(np.trace(hessian)) / max(d, 1), np.finfo(np.float64).tiny)
    for relative in (1e-10, 1e-6, 1e-2):
        try:
            factor = scipy.linalg.cho_factor(hessian + max(l2, relative * scale) * np.eye(d))
        except np.linalg.LinAlgError:
            continue
        return scipy.linalg.cho_solve(factor, b)
    return np.zeros(d)


def _quadratic_extra(problem: Any) -> dict[str, np.ndarray]:
    X, y = np.asarray(problem.X, np.float64), np.asarray(problem.y, np.float64)
    n = X.shape[0]
    hessian = X.T @ X / n
    w_ref = quadratic_centre(hessian, y @ X / n, float(problem.l2))
    residual = X @ w_ref - y
    return {"hessian": hessian, "w_ref": w_ref, "g_ref": residual @ X / n,
            "f_ref": np.asarray(0.5 * np.mean(residual * residual))}


def _quadratic(problem: Any) -> Objective:
    def full(w: jax.Array, data: TrainData) -> tuple[jax.Array, jax.Array]:
        q = data.extra
        delta = w - q["w_ref"]
        h_delta = q["hessian"] @ delta
        loss = q["f_ref"] + q["g_ref"] @ delta + 0.5 * (delta @ h_delta)
        l2_loss, l2_grad = _l2_terms(w, problem.l2)
        return loss + l2_loss, q["g_ref"] + h_delta + l2_grad

    return Objective(_generic(problem).batch_value_and_grad, full)


def choose_kernel(problem: Any, kernel: str = "auto") -> str:
    """The kernel `kernel` resolves to for `problem` (ValueError if it does not apply)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r} is unknown; choose one of: {', '.join(KERNELS)}")
    n, d = problem.X.shape
    quadratic_ok = problem.kind in ("least_squares", "ridge") and \
        d <= n // 2 and d <= QUADRATIC_MAX_FEATURES
    fused_ok = problem.kind in ("logistic", "softmax")
    if kernel == "auto":
        if quadratic_ok:
            return "quadratic"
        if fused_ok:
            # Skipping all-zero columns is exact and saves their share of both passes
            # (MNIST: 116 of 784 pixels are blank in every image).
            return "fused_nonzero" if nonzero_columns(problem.X).size < d else "fused"
        return "generic"
    if kernel == "quadratic" and not quadratic_ok:
        raise ValueError(
            f"kernel='quadratic' needs a least_squares/ridge problem with d <= n/2 and "
            f"d <= {QUADRATIC_MAX_FEATURES} (got kind={problem.kind!r}, n={n}, d={d}); "
            "use kernel='auto' or 'generic'")
    if kernel in ("fused", "fused_nonzero") and not fused_ok:
        raise ValueError(f"kernel={kernel!r} is for logistic/softmax problems (got "
                         f"{problem.kind!r}); use kernel='auto' or 'generic'")
    return kernel


def prepare(problem: Any, dtype: str, kernel: str = "auto") -> PreparedObjective:
    """The Objective for `problem` and its data on the default device, cast to `dtype`.

    Call inside `engine.precision(dtype)` for float64.
    """
    chosen = choose_kernel(problem, kernel)
    start = time.perf_counter()
    X = np.asarray(problem.X)
    y = np.asarray(problem.y)
    if problem.kind != "softmax":
        y = y.astype(dtype)
    extra: Any = ()
    if chosen == "quadratic":
        extra = _quadratic_extra(problem)
        objective = _quadratic(problem)
    elif chosen == "fused":
        extra = np.ascontiguousarray(X.T, dtype=dtype)     # one copy, already cast
        objective = _fused(problem)
    elif chosen == "fused_nonzero":
        columns = nonzero_columns(X)
        extra = {"columns": columns, "X_nonzero": np.ascontiguousarray(X[:, columns])}
        objective = _fused_nonzero(problem)
    else:
        objective = _generic(problem)
    data = jax.block_until_ready(TrainData(cast_tree(X, dtype), jnp.asarray(y),
                                           cast_tree(extra, dtype)))
    return PreparedObjective(objective, data, chosen, time.perf_counter() - start)
