"""Input checks for the estimators, with errors that name the bad value and the fix."""

from __future__ import annotations

from typing import Any

import numpy as np

from optiscale_jax.problems._validation import finite_matrix, finite_vector

LOSSES: tuple[str, ...] = ("auto", "least_squares", "logistic", "softmax")
BACKENDS: tuple[str, ...] = ("jax", "numpy", "cupy")


def check_features(X: Any, name: str = "X") -> np.ndarray:
    """X as a finite float64 (n, d) array with n >= 1 and d >= 1 (the problems' check)."""
    return finite_matrix(X, name)


def check_targets(y: Any, n_samples: int, name: str = "y") -> np.ndarray:
    """y as a finite 1-D float64 array with one entry per sample (the problems' check)."""
    return finite_vector(y, n_samples, name)


def is_binary(y: np.ndarray) -> bool:
    """True when every label is 0 or 1."""
    return bool(np.all((y == 0) | (y == 1)))


def resolve_loss(loss: str, y: np.ndarray) -> str:
    """The Problem kind for `loss`: "auto" is logistic for labels in {0, 1}, else least squares."""
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is unknown; choose one of: {', '.join(LOSSES)}")
    if loss == "auto":
        return "logistic" if is_binary(y) else "least_squares"
    if loss == "logistic" and not is_binary(y):
        values = np.unique(y)
        raise ValueError(f"loss='logistic' needs labels in {{0, 1}}; y has values "
                         f"{values[:6].tolist()}{' ...' if values.size > 6 else ''}. Map the "
                         "two classes to 0/1, or use loss='softmax' for several classes")
    if loss == "softmax" and not np.all((y >= 0) & (y == np.round(y))):
        raise ValueError("loss='softmax' needs integer class labels 0..k-1; y has "
                         f"non-integer or negative values, e.g. {y[(y < 0) | (y != np.round(y))][:3]}")
    return loss


def check_positive_int(value: Any, name: str) -> int:
    """`value` as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; pass an integer >= 1")
    return int(value)


def check_batch_size(batch_size: Any, n_samples: int) -> int | None:
    """None (full batch) or an int in [1, n_samples]."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size={batch_size!r} is invalid; pass an integer in "
                         f"[1, {n_samples}] or None for full batch")
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size} must be >= 1 (or None for full batch)")
    if batch_size > n_samples:
        raise ValueError(f"batch_size={batch_size} is larger than the {n_samples} samples of X; "
                         f"pass batch_size <= {n_samples} or None for full batch")
    return int(batch_size)


def check_backend(backend: Any) -> str:
    """A backend name from BACKENDS."""
    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; choose one of: {', '.join(BACKENDS)}")
    return backend.lower()


def check_l2(l2: Any) -> float:
    """A finite l2 >= 0."""
    try:
        value = float(l2)
    except (TypeError, ValueError) as error:
        raise ValueError(f"l2={l2!r} is invalid; pass a number >= 0") from error
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"l2={l2!r} is invalid; pass a finite number >= 0 (0 = no penalty)")
    return value
