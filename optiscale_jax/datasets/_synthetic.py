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

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import psutil
import scipy.fft
import scipy.linalg

from optiscale_jax.datasets._aligned import empty_aligned
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


Rounds = list[tuple[np.ndarray, np.ndarray]]


def _draw_rounds(k: int, rng: np.random.Generator) -> Rounds:
    """The random signs and permutations of T = prod_j C P_j D_j (size k), drawn in order."""
    rounds = []
    for _ in range(_DCT_ROUNDS):
        signs = rng.choice(np.array([-1.0, 1.0]), size=k)
        rounds.append((signs, rng.permutation(k)))
    return rounds


def _apply_rounds(A: np.ndarray, axis: int, rounds: Rounds) -> np.ndarray:
    """Apply T along ``axis`` of the float64 block A (A is overwritten)."""
    shape = [1, 1]
    shape[axis] = A.shape[axis]
    for signs, permutation in rounds:
        A *= signs.reshape(shape)
        A = np.take(A, permutation, axis=axis)
        A = scipy.fft.dct(A, type=2, norm="ortho", axis=axis, overwrite_x=True, workers=-1)
    return A


def _choose_method(method: str, n: int, d: int) -> str:
    if method not in ORTHOGONAL_METHODS:
        raise ValueError(f"unknown orthogonal method {method!r}; choose one of: "
                         f"{', '.join(ORTHOGONAL_METHODS)}")
    if method != "auto":
        return method
    return "haar" if float(n) * d * min(n, d) <= _HAAR_MAX_WORK else "dct"


_BLOCK_BYTES = 16 * 2**20   # float64 work block of the DCT construction


def _block_width(length: int) -> int:
    """Columns (or rows) per float64 work block of ``length`` values each."""
    return max(1, _BLOCK_BYTES // (8 * max(length, 1)))


def estimate_bytes(n: int, d: int, dtype: np.dtype, method: str) -> int:
    """Peak bytes the construction allocates, output included.

    ``dct``: the output X (n d values of ``dtype``), the scaled right factor V^T (r d
    float64 values) and the work blocks: a transform round holds a block, its permuted copy
    and the DCT output, 3 x 16 MiB at most, for the rows of V^T and the columns of X; plus
    y (float64 while built) and w. ``haar``: the Gaussian blocks and Q factors (2 (n + d) r
    float64 values), the float64 X, and the cast output when ``dtype`` is narrower.
    """
    r = min(n, d)
    nd = n * d
    small = 8 * (3 * n + 3 * d)
    if method == "haar":
        cast = nd * dtype.itemsize if dtype != np.float64 else 0
        return int(max(8 * 2 * (n + d) * r + 8 * nd, 8 * nd + cast) + small)
    blocks = 3 * 8 * max(n * min(d, _block_width(n)), d * min(r, _block_width(d)))
    return int(nd * dtype.itemsize + 8 * r * d + blocks + small)


def check_memory(needed: int, what: str) -> None:
    """Raise MemoryError before allocating when ``needed`` exceeds the available memory."""
    available = int(psutil.virtual_memory().available)
    if needed > available:
        raise MemoryError(
            f"{what} needs about {needed / 2**30:.2f} GiB but only {available / 2**30:.2f} GiB "
            "is available (psutil.virtual_memory().available); reduce n_samples or n_features "
            "(the output is stored in the requested dtype; float64 work is done in blocks)")


class Factorization(NamedTuple):
    """``X = U diag(singular_values) V^T`` of generated data, the factors applied implicitly.

    left_transpose: y (n,) -> U^T y (r,); right: z (r,) -> V z (d,); r = min(n, d). Exact
    (to float64 rounding) for the float64 matrix the generator built.
    """
    singular_values: np.ndarray
    left_transpose: Callable[[np.ndarray], np.ndarray]
    right: Callable[[np.ndarray], np.ndarray]


def _transpose_rounds(v: np.ndarray, rounds: Rounds) -> np.ndarray:
    """T^T v for T = prod C P_j D_j: the rounds undone in reverse (idct, inverse permutation,
    signs)."""
    v = np.array(v, dtype=np.float64)
    for signs, permutation in reversed(rounds):
        v = scipy.fft.idct(v, type=2, norm="ortho")
        undone = np.empty_like(v)
        undone[permutation] = v
        v = undone * signs
    return v


def factorization(construction: Construction, n: int, d: int) -> Factorization:
    """The implicit factors of the matrix ``build_matrix(n, d, construction)``."""
    r = min(n, d)
    if construction.method == "haar":
        U, V = construction.factors
        return Factorization(construction.sigma, lambda y: U.T @ y, lambda z: V @ z)
    rounds_d, rounds_n = construction.factors

    def right(z: np.ndarray) -> np.ndarray:
        padded = np.zeros((d, 1))
        padded[:r, 0] = z
        return _apply_rounds(padded, 0, rounds_d)[:, 0]

    return Factorization(construction.sigma,
                         lambda y: _transpose_rounds(y, rounds_n)[:r], right)


class Construction(NamedTuple):
    """The randomness of ``X = U diag(sigma) V^T``, drawn before any large allocation."""
    method: str
    sigma: np.ndarray
    factors: Any          # (U, V) for haar; (rounds over d, rounds over n) for dct


def draw_construction(n: int, d: int, eigenvalues: np.ndarray, rng: np.random.Generator,
                      method: str) -> Construction:
    """The factors (haar) or transform randomness (dct) of the matrix, in the stream order."""
    sigma = np.sqrt(n * eigenvalues)
    r = min(n, d)
    if method == "haar":
        U = _haar_columns(n, r, rng)
        V = _haar_columns(d, r, rng)
        return Construction(method, sigma, (U, V))
    return Construction(method, sigma, (_draw_rounds(d, rng), _draw_rounds(n, rng)))


def _scaled_right_factor(construction: Construction, d: int) -> np.ndarray:
    """``diag(sigma) V^T`` (r x d, float64): row i is T_d applied to e_i, in row blocks."""
    sigma = construction.sigma
    r = sigma.size
    Vt = np.empty((r, d))
    step = _block_width(d)
    for start in range(0, r, step):
        rows = np.arange(start, min(r, start + step))
        block = np.zeros((rows.size, d))
        block[np.arange(rows.size), rows] = 1.0
        Vt[rows] = _apply_rounds(block, 1, construction.factors[0]) * sigma[rows, None]
    return Vt


def build_matrix(n: int, d: int, construction: Construction, dtype: Any = np.float64,
                 on_columns: Any = None) -> np.ndarray:
    """``X = U diag(sigma) V^T``, computed in float64 and stored once in ``dtype`` (aligned).

    dct: column blocks of ``T_n [diag(sigma) V^T; 0]``, each transformed in float64 and
    cast into the output, so no full-size float64 matrix exists when ``dtype`` is narrower.
    ``on_columns(start, block)`` sees every float64 column block (e.g. to form y exactly).
    """
    out = empty_aligned((n, d), dtype)
    if construction.method == "haar":
        U, V = construction.factors
        X = (U * construction.sigma) @ V.T
        if on_columns is not None:
            on_columns(0, X)
        out[...] = X
        return out
    Vt = _scaled_right_factor(construction, d)
    r = Vt.shape[0]
    step = _block_width(n)
    for start in range(0, d, step):
        block = np.zeros((n, min(step, d - start)))
        block[:r] = Vt[:, start:start + step]
        block = _apply_rounds(block, 0, construction.factors[1])
        if on_columns is not None:
            on_columns(start, block)
        out[:, start:start + block.shape[1]] = block
    return out


# Over 60 lines: most of it is the docstring (every argument) and the metadata record.
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
    construction = draw_construction(n, d, eigenvalues, rng, method)
    w_true = np.zeros(d)
    support = np.sort(rng.choice(d, size=k, replace=False))
    w_true[support] = rng.standard_normal(k)
    X, signal = _matrix_and_signal(n, d, construction, dtype, support, w_true[support])
    y = signal + noise * rng.standard_normal(n)

    sigma = construction.sigma
    metadata = build_metadata(X, n_test=0, task="regression", dtype=dtype, sigma=sigma,
                              source=f"synthetic: X = U diag(sigma) V^T, {condition_type} "
                                     f"spectrum, {method} orthogonal factors, seed {seed}")
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
        "singular_values": sigma,
        "factorization": factorization(construction, n, d),
        "recipe": (f"generate_highdim_regression(n_samples={n}, n_features={d}, "
                   f"condition_number={kappa!r}, n_informative={k}, noise={noise!r}, "
                   f"seed={seed}, dtype={dtype.name}, condition_type={condition_type}, "
                   f"orthogonal={method})"),
        "spectrum_source": "construction (singular values set exactly, float64)",
    })
    return X, y.astype(dtype), w_true.astype(dtype), metadata


def _matrix_and_signal(n: int, d: int, construction: Construction, dtype: np.dtype,
                       columns: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X in ``dtype`` and the float64 signal ``X[:, columns] @ weights`` of the float64 X.

    float64: the product on the finished X. Narrower dtypes: accumulated from the float64
    column blocks as they are built (so the targets are those of the exact construction).
    """
    if dtype == np.float64:
        X = build_matrix(n, d, construction, dtype)
        return X, (X @ weights if columns.size == d else X[:, columns] @ weights)
    signal = np.zeros(n)

    def accumulate(start: int, block: np.ndarray) -> None:
        inside = (columns >= start) & (columns < start + block.shape[1])
        if inside.any():
            signal[:] += block[:, columns[inside] - start] @ weights[inside]

    return build_matrix(n, d, construction, dtype, accumulate), signal


# Over 60 lines: most of it is the docstring and the metadata record.
def generate_extreme_condition_data(target_kappa: float, condition_type: str = "exponential",
                                    n_samples: int = 1000, n_features: int = 100, seed: int = 0,
                                    *, noise: float = 0.01, dtype: Any = np.float64,
                                    orthogonal: str = "auto"):
    """Regression data whose Hessian X^T X / n has condition number ``target_kappa``.

    Built like :func:`generate_highdim_regression` in float64 (requires
    n_samples >= n_features so the Hessian is nonsingular). ``metadata["actual_kappa"]``
    is ``(sigma_max / sigma_min)^2`` of the returned X: from the construction's singular
    values for float64 output (no SVD; ``metadata["singular_values"]``), measured by an SVD
    in float64 after the cast for a narrower ``dtype`` (the cast moves sigma_min by up to
    ``u ||X||_F``, which changes kappa near 1/u). ``y = X w_true + noise * eps`` with
    ``w_true ~ N(0, I / d)``, from the float64 X.

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
    needed = estimate_bytes(n, d, dtype, method)
    if dtype != np.float64:
        needed += 8 * n * d + 8 * d * d      # the measuring SVD's float64 copy and work
    check_memory(needed, f"generate_extreme_condition_data(n_samples={n}, n_features={d})")

    rng = np.random.default_rng(seed)
    construction = draw_construction(n, d, hessian_spectrum(condition_type, kappa, d), rng,
                                     method)
    w_true = rng.standard_normal(d) / np.sqrt(d)
    X, signal = _matrix_and_signal(n, d, construction, dtype, np.arange(d), w_true)
    y = signal + noise * rng.standard_normal(n)
    narrower = dtype != np.float64
    metadata = build_metadata(X, n_test=0, task="regression", dtype=dtype, cache=False,
                              sigma=None if narrower else construction.sigma,
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
        "recipe": (f"generate_extreme_condition_data(target_kappa={kappa!r}, condition_type="
                   f"{condition_type}, n_samples={n}, n_features={d}, seed={seed}, "
                   f"noise={noise!r}, dtype={dtype.name}, orthogonal={method})"),
        "spectrum_source": ("measured (SVD of the returned X in float64: the cast moves "
                            "sigma_min)" if narrower else
                            "construction (singular values set exactly, float64)"),
    })
    metadata["factorization"] = factorization(construction, n, d)
    if not narrower:
        metadata["singular_values"] = construction.sigma
    return X, y.astype(dtype), metadata
