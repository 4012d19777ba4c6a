"""The Problem contract: what the engine, the reference loops, profiling and the benchmark
need from an objective over data (X, y), as a structural ``typing.Protocol``.

:class:`optiscale_jax.problems.Problem` satisfies it; so does any object with the same
attributes and methods (``isinstance(obj, ProblemLike)`` checks the names, not the types).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ProblemLike(Protocol):
    """A convex objective ``f(w) = mean_i loss(w; x_i, y_i) + (l2/2) ||w||^2`` over data (X, y).

    Attributes:
      kind: ``"least_squares"``, ``"ridge"``, ``"logistic"`` or ``"softmax"`` (selects the
        engine's kernels and the exact solver).
      X: samples, shape (n, d), float32 or float64 host array (read-only).
      y: targets, shape (n,): floats, or int64 class labels for softmax.
      l2: the L2 coefficient (>= 0).
      n_classes: softmax's k (None otherwise).
    """

    kind: str
    X: np.ndarray
    y: np.ndarray
    l2: float
    n_classes: int | None

    @property
    def n_samples(self) -> int:
        """n, the rows of X."""
        ...

    @property
    def n_features(self) -> int:
        """d, the columns of X."""
        ...

    @property
    def param_shape(self) -> tuple[int, ...]:
        """``(d,)``, or ``(d, k)`` for softmax."""
        ...

    def init_params(self, dtype: Any = np.float32, xp: Any = np) -> Any:
        """Zeros of ``param_shape`` in namespace ``xp``."""
        ...

    def loss(self, w: Any, X: Any, y: Any, xp: Any = ...) -> Any:
        """Mean objective over the rows (X, y) including the L2 term (a scalar)."""
        ...

    def grad(self, w: Any, X: Any, y: Any, xp: Any = ...) -> Any:
        """Gradient of :meth:`loss` with respect to ``w`` (same shape as ``w``)."""
        ...

    def predict(self, w: Any, X: Any, xp: Any = ...) -> Any:
        """Regression values, P(y = 1) (logistic) or class probabilities (softmax)."""
        ...

    def smoothness(self) -> float:
        """L, an upper bound on the Hessian's largest eigenvalue."""
        ...
