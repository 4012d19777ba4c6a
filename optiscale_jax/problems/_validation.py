"""Input checks for problems: every error names the bad value and the fix."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optiscale_jax.datasets import as_aligned

PROBLEM_KINDS = ("least_squares", "ridge", "logistic", "softmax")


def check_kind(kind: Any) -> str:
    if kind not in PROBLEM_KINDS:
        raise ValueError(f"unknown problem kind {kind!r}; choose one of: {', '.join(PROBLEM_KINDS)}")
    return kind


def check_l2(kind: str, l2: Any) -> float:
    try:
        value = float(l2)
    except (TypeError, ValueError):
        raise ValueError(f"l2 must be a real number >= 0, got {l2!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"l2 must be finite and >= 0, got {l2!r}")
    if kind == "least_squares" and value != 0.0:
        raise ValueError(
            f"least_squares has no L2 term but l2={l2!r} was given; use kind='ridge' "
            "for an L2-regularised least-squares problem")
    if kind == "ridge" and value == 0.0:
        raise ValueError("ridge needs l2 > 0, got l2=0.0; pass e.g. l2=1e-3, or use "
                         "kind='least_squares' for no regularisation")
    return value


_MATRIX_FIX = ("pass real features, e.g. {name}.real when its imaginary part is zero, or "
               "np.hstack([{name}.real, {name}.imag]) to keep both parts")
_CHECK_BLOCK_VALUES = 1 << 22   # values per block of the finiteness scan (16-32 MiB of data)
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_finite_2d(arr: np.ndarray, name: str) -> None:
    """ValueError at the first NaN/Inf of a 2-D array, scanned in row blocks (no full-size mask)."""
    step = max(1, _CHECK_BLOCK_VALUES // max(arr.shape[1], 1))
    for start in range(0, arr.shape[0], step):
        block = arr[start:start + step]
        if np.isfinite(block).all():
            continue
        bad_count = sum(int((~np.isfinite(arr[i:i + step])).sum())
                        for i in range(0, arr.shape[0], step))
        i, j = np.argwhere(~np.isfinite(block))[0]
        raise ValueError(f"{name} contains {bad_count} non-finite value(s) (NaN/Inf), first "
                         f"at {name}[{start + i}, {j}] = {block[i, j]}; drop or impute those "
                         "entries first")


def _refuse_complex(values: Any, name: str, fix: str) -> None:
    """ValueError for complex `values` (a cast to float would drop the imaginary part)."""
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        dtype = np.asarray(values).dtype
    if np.dtype(dtype).kind == "c":
        raise ValueError(f"{name} is complex (dtype {np.dtype(dtype)}); complex data is not supported "
                         f"(a cast would drop the imaginary part): {fix}")


def _check_shape_2d(arr: np.ndarray, name: str) -> None:
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}; "
                         "reshape a single feature with X.reshape(-1, 1)")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} is empty (shape {arr.shape}); it needs at least one row "
                         "(sample) and one column (feature)")


def finite_matrix(X: Any, name: str = "X", copy: bool = False) -> np.ndarray:
    """X as a finite float64 (n, d) array with n, d >= 1 (a copy when `copy`); complex X is refused."""
    _refuse_complex(X, name, _MATRIX_FIX.format(name=name))
    try:
        arr = np.array(X, dtype=np.float64, order="C", copy=copy or None)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric 2-D array (n_samples, n_features); could not "
                         f"convert it ({err})") from None
    _check_shape_2d(arr, name)
    _check_finite_2d(arr, name)
    return arr


def data_matrix(X: Any, name: str = "X") -> np.ndarray:
    """X as a finite (n, d) float32 or float64 array, without copying when it already is one.

    A C-contiguous float32 / float64 array is checked in place and returned as a read-only
    view (the caller's array stays writable; the view shares its memory). Anything else
    (other dtypes, other layouts) is converted once to an aligned C-contiguous float64 array
    (see ``optiscale_jax.datasets.as_aligned``).
    """
    _refuse_complex(X, name, _MATRIX_FIX.format(name=name))
    arr = X if isinstance(X, np.ndarray) else None
    if arr is None or arr.dtype not in FLOAT_DTYPES or not arr.flags.c_contiguous:
        try:
            source = np.asarray(X)
            if not (np.issubdtype(source.dtype, np.number) or source.dtype == np.bool_):
                raise TypeError(f"dtype {source.dtype} is not numeric")
            target = source.dtype if source.dtype in FLOAT_DTYPES else np.float64
            arr = as_aligned(source, target) if source.ndim == 2 else source.astype(target)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a numeric 2-D array (n_samples, n_features); could "
                             f"not convert it ({err})") from None
    _check_shape_2d(arr, name)
    _check_finite_2d(arr, name)
    view = arr.view()
    view.setflags(write=False)
    return view


def finite_vector(y: Any, n_samples: int, name: str = "y") -> np.ndarray:
    """y as a finite float64 1-D array with one entry per row of X ((n, 1) is flattened);
    complex y is refused."""
    arr = np.asarray(y)
    _refuse_complex(arr, name, f"pass real targets, e.g. {name}.real when its imaginary part is zero")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with one entry per row of X, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} entries but X has {n_samples} rows "
                         f"(samples); pass one target per row of X")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    y64 = np.array(arr, dtype=np.float64, copy=True)
    bad = ~np.isfinite(y64)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} contains {int(bad.sum())} non-finite value(s) (NaN/Inf), first "
                         f"at {name}[{i}] = {y64[i]}; drop or impute those entries first")
    return y64


def check_X(X: Any) -> np.ndarray:
    return data_matrix(X)


def check_y(kind: str, y: Any, n_samples: int, n_classes: int | None) -> tuple[np.ndarray, int | None]:
    y64 = finite_vector(y, n_samples)
    if kind in ("least_squares", "ridge"):
        if n_classes is not None:
            raise ValueError(f"n_classes={n_classes!r} only applies to kind='softmax'")
        return y64, None
    if kind == "logistic":
        values = np.unique(y64)
        if not np.all(np.isin(values, (0.0, 1.0))):
            shown = ", ".join(f"{v:g}" for v in values[:5])
            raise ValueError(f"logistic regression needs labels in {{0, 1}}, got values {{{shown}"
                             f"{', ...' if values.size > 5 else ''}}}; map labels to 0/1, e.g. "
                             "y = (y > 0).astype(float) for -1/+1 labels")
        if n_classes not in (None, 2):
            raise ValueError(f"logistic regression is binary; got n_classes={n_classes!r}")
        return y64, None
    # softmax
    if np.any(y64 != np.round(y64)) or np.any(y64 < 0):
        raise ValueError("softmax regression needs integer class labels 0, 1, ..., k-1; got "
                         f"non-integer or negative labels (min {y64.min():g}); encode classes "
                         "with np.unique(y, return_inverse=True)[1]")
    labels = y64.astype(np.int64)
    k = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if k < 2:
        raise ValueError(f"softmax regression needs at least 2 classes, got n_classes={k}")
    if labels.max() >= k:
        raise ValueError(f"label {int(labels.max())} is out of range for n_classes={k}; "
                         f"labels must be in [0, {k})")
    return labels, k
