"""The one integer-range check of the benchmark and the command lines.

Every count or seed a user gives (``--epochs``, ``--seed``, ``--workers``,
``max_epochs=``, ``seed=`` ...) is checked here, so every such error reads the same:
``--seed=-1 is out of range; give an integer >= 0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_int"]


def check_int(value: Any, name: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as an int when it is an integer (not a bool) within [minimum, maximum];
    else ValueError naming ``name``, the value and the allowed range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and maximum is not None:
        allowed = f"from {minimum} to {maximum}"
    elif minimum is not None:
        allowed = f">= {minimum}"
    else:
        allowed = f"<= {maximum}"
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name}={value} is out of range; give an integer {allowed}")
    return int(value)
