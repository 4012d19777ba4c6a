"""The Problem: data plus a pure objective, its gradient, predictions and exact optimum."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from optiscale_jax.datasets import Factorization, cached_singular_values, spectrum_key
from optiscale_jax.problems import _cache, solvers
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
    """Minimiser ``w_star`` and minimum ``f_star`` (float64) of a Problem, with its certificate.

    ``method`` names the solver, ``grad_norm`` is ||grad f(w*)||_2, ``from_cache`` says
    whether the value was read from the on-disk cache. ``mu`` is the strong-convexity
    constant the solver knew (0: none) and ``gap_bound = grad_norm^2 / (2 mu)`` bounds
    ``f(w_star) - min f`` (inf when mu = 0).
    """

    w_star: np.ndarray
    f_star: float
    method: str
    grad_norm: float
    from_cache: bool
    mu: float = 0.0
    gap_bound: float = float("inf")


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A convex objective over data (X, y); build it with :func:`make_problem`.

    The objective is a mean over the rows of X (see ``_objectives`` for the exact
    formulas). ``loss``, ``grad`` and ``predict`` take the data as arguments so
    that the same problem evaluates mini-batches; with ``xp=jax.numpy`` they are
    pure and jittable, with ``xp=numpy`` or ``cupy`` they run on those arrays.

    ``X`` is the caller's float32 / float64 array itself (a read-only view, no copy) when
    it is C-contiguous; ``singular_values`` (descending, float64) is X's spectrum when the
    data's construction knows it (generators), so no SVD is ever taken of such data;
    ``recipe`` is a string naming how the data was generated (cache keys use it instead of
    hashing every byte); ``factorization`` (generated data) gives quadratics their exact
    optimum without a solve.

    Hashing and equality are by identity (``eq=False``), so a Problem can be a
    static argument of ``jax.jit``.
    """

    kind: str
    X: np.ndarray
    y: np.ndarray
    l2: float
    n_classes: int | None = None
    singular_values: np.ndarray | None = dataclasses.field(default=None, repr=False)
    recipe: str | None = None
    factorization: Factorization | None = dataclasses.field(default=None, repr=False)

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
    def fingerprint(self) -> str:
        """Key of the data (hex): the recipe plus a cheap sample when there is a recipe,
        else SHA-256 of every byte of X and y (computed once per Problem)."""
        return _cache.data_fingerprint(self.X, self.y, self.recipe)

    def spectrum(self, cache_dir: str | os.PathLike | None = None) -> np.ndarray:
        """Singular values of X, descending (float64): the construction's when known, else one
        SVD per data set, cached on disk under ``spectra/`` by :attr:`fingerprint`."""
        if self.singular_values is not None:
            return np.asarray(self.singular_values, np.float64)
        return self._measured_spectrum(cache_dir)

    @functools.cached_property
    def _spectrum_key(self) -> str:
        """The spectra cache's key of X (the loaders' key too): hashed once per Problem."""
        return spectrum_key(self.X)

    def _measured_spectrum(self, cache_dir: str | os.PathLike | None) -> np.ndarray:
        s = cached_singular_values(self.X, key=self._spectrum_key, cache_dir=cache_dir)
        return np.sort(s)[::-1]

    @functools.cached_property
    def _sigma_range(self) -> tuple[float, float]:
        s = self.spectrum()
        sigma_min = float(s[-1]) if s.size == self.n_features else 0.0
        return float(s[0]), sigma_min

    def smoothness(self) -> float:
        """Upper bound L on the Hessian's largest eigenvalue (gradient Lipschitz constant).

        ``L = c * sigma_max(X)^2 / n + l2`` with c = 1 (squares), 1/4 (logistic), 1/2 (softmax).
        Exact for quadratics. From :meth:`spectrum` (no SVD for generated data).
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
        """Key of the optimum: the data's :attr:`fingerprint` plus the problem's settings."""
        return _cache.problem_key(self.kind, self.fingerprint, self.X.shape, self.l2,
                                  self.n_classes)

    def optimum(self, cache_dir: str | os.PathLike | None = None) -> Optimum:
        """Certified ``(w*, f*)`` in float64, read from the on-disk cache or solved and stored.

        Cache folder: ``cache_dir``, else ``$OPTISCALE_CACHE_DIR``, else the user
        cache (``~/.cache/optiscale_jax``); subfolder ``optima/``, one file per
        :meth:`cache_key`. Solvers and certificates: ``optiscale_jax.problems.solvers``.
        """
        path = _cache.optimum_path(self.cache_key(), cache_dir)
        entry = _cache.load(path)
        if entry is not None and entry.w_star.shape == self.param_shape:
            return Optimum(*entry[:4], True, *entry[4:])
        result = self._solve()
        entry = _cache.Entry(result.w_star, result.f_star, result.method, result.grad_norm,
                             result.mu, result.gap_bound)
        _cache.store(path, entry)
        return Optimum(*entry[:4], False, *entry[4:])

    def _quadratic_mu(self) -> float:
        """sigma_min^2 / n + l2 when the spectrum is known without an SVD, else l2."""
        if self.singular_values is None:
            return self.l2
        return self.strong_convexity()

    def _solve(self) -> solvers.SolverResult:
        if self.kind in ("least_squares", "ridge"):   # float32 X is read in float64 blocks
            if self.factorization is not None:
                return solvers.solve_from_factors(self.factorization, self.X, self.y,
                                                   self.l2, mu=self._quadratic_mu())
            if self.kind == "least_squares":
                return solvers.solve_least_squares(self.X, self.y, mu=self._quadratic_mu())
            return solvers.solve_ridge(self.X, self.y, self.l2, mu=self._quadratic_mu())
        X64 = np.asarray(self.X, dtype=np.float64)   # the float64 objective (a copy if float32)
        if self.kind == "logistic":
            return solvers.solve_logistic(X64, self.y, self.l2)
        return solvers.solve_softmax(X64, self.y, self.l2, int(self.n_classes),
                                      X_products=np.asarray(self.X, np.float32))


def make_problem(kind: str, X: Any, y: Any, l2: float = 0.0, *,
                 n_classes: int | None = None, singular_values: Any = None,
                 recipe: str | None = None,
                 factorization: Factorization | None = None) -> Problem:
    """Build a validated :class:`Problem`.

    Args:
      kind: ``"least_squares"``, ``"ridge"``, ``"logistic"`` or ``"softmax"``.
      X: features, shape (n, d). A C-contiguous float32 / float64 array is kept as a
        read-only view (no copy); anything else is converted once to float64. Must be finite.
      y: targets, shape (n,): real values (least squares / ridge), labels in {0, 1}
        (logistic) or integer classes 0..k-1 (softmax). Must be finite.
      l2: the L2 coefficient lambda in ``(lambda/2) ||w||^2``; 0 for least squares,
        > 0 for ridge, >= 0 for logistic / softmax.
      n_classes: softmax only; defaults to ``max(y) + 1``.
      singular_values: X's singular values when known from its construction (e.g.
        ``metadata["singular_values"]`` of the generators); min(n, d) values.
      recipe: how X and y were generated (e.g. ``metadata["recipe"]``), used for cache keys.
      factorization: the generator's ``metadata["factorization"]`` (X = U diag(s) V^T):
        exact optima for least squares / ridge, and the spectrum.

    Raises:
      ValueError: naming the bad value and the fix.
    """
    kind = check_kind(kind)
    l2_value = check_l2(kind, l2)
    X_view = check_X(X)
    y_checked, k = check_y(kind, y, X_view.shape[0], n_classes)
    y_checked.setflags(write=False)
    if factorization is not None and not isinstance(factorization, Factorization):
        raise ValueError("factorization must be the generator's metadata['factorization'] "
                         f"(a datasets.Factorization), got {type(factorization).__name__}")
    if singular_values is None and factorization is not None:
        singular_values = factorization.singular_values
    sigma = None
    if singular_values is not None:
        sigma = np.sort(np.asarray(singular_values, np.float64).ravel())[::-1]
        if sigma.size != min(X_view.shape) or not np.all(np.isfinite(sigma)) or sigma[-1] < 0:
            raise ValueError(f"singular_values must be {min(X_view.shape)} finite values >= 0 "
                             f"(min(n, d) for X of shape {X_view.shape}), got {sigma.size}; "
                             "pass the generator's metadata['singular_values'] or None")
        sigma.setflags(write=False)
    if recipe is not None and not isinstance(recipe, str):
        raise ValueError(f"recipe must be a string or None, got {type(recipe).__name__}")
    return Problem(kind=kind, X=X_view, y=y_checked, l2=l2_value, n_classes=k,
                   singular_values=sigma, recipe=recipe, factorization=factorization)
