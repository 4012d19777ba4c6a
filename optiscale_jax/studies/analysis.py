"""Batch-scaling summaries from (batch size, steps to target) pairs: pure functions, no JAX.

Definitions (McCandlish et al. 2018; Shallue et al. 2019):

* ``S(B)``: steps to reach the target at batch size B (tuned: best of the grid);
  ``E(B) = B S(B)``: examples processed.
* ``S_min = min_B S(B)``, ``E_min = min_B E(B)`` over the measured batch sizes.
* **Critical batch size** ``B_crit = E_min / S_min``. Under the model
  ``S(B) = S_min (1 + B_crit / B)`` (equivalently ``E(B) = E_min (1 + B / B_crit)``) this is the
  batch size at which a run needs twice the minimum steps and twice the minimum examples.
* **Perfect-scaling region**: from the smallest B that reached the target up to the largest
  ``B_p`` such that every reached ``B <= B_p`` has ``E(B) <= 1.25 E_min`` (doubling B still
  roughly halves S); none when already the smallest B costs more than that.
* **Small-B scaling exponent**: the slope of ``log S`` against ``log B`` between the two smallest
  reached batch sizes (-1 = steps halve when B doubles).
* **Gradient noise scale** ``B_simple = tr(Sigma) / |G|^2`` (Sigma: per-example gradient
  covariance, G: the true gradient) and, where the Hessian H is known,
  ``B_noise = tr(H Sigma) / (G^T H G)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["PERFECT_SCALING_TOLERANCE", "ScalingSummary", "scaling_summary"]

PERFECT_SCALING_TOLERANCE = 1.25


class ScalingSummary(NamedTuple):
    """The definitions of the module docstring, None where fewer than the needed points reached."""

    s_min: int | None
    e_min: int | None
    critical_batch_size: float | None
    perfect_scaling_max_batch: int | None
    small_batch_slope: float | None
    smallest_reached_batch: int | None
    reached: int
    measured: int


def scaling_summary(batch_sizes: Sequence[int], steps: Sequence[int | None]) -> ScalingSummary:
    """Summarises ``S(B)`` (``None`` = not reached) over increasing batch sizes."""
    if len(batch_sizes) != len(steps):
        raise ValueError(f"batch_sizes and steps differ in length: {len(batch_sizes)} vs {len(steps)}")
    if len(set(batch_sizes)) != len(batch_sizes):
        raise ValueError(f"batch sizes must be distinct, got {list(batch_sizes)}")
    pairs = sorted((int(b), int(s)) for b, s in zip(batch_sizes, steps) if s is not None and s > 0)
    if not pairs:
        return ScalingSummary(None, None, None, None, None, None, 0, len(batch_sizes))
    s_min = min(s for _, s in pairs)
    e_min = min(b * s for b, s in pairs)
    perfect = None
    for b, s in pairs:
        if b * s > PERFECT_SCALING_TOLERANCE * e_min:
            break
        perfect = b
    slope = None
    if len(pairs) >= 2:
        (b0, s0), (b1, s1) = pairs[0], pairs[1]
        slope = math.log(s1 / s0) / math.log(b1 / b0)
    return ScalingSummary(s_min, e_min, e_min / s_min, perfect, slope, pairs[0][0], len(pairs),
                          len(batch_sizes))
