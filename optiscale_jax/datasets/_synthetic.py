"""Synthetic regression data with an exactly prescribed spectrum.

X (n x d) is built as ``X = U diag(sigma) V^T`` with U (n x r) and V (d x r)
orthonormal columns, r = min(n, d). The singular values are
``sigma_i = sqrt(n * lambda_i)`` so that the least-squares Hessian
``X^T X / n`` has eigenvalues ``lambda_i`` in ``[1/kappa, 1]`` (L = 1,
mu = 1/kappa when n >= d): the condition number holds to rounding error.

Spectra (``lambda_1 = 1 >= ... >= lambda_r = 1/kappa``):
- ``exponential``: geometric, ``lambda_i = kappa^(-(i-1)/(r-1))``;
- ``linear``: evenly spaced between 1 and 1/kappa;
- ``clustered``: half of the values in ``[kappa^-0.05, 1]``, the other half in
  ``[1/kappa, kappa^-0.95]`` (geometric within each cluster).

Orthogonal factors:
- ``haar``: Q factor of the QR of a Gaussian matrix, signs fixed by diag(R)
  (Haar distributed); cost O(k r^2) for a k x r factor plus an O(n d r) product;
- ``dct``: a structured random orthogonal transform, three rounds of
  (random signs, random permutation, orthonormal DCT-II), applied with
  ``scipy.fft.dct`` in O(n d log) time and no n x d x r product. It has dense,
  delocalised singular vectors like a Haar matrix and makes d = 10,000 cheap.
- ``auto``: ``haar`` when ``n * d * r <= 2e8``, else ``dct``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psutil
import scipy.fft
import scipy.linalg

from optiscale_jax.datasets._metadata import build_metadata
from optiscale_jax.datasets._validation import check_dtype, check_positive_int, check_real

SPECTRUM_TYPES = ("exponential", "linear", "clustered")
ORTHOGONAL_METHODS = ("auto", "haar", "dct")
_DCT_ROUNDS = 3
_HAAR_MAX_WORK = 2e8  # n * d * r above which 'auto' uses the DCT transform


def _check_condition_type(condition_type: str) -> None:
    if condition_type not in SPECTRUM_TYPES:
        raise ValueError(f"unknown condition_type {condition_type!r}; choose one of: "
                         f"{', '.join(SPECTRUM_TYPES)}")


def hessian_spectrum(condition_type: str, kappa: float, r: int) -> np.ndarray:
    """Eigenvalues of X^T X / n, descending, from exactly 1 down to exactly 1/kappa."""
    _check_condition_type(condition_type)
    if r == 1:
        if kappa != 1.0:
            raise ValueError(f"a rank-1 matrix has condition number 1, not {kappa:g}; use at "
                             "least 2 samples and 2 features for condition_number > 1")
        return np.ones(1)
    t = np.linspace(0.0, 1.0, r)
    if condition_type == "exponential":
        lam = kappa ** (-t)
    elif condition_type == "linear":
        lam = 1.0 - (1.0 - 1.0 / kappa) * t
    else:
        top = r - r // 2
        spread = 0.05
        high = kappa ** (-spread * np.linspace(0.0, 1.0, top))
        low = kappa ** (-(1.0 - spread) - spread * np.linspace(0.0, 1.0, r - top))
        lam = np.concatenate([high, low])
    lam[0], lam[-1] = 1.0, 1.0 / kappa
    return lam


def _haar_columns(k: int, r: int, rng: np.random.Generator) -> np.ndarray:
    """k x r matrix with orthonormal columns, Haar distributed (QR of a Gaussian)."""
    q, R = scipy.linalg.qr(rng.standard_normal((k, r)), mode="economic", check_finite=False)
    q *= np.sign(np.diag(R))
    return q


def _random_dct_transform(A: np.ndarray, axis: int, rng: np.random.Generator) -> np.ndarray:
    """Apply T = prod_j C P_j D_j (orthogonal, size A.shape[axis]) along ``axis`` of A."""
    k = A.shape[axis]
    shape = [1, 1]
    shape[axis] = k
    for _ in range(_DCT_ROUNDS):
        A *= rng.choice(np.array([-1.0, 1.0]), size=k).reshape(shape)
        A = np.take(A, rng.permutation(k), axis=axis)
        A = scipy.fft.dct(A, type=2, norm="ortho", axis=axis, overwrite_x=True, workers=-1)
    return A


def _choose_method(method: str, n: int, d: int) -> str:
    if method not in ORTHOGONAL_METHODS:
        raise ValueError(f"unknown orthogonal method {method!r}; choose one of: "
                         f"{', '.join(ORTHOGONAL_METHODS)}")
    if method != "auto":
        return method
    return "haar" if float(n) * d * min(n, d) <= _HAAR_MAX_WORK else "dct"


def estimate_bytes(n: int, d: int, dtype: np.dtype, method: str) -> int:
    """Peak bytes of the construction (float64 work arrays; the cast copy fits in their space).

    ``dct``: each transform round holds the array, its permuted copy and the DCT output,
    3 n d float64 values. ``haar``: the Gaussian blocks and Q factors (2 (n + d) r values)
    and X. Measured process peaks (VmHWM, which adds ~0.12 GiB of interpreter and
    libraries): n = d = 10,000: 2.36 GiB for an estimate of 2.24 GiB; n = 20,000,
    d = 5,000: 2.36 GiB for 2.24 GiB; n = 5,000, d = 1,000: 0.24 GiB for 0.11 GiB.
    """
    r = min(n, d)
    nd = n * d
    if method == "haar":
        values = 2 * (n + d) * r + nd
    else:
        values = 3 * nd
    cast = nd * dtype.itemsize if dtype != np.float64 else 0
    return int(max(8 * values, 8 * nd + cast) + 8 * (n + 2 * d))


def check_memory(needed: int, what: str) -> None:
    """Raise MemoryError before allocating when ``needed`` exceeds the available memory."""
    available = int(psutil.virtual_memory().available)
    if needed > available:
        raise MemoryError(
            f"{what} needs about {needed / 2**30:.2f} GiB but only {available / 2**30:.2f} GiB "
            "is available (psutil.virtual_memory().available); reduce n_samples or n_features "
            "(the construction works in float64 whatever the output dtype)")


def build_matrix(n: int, d: int, eigenvalues: np.ndarray, rng: np.random.Generator,
                 method: str) -> np.ndarray:
    """``X = U diag(sqrt(n * eigenvalues)) V^T`` in float64 (see the module docstring)."""
    r = min(n, d)
    sigma = np.sqrt(n * eigenvalues)
    if method == "haar":
        U = _haar_columns(n, r, rng)
        V = _haar_columns(d, r, rng)
        U *= sigma
        return U @ V.T
    # Rows of Vt: the first r rows of T_d^T, i.e. T_d applied to the unit vectors e_1..e_r.
    Vt = np.zeros((r, d))
    Vt[np.arange(r), np.arange(r)] = 1.0
    Vt = _random_dct_transform(Vt, axis=1, rng=rng)
    Vt *= sigma[:, None]
    if n == r:
        X = Vt
    else:
        X = np.zeros((n, d))
        X[:r] = Vt
        del Vt
    # X = T_n [diag(sigma) V^T; 0]: the left factor U is the first r columns of T_n.
    return _random_dct_transform(X, axis=0, rng=rng)


def generate_highdim_regression(n_samples: int, n_features: int, condition_number: float = 100.0,
                                n_informative: int | None = None, noise: float = 0.1,
                                seed: int = 0, dtype: Any = np.float64, *,
                                condition_type: str = "exponential",
                                orthogonal: str = "auto"):
    """Linear-regression data ``y = X w_true + noise * eps`` with a prescribed spectrum.

    Args:
      n_samples, n_features: n and d (n < d is allowed: X^T X is then singular,
        ``condition_number`` is inf and ``condition_number_nonzero`` is the requested value).
      condition_number: kappa >= 1 of X^T X / n (over the nonzero spectrum when n < d).
      n_informative: number of nonzero entries of ``w_true`` (N(0, 1) values at random
        positions), 1 <= n_informative <= n_features; default ``max(1, d // 10)``.
      noise: standard deviation of the Gaussian noise added to y (>= 0).
      seed: seed of every random choice.
      dtype: floating dtype of the returned X, y and w_true (the construction is float64).
      condition_type: ``exponential``, ``linear`` or ``clustered`` spectrum.
      orthogonal: ``auto``, ``haar`` or ``dct`` (see the module docstring).

    Returns:
      ``X, y, true_params, metadata``. The spectral metadata comes from the
      construction's singular values (float64); when ``dtype`` is narrower,
      ``metadata["cast_perturbation_bound"] = u ||X||_F >= ||X_cast - X||_F`` (u the unit
      roundoff) bounds how far each singular value of the returned X can move (Weyl).

    Raises:
      ValueError: bad sizes, condition number < 1, n_informative out of range.
      MemoryError: before allocating, when the estimate exceeds the available memory.
    """
    n = check_positive_int(n_samples, "n_samples")
    d = check_positive_int(n_features, "n_features")
    kappa = check_real(condition_number, "condition_number", minimum=1.0,
                       hint="a condition number is a ratio lambda_max / lambda_min >= 1")
    if n_informative is None:
        n_informative = max(1, d // 10)
    k = check_positive_int(n_informative, "n_informative")
    if k > d:
        raise ValueError(f"n_informative={k} exceeds n_features={d}; use n_informative <= {d}")
    noise = check_real(noise, "noise", minimum=0.0)
    dtype = check_dtype(dtype)
    _check_condition_type(condition_type)
    method = _choose_method(orthogonal, n, d)
    needed = estimate_bytes(n, d, dtype, method)
    check_memory(needed, f"generate_highdim_regression(n_samples={n}, n_features={d})")

    rng = np.random.default_rng(seed)
    r = min(n, d)
    eigenvalues = hessian_spectrum(condition_type, kappa, r)
    X = build_matrix(n, d, eigenvalues, rng, method)
    w_true = np.zeros(d)
    support = np.sort(rng.choice(d, size=k, replace=False))
    w_true[support] = rng.standard_normal(k)
    y = X[:, support] @ w_true[support] + noise * rng.standard_normal(n)

    sigma = np.sqrt(n * eigenvalues)
    metadata = build_metadata(X, n_test=0, task="regression", dtype=dtype, sigma=sigma,
                              source=f"synthetic: X = U diag(sigma) V^T, {condition_type} "
                                     f"spectrum, {method} orthogonal factors, seed {seed}")
    X_out = X.astype(dtype, copy=False)
    if dtype != np.float64:
        # |fl(x) - x| <= u |x| entrywise, so ||X_cast - X||_F <= u ||X||_F = u ||sigma||_2.
        metadata["cast_perturbation_bound"] = float(
            np.finfo(dtype).eps / 2 * np.sqrt(np.sum(sigma**2)))
    metadata.update({
        "name": "highdim_regression",
        "requested_condition_number": kappa,
        "condition_type": condition_type,
        "orthogonal_factors": method,
        "n_informative": k,
        "informative_features": support.tolist() if k <= 1000 else None,
        "noise": noise,
        "estimated_bytes": needed,
        "spectrum_source": "construction (singular values set exactly, float64)",
    })
    return X_out, y.astype(dtype), w_true.astype(dtype), metadata


def generate_extreme_condition_data(target_kappa: float, condition_type: str = "exponential",
                                    n_samples: int = 1000, n_features: int = 100, seed: int = 0,
                                    *, noise: float = 0.01, dtype: Any = np.float64,
                                    orthogonal: str = "auto"):
    """Regression data whose Hessian X^T X / n has condition number ``target_kappa``.

    Built like :func:`generate_highdim_regression` in float64 (requires
    n_samples >= n_features so the Hessian is nonsingular), then *measured*:
    ``metadata["actual_kappa"]`` is ``(sigma_max / sigma_min)^2`` from an SVD
    of the returned X in float64. ``y = X w_true + noise * eps`` with
    ``w_true ~ N(0, I / d)``.

    Returns:
      ``X, y, metadata``.
    """
    n = check_positive_int(n_samples, "n_samples")
    d = check_positive_int(n_features, "n_features")
    kappa = check_real(target_kappa, "target_kappa", minimum=1.0,
                       hint="a condition number is a ratio lambda_max / lambda_min >= 1")
    if n < d:
        raise ValueError(f"n_samples={n} < n_features={d} makes X^T X singular (infinite "
                         "condition number); use n_samples >= n_features, or "
                         "generate_highdim_regression for n < d")
    _check_condition_type(condition_type)
    noise = check_real(noise, "noise", minimum=0.0)
    dtype = check_dtype(dtype)
    method = _choose_method(orthogonal, n, d)
    needed = estimate_bytes(n, d, dtype, method) + 8 * n * d  # + the SVD's copy
    check_memory(needed, f"generate_extreme_condition_data(n_samples={n}, n_features={d})")

    rng = np.random.default_rng(seed)
    X = build_matrix(n, d, hessian_spectrum(condition_type, kappa, d), rng, method)
    w_true = rng.standard_normal(d) / np.sqrt(d)
    y = X @ w_true + noise * rng.standard_normal(n)
    X_out = X.astype(dtype, copy=False)
    metadata = build_metadata(X_out, n_test=0, task="regression", dtype=dtype, cache=False,
                              source=f"synthetic: X = U diag(sigma) V^T, {condition_type} "
                                     f"spectrum, {method} orthogonal factors, seed {seed}")
    metadata.update({
        "name": "extreme_condition",
        "target_kappa": kappa,
        "actual_kappa": metadata["condition_number"],
        "relative_kappa_error": abs(metadata["condition_number"] - kappa) / kappa,
        "condition_type": condition_type,
        "orthogonal_factors": method,
        "noise": noise,
        "spectrum_source": "measured (SVD of the returned X in float64)",
    })
    return X_out, y.astype(dtype), metadata
