"""Checks on optimizer hyperparameters, with errors that name the value and the fix.

Only concrete numbers are checked: a traced value (inside `jit`/`vmap`, or
`optax.inject_hyperparams` under `jit`) or a schedule is passed through, since
its value is unknown until run time.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def _concrete(value: Any) -> float | None:
    """The value as a float if it is a concrete scalar, else None (traced/callable/array)."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return None
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything not array-like is checked elsewhere
        return None
    if array.ndim != 0 or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array)


def check_non_negative(name: str, value: Any, optimizer: str) -> None:
    """Raise ValueError unless `value` is a finite number >= 0 (or traced/callable)."""
    number = _concrete(value)
    if number is None:
        return
    if not np.isfinite(number) or number < 0:
        raise ValueError(
            f"{optimizer}: {name}={value!r} is invalid; {name} must be a finite number >= 0 "
            f"(e.g. {name}=1e-3).")


def check_unit_interval(name: str, value: Any, optimizer: str) -> None:
    """Raise ValueError unless 0 <= value < 1 (or traced/callable)."""
    number = _concrete(value)
    if number is None:
        return
    if not (0.0 <= number < 1.0):
        raise ValueError(
            f"{optimizer}: {name}={value!r} is outside the valid range [0, 1); "
            f"use a value such as 0.9 or 0.999.")


def check_learning_rate(value: Any, optimizer: str) -> None:
    """A learning rate is a number >= 0, a traced array, or a schedule `count -> lr`."""
    if value is None:
        raise ValueError(f"{optimizer}: learning_rate is required (e.g. learning_rate=1e-3).")
    check_non_negative("learning_rate", value, optimizer)
