"""Exact optima in float64: direct solves for quadratics, damped Newton for logistic / softmax.

Quadratics (least squares, ridge) are solved directly:
- least squares: the minimum-norm minimiser ``w* = pinv(X) y`` (``scipy.linalg.lstsq``,
  LAPACK gelsd), so a singular X still gets the unique minimum-norm solution;
- ridge: ``(X^T X / n + l2 I) w = X^T y / n`` by Cholesky when d <= n, or the
  equivalent dual system ``w = X^T (X X^T / n + l2 I)^{-1} y / n`` when d > n.

Logistic and softmax regression use Newton's method with an Armijo backtracking
line search. The Newton direction solves ``H p = -g`` with the exact Hessian:
- logistic: ``H = X^T diag(s (1 - s)) X / n + l2 I`` formed densely (Cholesky;
  least-squares fallback when H is singular, e.g. l2 = 0 with constant features);
- softmax: Hessian-vector products ``H V = X^T (P*A - P * rowsum(P*A)) / n + l2 V``
  with ``A = X V`` and ``P = softmax(X W)``, solved by conjugate gradients
  (``scipy.sparse.linalg.cg``) to a relative residual that tightens with ||g||.
Iteration stops when ``||g||_2 <= gtol`` or when no step decreases f.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.sparse.linalg

from optiscale_jax.problems import _objectives as obj


class SolverResult(NamedTuple):
    """Result of an exact solve: the minimiser, its objective, and how it was found."""

    w_star: np.ndarray
    f_star: float
    method: str
    grad_norm: float
    iterations: int


def solve_least_squares(X: np.ndarray, y: np.ndarray) -> SolverResult:
    """Minimum-norm minimiser of ``1/(2n) ||X w - y||^2`` (LAPACK gelsd)."""
    w, *_ = scipy.linalg.lstsq(X, y, lapack_driver="gelsd")
    f = float(obj.least_squares_loss(w, X, y, 0.0, np))
    g = obj.least_squares_grad(w, X, y, 0.0, np)
    return SolverResult(w, f, "lstsq (LAPACK gelsd, minimum norm)", float(np.linalg.norm(g)), 1)


def solve_ridge(X: np.ndarray, y: np.ndarray, l2: float) -> SolverResult:
    """Minimiser of ``1/(2n) ||X w - y||^2 + (l2/2)||w||^2`` by a Cholesky solve."""
    n, d = X.shape
    if d <= n:
        H = X.T @ X / n
        H[np.diag_indices_from(H)] += l2
        w = scipy.linalg.solve(H, X.T @ y / n, assume_a="pos")
        method = "cholesky (primal, d x d)"
    else:
        K = X @ X.T / n
        K[np.diag_indices_from(K)] += l2
        alpha = scipy.linalg.solve(K, y / n, assume_a="pos")
        w = X.T @ alpha
        method = "cholesky (dual, n x n)"
    f = float(obj.least_squares_loss(w, X, y, l2, np))
    g = obj.least_squares_grad(w, X, y, l2, np)
    return SolverResult(w, f, method, float(np.linalg.norm(g)), 1)


def _newton(
    fun: Callable[[np.ndarray], float],
    grad: Callable[[np.ndarray], np.ndarray],
    direction: Callable[[np.ndarray, np.ndarray], np.ndarray],
    w0: np.ndarray,
    *,
    gtol: float,
    max_iter: int,
) -> tuple[np.ndarray, float, float, int]:
    """Damped Newton: ``w <- w + t p`` with ``p = -H^{-1} g`` and Armijo backtracking on t."""
    w = w0
    f = fun(w)
    g = grad(w)
    gnorm = float(np.linalg.norm(g))
    it = 0
    for it in range(1, max_iter + 1):
        if gnorm <= gtol:
            return w, f, gnorm, it - 1
        p = direction(w, g)
        slope = float(np.vdot(g, p))
        if not slope < 0.0:  # not a descent direction (numerically): fall back to -g
            p, slope = -g, -gnorm**2
        t = 1.0
        while True:
            w_new = w + t * p
            f_new = fun(w_new)
            if f_new <= f + 1e-4 * t * slope:
                break
            t *= 0.5
            if t < 1e-12:
                # No decrease is representable in float64: w is optimal to machine precision.
                return w, f, gnorm, it
        w, f = w_new, f_new
        g = grad(w)
        gnorm = float(np.linalg.norm(g))
    return w, f, gnorm, it


def _separable_note(l2: float, f: float) -> str:
    """Without L2, separable data has infimum 0 that no finite w attains: say so."""
    if l2 == 0.0 and f < 1e-10:
        return ("; data separable: infimum 0 is not attained, w_star is a finite point "
                f"with f = {f:.1e}")
    return ""


def solve_logistic(X: np.ndarray, y: np.ndarray, l2: float, *, gtol: float = 1e-12,
                   max_iter: int = 100) -> SolverResult:
    """Newton with line search for L2-regularised binary logistic regression (y in {0, 1})."""
    n, d = X.shape
    used_lstsq = False

    def fun(w):
        return float(obj.logistic_loss(w, X, y, l2, np))

    def grad(w):
        return obj.logistic_grad(w, X, y, l2, np)

    def direction(w, g):
        nonlocal used_lstsq
        s = obj.logistic_predict(w, X, np)
        scaled = X * np.sqrt(s * (1.0 - s) / n)[:, None]
        # Lower triangle of scaled^T scaled by BLAS syrk: half the flops of a full product.
        H = scipy.linalg.blas.dsyrk(1.0, scaled.T, lower=1)
        H[np.diag_indices_from(H)] += l2
        try:
            c = scipy.linalg.cho_factor(H, lower=True, check_finite=False)
            return -scipy.linalg.cho_solve(c, g, check_finite=False)
        except np.linalg.LinAlgError:
            used_lstsq = True
            H = np.tril(H) + np.tril(H, -1).T
            return -scipy.linalg.lstsq(H, g, lapack_driver="gelsd")[0]

    w, f, gnorm, it = _newton(fun, grad, direction, np.zeros(d), gtol=gtol, max_iter=max_iter)
    method = "newton (dense Hessian, " + ("lstsq" if used_lstsq else "cholesky") + ", armijo)"
    return SolverResult(w, f, method + _separable_note(l2, f), gnorm, it)


def solve_softmax(X: np.ndarray, y: np.ndarray, l2: float, n_classes: int, *,
                  gtol: float = 1e-12, max_iter: int = 100) -> SolverResult:
    """Newton-CG with line search for L2-regularised multinomial logistic regression."""
    n, d = X.shape
    k = n_classes
    cg_iterations = 0

    def fun(wflat):
        return float(obj.softmax_loss(wflat.reshape(d, k), X, y, l2, np))

    def grad(wflat):
        return obj.softmax_grad(wflat.reshape(d, k), X, y, l2, np).ravel()

    def direction(wflat, g):
        nonlocal cg_iterations
        P = obj.softmax_predict(wflat.reshape(d, k), X, np)

        def hvp(vflat):
            A = X @ vflat.reshape(d, k)
            PA = P * A
            B = PA - P * PA.sum(axis=1, keepdims=True)
            return (X.T @ B / n + l2 * vflat.reshape(d, k)).ravel()

        def count(_):
            nonlocal cg_iterations
            cg_iterations += 1

        op = scipy.sparse.linalg.LinearOperator((d * k, d * k), matvec=hvp, dtype=np.float64)
        gnorm = float(np.linalg.norm(g))
        rtol = min(0.5, np.sqrt(gnorm))  # forcing sequence: superlinear convergence
        p, _ = scipy.sparse.linalg.cg(op, -g, rtol=rtol, atol=0.0, maxiter=10 * d * k,
                                      callback=count)
        return p

    wflat, f, gnorm, it = _newton(fun, grad, direction, np.zeros(d * k), gtol=gtol,
                                  max_iter=max_iter)
    method = f"newton-cg (Hessian-vector products, armijo; {cg_iterations} CG iterations)"
    return SolverResult(wflat.reshape(d, k), f, method + _separable_note(l2, f), gnorm, it)
