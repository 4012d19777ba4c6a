"""Argument checks shared by the loaders and generators: each error names the value and the fix."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1; rejects bools, fractions, NaN and non-numbers."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not math.isfinite(float(value)) or float(value) != int(value) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_real(value: Any, name: str, *, minimum: float, inclusive: bool = True,
               hint: str = "") -> float:
    """``value`` as a finite float >= minimum (or > minimum when not inclusive)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v >= minimum if inclusive else v > minimum)
    if not ok:
        relation = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be finite and {relation} {minimum:g}, got {value!r}"
                         + (f"; {hint}" if hint else ""))
    return v


def check_test_size(test_size: Any) -> float:
    """A held-out fraction in [0, 1)."""
    v = check_real(test_size, "test_size", minimum=0.0)
    if v >= 1.0:
        raise ValueError(f"test_size must be a fraction in [0, 1), got {test_size!r}; "
                         "e.g. test_size=0.2 holds out 20% of the rows, 0 holds out none")
    return v


def check_dtype(dtype: Any) -> np.dtype:
    """A NumPy floating dtype (float16/32/64)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be a floating dtype such as np.float32, got {dtype!r}") from None
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"dtype must be a floating dtype such as np.float32 or np.float64, "
                         f"got {dt}")
    return dt
