"""Input checks for the estimators, with errors that name the bad value and the fix."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse

from optiscale_jax.backends import BACKEND_NAMES
from optiscale_jax.problems import finite_matrix
from optiscale_jax.problems.labels import CLASSIFICATION_LOSSES

# The estimators' `loss` values ("ridge" is least squares with l2 > 0, chosen from `l2`).
LOSSES: tuple[str, ...] = ("auto", "least_squares", *CLASSIFICATION_LOSSES)
BACKENDS: tuple[str, ...] = BACKEND_NAMES    # the one list, from optiscale_jax.backends
MAX_EPOCHS = 2**31 - 1          # the engine counts epochs in int32
MAX_SEED = 2**32 - 1            # seeds become uint32 PRNG keys


def check_features(X: Any, name: str = "X") -> np.ndarray:
    """X as a finite float64 (n, d) array with n >= 1 and d >= 1 (the problems' check).

    Sparse and complex X are refused first (a complex X cast to float would drop its
    imaginary part silently).
    """
    if scipy.sparse.issparse(X):
        raise ValueError(f"{name} is a sparse matrix ({type(X).__name__}); sparse input is not "
                         f"supported: pass a dense array, e.g. {name}.toarray()")
    try:
        array = np.asarray(X)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric 2-D array (n_samples, n_features); could not "
                         f"convert it ({error})") from None
    if array.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {array.dtype}; pass real "
                         f"features, e.g. np.hstack([{name}.real, {name}.imag])")
    return finite_matrix(array, name)


def check_n_targets(y: np.ndarray, n_samples: int, name: str = "y") -> None:
    """One target per row of X."""
    if y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} entries but X has {n_samples} rows "
                         "(samples); pass one target per row of X")


def check_number(value: Any, name: str, *, optional: bool = True, example: Any = 0.01) -> None:
    """A real number (int, float or NumPy real scalar), or None when `optional`.

    Strings, bools, arrays and complex numbers are refused here, so that
    `Adam(learning_rate="0.01")` fails at once, naming the value.
    """
    if value is None and optional:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        default = " (or None for the default)" if optional else ""
        raise ValueError(f"{name}={value!r} is invalid ({type(value).__name__}); pass a real "
                         f"number, e.g. {name}={example!r}{default}")
    if not np.isfinite(float(value)):
        raise ValueError(f"{name}={value!r} is invalid; pass a finite number")


def check_positive_int(value: Any, name: str, maximum: int | None = None) -> int:
    """`value` as an int in [1, maximum]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; pass an integer >= 1")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}={value!r} is too large; pass an integer <= {maximum}")
    return int(value)


def check_seed(seed: Any) -> int:
    """An integer seed in [0, 2**32 - 1]."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed={seed!r} is invalid; pass an integer in [0, {MAX_SEED}]")
    return int(seed)


def check_choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    """`value` if it is one of `choices` (compared with ==, type-checked first)."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        shown = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name}={value!r} is invalid; choose one of: {shown}")
    return value


def check_batch_size(batch_size: Any, n_samples: int) -> int | None:
    """None (full batch) or an int in [1, n_samples]."""
    if batch_size is None:
        return None
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)):
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
    check_number(l2, "l2", optional=False)
    if l2 < 0:
        raise ValueError(f"l2={l2!r} is invalid; pass a finite number >= 0 (0 = no penalty)")
    return float(l2)
