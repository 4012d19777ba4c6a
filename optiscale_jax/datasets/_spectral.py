"""Spectral metadata: the one definition of condition number used everywhere.

The condition number of a data matrix X (n rows, d columns) in this project is
the condition number of the least-squares Hessian

    H = X^T X / n,        kappa(H) = lambda_max(H) / lambda_min(H) = (sigma_max / sigma_min)^2,

where sigma are the singular values of X. It is infinite when H is singular
(rank(X) < d, which includes every n < d). Over the nonzero spectrum,
``condition_number_nonzero = (sigma_max / sigma_min_nonzero)^2``.

Rank uses NumPy's ``matrix_rank`` tolerance: a singular value counts as zero
when ``sigma <= sigma_max * max(n, d) * eps(float64)``.

The smoothness constant of the least-squares objective 1/(2n)||Xw - y||^2 is
``L = sigma_max^2 / n`` and its strong-convexity constant is
``mu = sigma_min^2 / n`` (0 when singular).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_EPS64 = float(np.finfo(np.float64).eps)


def rank_tolerance(sigma_max: float, n_samples: int, n_features: int) -> float:
    """Absolute threshold below which a singular value of X counts as zero.

    ``tol = sigma_max * max(n, d) * eps(float64)`` (NumPy's ``matrix_rank`` default).
    """
    return float(sigma_max) * max(int(n_samples), int(n_features)) * _EPS64


def metadata_from_singular_values(
    singular_values: np.ndarray, n_samples: int, n_features: int
) -> dict[str, Any]:
    """Spectral metadata from the singular values of an (n, d) matrix X.

    Args:
      singular_values: the ``min(n, d)`` singular values of X (any order), float64.
      n_samples: n, the number of rows of X.
      n_features: d, the number of columns of X.

    Returns:
      dict with ``condition_number`` (kappa of X^T X / n; ``inf`` when singular),
      ``condition_number_nonzero`` (over singular values above the rank tolerance),
      ``rank``, ``L`` (= sigma_max^2 / n), ``mu`` (= sigma_min^2 / n, 0 when singular),
      ``sigma_max``, ``sigma_min``, ``sigma_min_nonzero`` and ``rank_tolerance``.
    """
    n_samples, n_features = int(n_samples), int(n_features)
    if n_samples < 1 or n_features < 1:
        raise ValueError(
            f"spectral metadata needs n_samples >= 1 and n_features >= 1, got "
            f"n_samples={n_samples}, n_features={n_features}")
    s = np.sort(np.abs(np.asarray(singular_values, dtype=np.float64)))[::-1]
    if not np.all(np.isfinite(s)):
        raise ValueError("singular values contain NaN or Inf; the data matrix must be finite")
    sigma_max = float(s[0]) if s.size else 0.0
    tol = rank_tolerance(sigma_max, n_samples, n_features)
    nonzero = s[s > tol]
    rank = int(nonzero.size)
    sigma_min = float(s[-1]) if s.size == n_features else 0.0  # n < d: d - n zero values
    sigma_min_nonzero = float(nonzero[-1]) if rank else 0.0
    full_rank = rank == n_features
    kappa = (sigma_max / sigma_min) ** 2 if full_rank else math.inf
    kappa_nonzero = (sigma_max / sigma_min_nonzero) ** 2 if rank else math.inf
    return {
        "condition_number": float(kappa),
        "condition_number_nonzero": float(kappa_nonzero),
        "rank": rank,
        "singular": not full_rank,
        "L": sigma_max**2 / n_samples,
        "mu": (sigma_min**2 / n_samples) if full_rank else 0.0,
        "sigma_max": sigma_max,
        "sigma_min": sigma_min if full_rank else 0.0,
        "sigma_min_nonzero": sigma_min_nonzero,
        "rank_tolerance": tol,
        "condition_number_definition": (
            "kappa(X^T X / n) = (sigma_max/sigma_min)^2; inf when rank(X) < n_features; "
            "rank counts sigma > sigma_max*max(n,d)*eps64"),
    }


def singular_values(X: Any) -> np.ndarray:
    """Singular values of X computed in float64 (LAPACK gesdd via NumPy), descending.

    Columns that are exactly zero contribute exactly zero singular values, so they
    are dropped before the SVD (116 pixel columns of the MNIST test split) and zeros appended.
    """
    X64 = np.asarray(X, dtype=np.float64)
    if X64.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {X64.shape}")
    if X64.size == 0:
        raise ValueError(f"X is empty (shape {X64.shape}); need at least one row and one column")
    if not np.all(np.isfinite(X64)):
        raise ValueError("X contains NaN or Inf; clean the data before computing its spectrum")
    nonzero_columns = np.any(X64 != 0.0, axis=0)
    r = min(X64.shape)
    if nonzero_columns.all():
        return np.linalg.svd(X64, compute_uv=False)
    s = np.zeros(r)
    if nonzero_columns.any():
        core = np.linalg.svd(X64[:, nonzero_columns], compute_uv=False)
        s[:core.size] = core
    return s


def spectral_metadata(X: Any) -> dict[str, Any]:
    """Spectral metadata of a data matrix X (n, d), measured by an SVD in float64.

    See the module docstring for the definitions (condition number of the
    least-squares Hessian X^T X / n, rank tolerance, L and mu).
    """
    X64 = np.asarray(X, dtype=np.float64)
    s = singular_values(X64)
    return metadata_from_singular_values(s, X64.shape[0], X64.shape[1])
