"""Optima in float64, each with a certificate of optimality.

Every solver works on the Problem's own float64 objective (``_objectives``) and
returns the point, its objective, ||grad f||_2, and the strong-convexity constant mu
it knows (0 when none): for a mu-strongly convex f, ``f(w) - f* <= ||grad f(w)||^2 / (2 mu)``
(the ``gap_bound`` stored beside f*). Iterative solvers stop on that bound
(``gap_bound <= GAP_RTOL * max(|f|, 1e-300)``) or on ``||grad f|| <= gtol``.

Quadratics (least squares, ridge), ``H = X^T X / n + l2 I``:
- ``direct`` (d <= DIRECT_MAX_FEATURES): least squares by LAPACK gelsd (the minimum-norm
  minimiser, so a singular X still has one answer), ridge by a Cholesky solve (primal
  d x d, or dual n x n when d > n);
- ``cg``: conjugate gradients on ``H w = X^T y / n`` from w = 0 with products
  ``X^T (X v) / n``, two passes over X each; from 0 the iterates stay in range(X^T), so
  least squares gets the minimum-norm minimiser too;
- ``factorization``: for data built as ``X = U diag(s) V^T`` with known factors, the exact
  ``w* = V diag(s / (s^2 + n l2)) U^T y`` (no solve; see ``solve_from_factors``).

Logistic (y in {0, 1}): Newton with Armijo backtracking; the direction solves
``H p = -g`` exactly, with ``H = X^T D X / n + l2 I``, ``D = diag(s (1 - s))``:
- ``primal`` (d <= n, d <= DIRECT_MAX_FEATURES): Cholesky of the d x d Hessian (BLAS syrk),
  least-squares fallback when singular;
- ``dual`` (n < d, l2 > 0): Woodbury, ``H^-1 g = (g - X^T E (n l2 I + E K E)^-1 E X g) / l2``
  with ``E = D^(1/2)`` and ``K = X X^T`` formed once: an n x n Cholesky per iteration;
- ``newton-cg`` otherwise: conjugate gradients on Hessian-vector products.
Softmax: Newton-CG with Hessian-vector products
``H V = X^T (P*A - P * rowsum(P*A)) / n + l2 V`` (``A = X V``, ``P = softmax(X W)``),
preconditioned by the Kronecker approximation ``(X^T X / n) (x) S + l2 I`` with S the
mean of ``diag(p_i) - p_i p_i^T`` at the current W (inverted through the eigenvectors of
the two small factors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.sparse.linalg
import threadpoolctl

from optiscale_jax.datasets import Factorization
from optiscale_jax.problems import _objectives as obj

DIRECT_MAX_FEATURES = 2000     # dense d x d (or d^3) work below this, iterative above
GAP_RTOL = 1e-13               # stop when |grad|^2/(2 mu) <= GAP_RTOL |f|
GTOL = 1e-12                   # or when ||grad f||_2 <= GTOL
DUAL_MAX_SAMPLES = 8000        # the logistic dual forms an n x n matrix


class SolverResult(NamedTuple):
    """A certified optimum: the minimiser, its objective, how it was found, and the
    certificate ``gap_bound = ||grad f||^2 / (2 mu)`` (inf when mu = 0 is all that is known)."""

    w_star: np.ndarray
    f_star: float
    method: str
    grad_norm: float
    iterations: int
    mu: float = 0.0
    gap_bound: float = float("inf")


def gap_bound(grad_norm: float, mu: float) -> float:
    """``||grad f||^2 / (2 mu)``, an upper bound on f(w) - f* for a mu-strongly convex f."""
    return grad_norm**2 / (2.0 * mu) if mu > 0 else float("inf")


def _certified(w: np.ndarray, f: float, g: np.ndarray, method: str, iterations: int,
               mu: float) -> SolverResult:
    gnorm = float(np.linalg.norm(g))
    return SolverResult(w, float(f), method, gnorm, iterations, float(mu), gap_bound(gnorm, mu))


def _done(f: float, gnorm: float, mu: float, gtol: float) -> bool:
    return gnorm <= gtol or gap_bound(gnorm, mu) <= GAP_RTOL * max(abs(f), 1e-300)


# ---------------------------------------------------------------------------- quadratics
DENSE_MAX_VALUES = 2**25        # n d up to which the dense direct solve factors X itself
GRAM_MAX_FEATURES = 10_000      # d up to which the blocked normal equations form X^T X (0.8 GB at most)
_BLOCK_VALUES = 1 << 22         # entries of X per float64 block of a pass (32 MiB)
QUADRATIC_METHODS = ("auto", "direct", "normal", "cg")


def _row_blocks(X: np.ndarray):
    """(start, float64 rows) blocks of X: float32 data never needs a float64 copy of X."""
    step = max(1, _BLOCK_VALUES // max(X.shape[1], 1))
    for start in range(0, X.shape[0], step):
        yield start, np.asarray(X[start:start + step], np.float64)


def quadratic_value_and_grad(X: np.ndarray, y: np.ndarray, l2: float,
                             w: np.ndarray) -> tuple[float, np.ndarray]:
    """``1/(2n) ||X w - y||^2 + (l2/2)||w||^2`` and its gradient, float64, one blocked pass."""
    n = X.shape[0]
    grad, squares = np.zeros(X.shape[1]), 0.0
    for start, block in _row_blocks(X):
        residual = block @ w - y[start:start + block.shape[0]]
        grad += residual @ block
        squares += float(residual @ residual)
    return 0.5 * squares / n + 0.5 * l2 * float(w @ w), grad / n + l2 * w


def _normal_product(X: np.ndarray, l2: float) -> Callable[[np.ndarray], np.ndarray]:
    """``v -> (X^T X / n + l2 I) v``, one blocked pass over X."""
    n = X.shape[0]

    def product(v: np.ndarray) -> np.ndarray:
        out = np.zeros(X.shape[1])
        for _, block in _row_blocks(X):
            out += (block @ v) @ block
        return out / n + l2 * v
    return product


def _quadratic_result(X: np.ndarray, y: np.ndarray, l2: float, w: np.ndarray, method: str,
                      iterations: int, mu: float) -> SolverResult:
    if X.dtype == np.float64 and X.size <= DENSE_MAX_VALUES:   # the Problem's own formulas
        f = float(obj.least_squares_loss(w, X, y, l2, np))
        g = obj.least_squares_grad(w, X, y, l2, np)
    else:
        f, g = quadratic_value_and_grad(X, y, l2, w)
    return _certified(w, f, g, method, iterations, mu)


def _choose_quadratic(X: np.ndarray, method: str) -> str:
    if method not in QUADRATIC_METHODS:
        raise ValueError(f"method={method!r} is unknown; choose one of: "
                         f"{', '.join(QUADRATIC_METHODS)}")
    if method != "auto":
        return method
    n, d = X.shape
    if X.size <= DENSE_MAX_VALUES and min(n, d) <= DIRECT_MAX_FEATURES:
        return "direct"
    return "normal" if n >= d and d <= GRAM_MAX_FEATURES else "cg"


def solve_least_squares(X: np.ndarray, y: np.ndarray, *, mu: float = 0.0,
                        method: str = "auto", w0: np.ndarray | None = None) -> SolverResult:
    """Minimum-norm minimiser of ``1/(2n) ||X w - y||^2``; ``mu``: sigma_min^2 / n if known.

    ``X`` may be float32 (the objective is still evaluated in float64, block by block).
    """
    chosen = _choose_quadratic(X, method)
    if chosen == "direct":
        X64 = np.asarray(X, np.float64)
        w, *_ = scipy.linalg.lstsq(X64, y, lapack_driver="gelsd")
        return _quadratic_result(X64, y, 0.0, w, "lstsq (LAPACK gelsd, minimum norm)", 1, mu)
    if chosen == "normal":
        return _solve_normal_equations(X, y, 0.0, mu)
    return _solve_quadratic_cg(X, y, 0.0, mu, w0)


def solve_ridge(X: np.ndarray, y: np.ndarray, l2: float, *, mu: float = 0.0,
                method: str = "auto", w0: np.ndarray | None = None) -> SolverResult:
    """Minimiser of ``1/(2n) ||X w - y||^2 + (l2/2)||w||^2`` (mu >= l2 always)."""
    mu = max(mu, l2)
    chosen = _choose_quadratic(X, method)
    if chosen == "normal":
        return _solve_normal_equations(X, y, l2, mu)
    if chosen == "cg":
        return _solve_quadratic_cg(X, y, l2, mu, w0)
    X = np.asarray(X, np.float64)
    n, d = X.shape
    if d <= n:
        H = scipy.linalg.blas.dsyrk(1.0 / n, X.T, lower=1)
        H[np.diag_indices_from(H)] += l2
        w = scipy.linalg.cho_solve(scipy.linalg.cho_factor(H, lower=True), X.T @ y / n)
        label = "cholesky (primal, d x d)"
    else:
        K = scipy.linalg.blas.dsyrk(1.0 / n, X, lower=1)
        K[np.diag_indices_from(K)] += l2
        w = X.T @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(K, lower=True), y / n)
        label = "cholesky (dual, n x n)"
    return _quadratic_result(X, y, l2, w, label, 1, mu)


def _solve_normal_equations(X: np.ndarray, y: np.ndarray, l2: float, mu: float) -> SolverResult:
    """Cholesky of ``X^T X / n + l2 I`` formed in one blocked pass (d x d memory, float32 X
    never copied), then iterative refinement with the exact float64 gradient until the
    certificate holds (at most 5 corrections)."""
    n, d = X.shape
    gram, xty = np.zeros((d, d)), np.zeros(d)
    for start, block in _row_blocks(X):
        gram += block.T @ block
        xty += y[start:start + block.shape[0]] @ block
    H = gram / n
    H[np.diag_indices_from(H)] += l2
    try:
        factor = scipy.linalg.cho_factor(H, lower=True)
    except np.linalg.LinAlgError:       # singular X^T X without L2: minimum norm by CG
        return _solve_quadratic_cg(X, y, l2, mu, None)
    w = scipy.linalg.cho_solve(factor, xty / n)
    for corrections in range(6):
        result = _quadratic_result(X, y, l2, w, "", 1, mu)
        if _done(result.f_star, result.grad_norm, mu, GTOL) or corrections == 5:
            break
        w = w - scipy.linalg.cho_solve(factor, quadratic_value_and_grad(X, y, l2, w)[1])
    return result._replace(method=f"normal equations (blocked X^T X, cholesky, {corrections} "
                                  "refinement steps)", iterations=corrections + 1)


def _solve_quadratic_cg(X: np.ndarray, y: np.ndarray, l2: float, mu: float,
                        w0: np.ndarray | None) -> SolverResult:
    """CG on the normal equations, restarted from its own point until the certificate holds
    (each restart recomputes the true gradient, which CG's recursion only tracks)."""
    d = X.shape[1]
    product = _normal_product(X, l2)
    op = scipy.sparse.linalg.LinearOperator((d, d), matvec=product, dtype=np.float64)
    w = np.zeros(d) if w0 is None else np.asarray(w0, np.float64)
    iterations = 0

    def count(_):
        nonlocal iterations
        iterations += 1

    result = None
    for _ in range(10):
        result = _quadratic_result(X, y, l2, w, "", iterations, mu)
        if _done(result.f_star, result.grad_norm, mu, GTOL):
            break
        target = GTOL
        if mu > 0:  # the gradient norm at which |g|^2/(2 mu) meets the relative gap
            target = max(GTOL, np.sqrt(2 * mu * GAP_RTOL * max(abs(result.f_star), 1e-300)))
        gradient = quadratic_value_and_grad(X, y, l2, w)[1]
        step, _ = scipy.sparse.linalg.cg(op, -gradient, rtol=0.0, atol=0.5 * target,
                                         maxiter=20 * d, callback=count)
        w = w + step
    start = "" if w0 is None else "from the factorization's point, "
    return result._replace(method=f"cg on the normal equations ({start}{iterations} "
                                  "iterations, X^T X v products)", iterations=iterations)


def solve_from_factors(factorization: Factorization, X: np.ndarray, y: np.ndarray,
                       l2: float, *, mu: float = 0.0) -> SolverResult:
    """``w* = V diag(s / (s^2 + n l2)) U^T y`` for ``X = U diag(s) V^T`` (the generator's
    factors; zero singular values contribute nothing: the minimum-norm convention). Exact
    for the float64 X the factors describe; for X stored in float32 it is the starting
    point of CG on the stored X (a few iterations)."""
    n = X.shape[0]
    sigma = np.asarray(factorization.singular_values, np.float64)
    denominator = sigma**2 + n * l2
    coefficients = np.divide(sigma, denominator, out=np.zeros_like(sigma),
                             where=denominator > 0)
    w = factorization.right(coefficients * factorization.left_transpose(np.asarray(y, float)))
    if X.dtype != np.float64:
        return _solve_quadratic_cg(X, y, l2, mu, w)
    return _quadratic_result(X, y, l2, w, "factorization X = U diag(s) V^T (exact, no solve)",
                             0, mu)


# ---------------------------------------------------------------------------- Newton
def _newton(
    fun: Callable[[np.ndarray], float],
    grad: Callable[[np.ndarray], np.ndarray],
    direction: Callable[[np.ndarray, np.ndarray], np.ndarray],
    w0: np.ndarray,
    *,
    mu: float,
    gtol: float,
    max_iter: int,
) -> tuple[np.ndarray, float, np.ndarray, int]:
    """Damped Newton: ``w <- w + t p`` with ``p ~ -H^{-1} g`` and Armijo backtracking on t;
    stops on the certificate (see ``_done``) or when no step decreases f."""
    w = w0
    f = fun(w)
    g = grad(w)
    it = 0
    for it in range(1, max_iter + 1):
        gnorm = float(np.linalg.norm(g))
        if _done(f, gnorm, mu, gtol):
            return w, f, g, it - 1
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
                return w, f, g, it
        w, f = w_new, f_new
        g = grad(w)
    return w, f, g, it


def _separable_note(l2: float, f: float) -> str:
    """Without L2, separable data has infimum 0 that no finite w attains: say so."""
    if l2 == 0.0 and f < 1e-10:
        return ("; data separable: infimum 0 is not attained, w_star is a finite point "
                f"with f = {f:.1e}")
    return ""


def _logistic_direction(X: np.ndarray, l2: float, layout: str, notes: dict
                        ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    n, d = X.shape
    if layout == "dual":
        K = scipy.linalg.blas.dsyrk(1.0, X, lower=1)      # X X^T, lower triangle

        def dual(w, g):
            s = obj.logistic_predict(w, X, np)
            e = np.sqrt(s * (1.0 - s))
            M = K * e[:, None] * e[None, :]
            M[np.diag_indices_from(M)] += n * l2
            c = scipy.linalg.cho_factor(M, lower=True, check_finite=False)
            inner = e * scipy.linalg.cho_solve(c, e * (X @ g), check_finite=False)
            return -(g - inner @ X) / l2
        return dual
    if layout == "primal":
        def primal(w, g):
            s = obj.logistic_predict(w, X, np)
            scaled = X * np.sqrt(s * (1.0 - s) / n)[:, None]
            H = scipy.linalg.blas.dsyrk(1.0, scaled.T, lower=1)
            H[np.diag_indices_from(H)] += l2
            try:
                c = scipy.linalg.cho_factor(H, lower=True, check_finite=False)
                return -scipy.linalg.cho_solve(c, g, check_finite=False)
            except np.linalg.LinAlgError:
                notes["lstsq"] = True
                H = np.tril(H) + np.tril(H, -1).T
                return -scipy.linalg.lstsq(H, g, lapack_driver="gelsd")[0]
        return primal

    def newton_cg(w, g):
        s = obj.logistic_predict(w, X, np)
        weight = s * (1.0 - s) / n
        op = scipy.sparse.linalg.LinearOperator(
            (d, d), matvec=lambda v: (weight * (X @ v)) @ X + l2 * v, dtype=np.float64)
        rtol = min(0.5, np.sqrt(float(np.linalg.norm(g))))
        p, _ = scipy.sparse.linalg.cg(op, -g, rtol=rtol, atol=0.0, maxiter=10 * d)
        return p
    return newton_cg


def solve_logistic(X: np.ndarray, y: np.ndarray, l2: float, *, gtol: float = GTOL,
                   max_iter: int = 100, layout: str = "auto") -> SolverResult:
    """Newton with line search for L2-regularised binary logistic regression (y in {0, 1})."""
    n, d = X.shape
    if layout == "auto":
        if d <= n and d <= DIRECT_MAX_FEATURES:
            layout = "primal"
        elif n < d and l2 > 0 and n <= DUAL_MAX_SAMPLES:
            layout = "dual"
        else:
            layout = "newton-cg"
    notes: dict = {}
    w, f, g, it = _newton(lambda w: float(obj.logistic_loss(w, X, y, l2, np)),
                          lambda w: obj.logistic_grad(w, X, y, l2, np),
                          _logistic_direction(X, l2, layout, notes), np.zeros(d),
                          mu=l2, gtol=gtol, max_iter=max_iter)
    method = {"primal": "newton (dense d x d Hessian, "
                        + ("lstsq" if notes.get("lstsq") else "cholesky") + ", armijo)",
              "dual": "newton (Woodbury: n x n Cholesky per step, armijo)",
              "newton-cg": "newton-cg (Hessian-vector products, armijo)"}[layout]
    return _certified(w, f, g, method + _separable_note(l2, f), it, l2)


def _kronecker_preconditioner(X: np.ndarray, l2: float, d: int, k: int):
    """A function (P, vflat) -> approx H^-1 v with H ~ (X^T X / n) (x) S + l2 I."""
    n = X.shape[0]
    gram = scipy.linalg.blas.dsyrk(1.0 / n, X.T, lower=1)
    lam, Q = scipy.linalg.eigh(gram, lower=True)
    lam = np.maximum(lam, 0.0)

    def make(P: np.ndarray):
        S = (np.diag(P.sum(axis=0)) - P.T @ P) / n
        sig, R = np.linalg.eigh(S)
        denominator = np.outer(lam, np.maximum(sig, 0.0)) + l2

        def apply(vflat):
            V = vflat.reshape(d, k)
            return (Q @ ((Q.T @ V @ R) / denominator) @ R.T).ravel()
        return apply
    return make


def solve_softmax(X: np.ndarray, y: np.ndarray, l2: float, n_classes: int, *,
                  gtol: float = GTOL, max_iter: int = 100,
                  X_products: np.ndarray | None = None) -> SolverResult:
    """Preconditioned Newton-CG with line search for L2-regularised multinomial logistic
    regression.

    ``X_products``: the matrix the Hessian-vector products use (default X; a float32 copy
    halves their memory traffic: the direction is inexact by design, while f, the gradient
    and the certificate are always evaluated in float64 on X).
    """
    n, d = X.shape
    k = n_classes
    Xp = X if X_products is None else X_products
    cg_iterations = 0
    precondition = _kronecker_preconditioner(X, l2, d, k) if l2 > 0 else None

    def direction(wflat, g):
        nonlocal cg_iterations
        P = obj.softmax_predict(wflat.reshape(d, k), X, np).astype(Xp.dtype)

        def hvp(vflat):
            A = Xp @ vflat.reshape(d, k).astype(Xp.dtype)
            PA = P * A
            B = PA - P * PA.sum(axis=1, keepdims=True)
            return ((B.T @ Xp).T.astype(np.float64) / n + l2 * vflat.reshape(d, k)).ravel()

        def count(_):
            nonlocal cg_iterations
            cg_iterations += 1

        op = scipy.sparse.linalg.LinearOperator((d * k, d * k), matvec=hvp, dtype=np.float64)
        M = None
        if precondition is not None:
            M = scipy.sparse.linalg.LinearOperator((d * k, d * k), matvec=precondition(P),
                                                   dtype=np.float64)
        rtol = min(0.5, np.sqrt(float(np.linalg.norm(g))))  # forcing sequence: superlinear
        p, _ = scipy.sparse.linalg.cg(op, -g, rtol=rtol, atol=0.0, maxiter=10 * d * k, M=M,
                                      callback=count)
        return p

    # The products are skinny (k columns) and memory-bound: a second BLAS thread gains little
    # and, on a loaded machine, its spin-waiting cost 6x here (MNIST-10k: 5.4 s with one
    # thread, 32 s with two, load average 6).
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        wflat, f, g, it = _newton(
            lambda wflat: float(obj.softmax_loss(wflat.reshape(d, k), X, y, l2, np)),
            lambda wflat: obj.softmax_grad(wflat.reshape(d, k), X, y, l2, np).ravel(),
            direction, np.zeros(d * k), mu=l2, gtol=gtol, max_iter=max_iter)
    method = (f"newton-cg (Hessian-vector products, Kronecker preconditioner, armijo; "
              f"{cg_iterations} CG iterations)")
    return _certified(wflat.reshape(d, k), f, g.reshape(d, k), method + _separable_note(l2, f),
                      it, l2)
