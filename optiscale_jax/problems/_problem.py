"""The Problem: data plus a pure objective, its gradient, predictions and exact optimum."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from optiscale_jax.datasets import singular_values
from optiscale_jax.problems import _cache, _solvers
from optiscale_jax.problems import _objectives as obj
from optiscale_jax.problems._validation import check_kind, check_l2, check_X, check_y

_LOSS = {"least_squares": obj.least_squares_loss, "ridge": obj.least_squares_loss,
         "logistic": obj.logistic_loss, "softmax": obj.softmax_loss}
_GRAD = {"least_squares": obj.least_squares_grad, "ridge": obj.least_squares_grad,
         "logistic": obj.logistic_grad, "softmax": obj.softmax_grad}
_PREDICT = {"least_squares": obj.least_squares_predict, "ridge": obj.least_squares_predict,
            "logistic": obj.logistic_predict, "softmax": obj.softmax_predict}
# Bound on the largest eigenvalue of the loss's curvature weight: 1 for squares,
# max s(1-s) = 1/4 for the logistic loss, 1/2 for softmax cross-entropy.
_CURVATURE_BOUND = {"least_squares": 1.0, "ridge": 1.0, "logistic": 0.25, "softmax": 0.5}


class Optimum(NamedTuple):
    """Exact minimiser ``w_star`` and minimum ``f_star`` (float64) of a Problem.

    ``method`` names the solver, ``grad_norm`` is ||grad f(w*)||_2 and
    ``from_cache`` says whether the value was read from the on-disk cache.
    """

    w_star: np.ndarray
    f_star: float
    method: str
    grad_norm: float
    from_cache: bool


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A convex objective over data (X, y); build it with :func:`make_problem`.

    The objective is a mean over the rows of X (see ``_objectives`` for the exact
    formulas). ``loss``, ``grad`` and ``predict`` take the data as arguments so
    that the same problem evaluates mini-batches; with ``xp=jax.numpy`` they are
    pure and jittable, with ``xp=numpy`` or ``cupy`` they run on those arrays.

    Hashing and equality are by identity (``eq=False``), so a Problem can be a
    static argument of ``jax.jit``.
    """

    kind: str
    X: np.ndarray
    y: np.ndarray
    l2: float
    n_classes: int | None = None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def param_shape(self) -> tuple[int, ...]:
        """``(d,)``, or ``(d, k)`` for softmax."""
        if self.kind == "softmax":
            return (self.n_features, int(self.n_classes))
        return (self.n_features,)

    def init_params(self, dtype: Any = np.float32, xp: Any = np) -> Any:
        """Zeros of shape ``param_shape`` in namespace ``xp``."""
        return xp.zeros(self.param_shape, dtype=dtype)

    def loss(self, w: Any, X: Any, y: Any, xp: Any = jnp) -> Any:
        """Mean objective over the rows of (X, y) including the L2 term; a scalar."""
        return _LOSS[self.kind](w, X, y, self.l2, xp)

    def grad(self, w: Any, X: Any, y: Any, xp: Any = jnp) -> Any:
        """Closed-form gradient of :meth:`loss` with respect to ``w`` (same shape as ``w``)."""
        return _GRAD[self.kind](w, X, y, self.l2, xp)

    def predict(self, w: Any, X: Any, xp: Any = jnp) -> Any:
        """Regression values ``X w``, ``P(y=1)`` (logistic) or class probabilities (softmax)."""
        return _PREDICT[self.kind](w, X, xp)

    def full_loss(self, w: Any) -> float:
        """The objective on the whole data set, in float64 NumPy."""
        return float(self.loss(np.asarray(w, dtype=np.float64), self.X, self.y, xp=np))

    @functools.cached_property
    def _sigma_range(self) -> tuple[float, float]:
        s = singular_values(self.X)
        sigma_min = float(s[-1]) if s.size == self.n_features else 0.0
        return float(s[0]), sigma_min

    def smoothness(self) -> float:
        """Upper bound L on the Hessian's largest eigenvalue (gradient Lipschitz constant).

        ``L = c * sigma_max(X)^2 / n + l2`` with c = 1 (squares), 1/4 (logistic), 1/2 (softmax).
        Exact for quadratics.
        """
        sigma_max, _ = self._sigma_range
        return _CURVATURE_BOUND[self.kind] * sigma_max**2 / self.n_samples + self.l2

    def strong_convexity(self) -> float:
        """Global lower bound mu on the Hessian's smallest eigenvalue.

        Quadratics: ``sigma_min(X)^2 / n + l2`` (exact; sigma_min = 0 when n < d);
        logistic / softmax: ``l2`` (the loss curvature can approach 0 far from the origin).
        """
        if self.kind in ("least_squares", "ridge"):
            _, sigma_min = self._sigma_range
            return sigma_min**2 / self.n_samples + self.l2
        return self.l2

    def cache_key(self) -> str:
        """SHA-256 of the data and settings that define the optimum."""
        return _cache.problem_key(self.kind, self.X, self.y, self.l2, self.n_classes)

    def optimum(self, cache_dir: str | os.PathLike | None = None) -> Optimum:
        """Exact ``(w*, f*)`` in float64, read from the on-disk cache or solved and stored.

        Cache folder: ``cache_dir``, else ``$OPTISCALE_CACHE_DIR``, else the user
        cache (``~/.cache/optiscale_jax``); subfolder ``optima/``, one file per
        :meth:`cache_key`. Solvers: see ``optiscale_jax.problems._solvers``.
        """
        path = _cache.optimum_path(self.cache_key(), cache_dir)
        entry = _cache.load(path)
        if entry is not None and entry["w_star"].shape == self.param_shape:
            return Optimum(entry["w_star"], entry["f_star"], entry["method"],
                           entry["grad_norm"], True)
        result = self._solve()
        _cache.store(path, result.w_star, result.f_star, result.method, result.grad_norm)
        return Optimum(result.w_star, result.f_star, result.method, result.grad_norm, False)

    def _solve(self) -> _solvers.SolverResult:
        if self.kind == "least_squares":
            return _solvers.solve_least_squares(self.X, self.y)
        if self.kind == "ridge":
            return _solvers.solve_ridge(self.X, self.y, self.l2)
        if self.kind == "logistic":
            return _solvers.solve_logistic(self.X, self.y, self.l2)
        return _solvers.solve_softmax(self.X, self.y, self.l2, int(self.n_classes))


def make_problem(kind: str, X: Any, y: Any, l2: float = 0.0, *,
                 n_classes: int | None = None) -> Problem:
    """Build a validated :class:`Problem`.

    Args:
      kind: ``"least_squares"``, ``"ridge"``, ``"logistic"`` or ``"softmax"``.
      X: features, shape (n, d); stored as a float64 copy. Must be finite.
      y: targets, shape (n,): real values (least squares / ridge), labels in {0, 1}
        (logistic) or integer classes 0..k-1 (softmax). Must be finite.
      l2: the L2 coefficient lambda in ``(lambda/2) ||w||^2``; 0 for least squares,
        > 0 for ridge, >= 0 for logistic / softmax.
      n_classes: softmax only; defaults to ``max(y) + 1``.

    Raises:
      ValueError: naming the bad value and the fix.
    """
    kind = check_kind(kind)
    l2_value = check_l2(kind, l2)
    X64 = check_X(X)
    y_checked, k = check_y(kind, y, X64.shape[0], n_classes)
    X64.setflags(write=False)
    y_checked.setflags(write=False)
    return Problem(kind=kind, X=X64, y=y_checked, l2=l2_value, n_classes=k)
