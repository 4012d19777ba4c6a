"""Exact theory of the noisy quadratic model: second moments as a composed affine map.

The NQM (Zhang et al. 2019) has loss ``L(theta) = 1/2 sum_i h_i theta_i^2`` and stochastic
gradients ``g_i = h_i theta_i + sqrt(c_i / B) xi_i`` with ``xi ~ N(0, 1)`` independent per step.
The optimizers covered, per coordinate with effective step ``a_i = lr h_i^-p`` (``p`` = the
preconditioning power; ``p = 0`` is plain SGD, ``mu = 0`` removes momentum):

    m' = mu m + g,    theta' = theta - a_i m'          (heavy ball, optax's ``trace``)

so ``x = (theta, m)`` evolves as ``x' = M x - (a, -1)^T sqrt(c/B) xi`` with
``M = [[1 - a h, -a mu], [h, mu]]``. The second moments ``s = (E theta^2, E theta m, E m^2)``
then follow an affine map ``s' = A s + b`` with ``A`` (3 x 3) from ``M`` and
``b = (c/B) (a^2, -a, 1)``. The expected loss is ``1/2 sum_i h_i s_theta,i``.

Composing the map with itself (``(A, b) o (A, b) = (A A, A b + b)``) gives the moments after
``2^k`` steps in ``k`` compositions, so the expected loss at any step ``T`` costs ``O(d log T)``
and the first step that reaches a target is found by binary lifting over the powers.
All arithmetic is float64 NumPy, vectorised over a grid of configurations.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "AffineMap",
    "affine_step",
    "apply",
    "compose",
    "expected_loss",
    "expected_loss_curve",
    "initial_moments",
    "is_stable",
    "moments_after",
    "steps_to_target",
]


class AffineMap(NamedTuple):
    """``s -> A s + b`` per configuration and coordinate: ``A`` (k, k, ..., d), ``b`` (k, ..., d).

    The moment index leads (structure of arrays): NumPy's einsum over it is 2.5x faster than a
    batched matmul of 3 x 3 matrices. ``k = 3`` with momentum, ``k = 1`` without."""

    A: np.ndarray
    b: np.ndarray


def affine_step(
    h: np.ndarray,
    c: np.ndarray,
    batch_size: float,
    learning_rate: np.ndarray,
    momentum: np.ndarray,
    precondition_power: float = 0.0,
) -> AffineMap:
    """The one-step second-moment map for each configuration (leading axes of lr / mu) and coordinate.

    Args:
      h, c: curvature and per-example gradient-noise variance per coordinate, shape (d,).
      batch_size: B (the noise variance is c / B).
      learning_rate, momentum: broadcastable arrays of configurations, e.g. shape (G,).
      precondition_power: p in [0, 1]; the step on coordinate i is lr h_i^-p.
    """
    h = np.asarray(h, np.float64)
    c = np.asarray(c, np.float64)
    lr = np.asarray(learning_rate, np.float64)[..., None]
    mu = np.asarray(momentum, np.float64)[..., None]
    a = lr * h ** (-float(precondition_power))
    noise = c / float(batch_size)
    if not np.any(mu):
        # No momentum: E theta^2 alone is closed, s' = (1 - a h)^2 s + a^2 c / B (a 1 x 1 map).
        return AffineMap(((1.0 - a * h) ** 2)[None, None], (noise * a * a)[None])
    a11, a12 = 1.0 - a * h, -a * mu
    a21, a22 = np.broadcast_to(h, a11.shape), np.broadcast_to(mu, a11.shape)
    # s' = M S M^T written on the three distinct entries (tt, tm, mm) of the symmetric S.
    A = np.stack(
        [
            np.stack([a11 * a11, 2 * a11 * a12, a12 * a12]),
            np.stack([a11 * a21, a11 * a22 + a12 * a21, a12 * a22]),
            np.stack([a21 * a21, 2 * a21 * a22, a22 * a22]),
        ]
    )
    b = np.stack([noise * a * a, -noise * a, np.broadcast_to(noise, a.shape)])
    return AffineMap(A, b)


def is_stable(
    h: np.ndarray, learning_rate: np.ndarray, momentum: np.ndarray, precondition_power: float = 0.0
) -> np.ndarray:
    """Whether the expected loss converges: ``0 < a_i h_i < 2 (1 + mu)`` for every i and ``0 <= mu < 1``.

    ``M`` has determinant ``mu`` and trace ``1 - a h + mu``; by the Jury criterion both its
    eigenvalues lie inside the unit circle exactly under these conditions, and the second-moment
    map (eigenvalues: products of two eigenvalues of ``M``) is then a contraction too.
    """
    lr = np.asarray(learning_rate, np.float64)
    mu = np.asarray(momentum, np.float64)
    top = lr * np.max(np.asarray(h, np.float64) ** (1.0 - float(precondition_power)))
    return (lr > 0) & (top < 2.0 * (1.0 + mu)) & (mu >= 0) & (mu < 1)


def compose(outer: AffineMap, inner: AffineMap) -> AffineMap:
    """``outer o inner``: first ``inner`` then ``outer``."""
    A = np.einsum("ij...,jk...->ik...", outer.A, inner.A)
    b = np.einsum("ij...,j...->i...", outer.A, inner.b) + outer.b
    return AffineMap(A, b)


def apply(step: AffineMap, s: np.ndarray) -> np.ndarray:
    """``A s + b`` for moments ``s`` of shape (k, ..., d)."""
    return np.einsum("ij...,j...->i...", step.A, s) + step.b


def initial_moments(theta0_sq: np.ndarray, step: AffineMap) -> np.ndarray:
    """``(E theta_0^2, 0, 0)`` per coordinate (the momentum buffer starts at 0), shaped like ``step.b``."""
    s = np.zeros(step.b.shape)
    s[0] = np.asarray(theta0_sq, np.float64)
    return s


def expected_loss(h: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``E L = 1/2 sum_i h_i E theta_i^2`` for moments of shape (k, ..., d)."""
    return 0.5 * np.sum(np.asarray(h) * s[0], axis=-1)


def moments_after(step: AffineMap, s0: np.ndarray, steps: int) -> np.ndarray:
    """Moments after ``steps`` applications of ``step``, by repeated squaring (O(log steps) compositions)."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    s, power = s0, step
    while steps:
        if steps & 1:
            s = apply(power, s)
        steps >>= 1
        if steps:
            power = compose(power, power)
    return s


def expected_loss_curve(h: np.ndarray, step: AffineMap, s0: np.ndarray, log_steps: np.ndarray) -> np.ndarray:
    """Expected loss at each step in the increasing ``log_steps``, shape (..., len(log_steps))."""
    log_steps = np.asarray(log_steps, np.int64)
    if log_steps.ndim != 1 or np.any(np.diff(log_steps) < 0) or (log_steps.size and log_steps[0] < 0):
        raise ValueError(f"log_steps must be a non-decreasing 1-D array of steps >= 0, got {log_steps}")
    out, s, t = [], s0, 0
    for target_step in log_steps:
        s = moments_after(step, s, int(target_step) - t)
        t = int(target_step)
        out.append(expected_loss(h, s))
    return np.stack(out, -1)


def steps_to_target(
    h: np.ndarray, step: AffineMap, s0: np.ndarray, target: float, max_steps: int
) -> np.ndarray:
    """A step ``t <= max_steps`` where the expected loss crosses ``target``, by binary lifting; -1 if none.

    Lifting keeps, from the largest power of two down, every jump that leaves the loss above
    the target, and returns ``t`` with ``L(t - 1) > target >= L(t)``. That is the FIRST crossing
    whenever the expected loss crosses the target once (monotone decrease: SGD and
    preconditioned SGD from moments above their fixed point). With momentum the expected loss
    can oscillate around the target and an earlier crossing may exist: use it to rank a grid,
    then :func:`first_crossing` on the chosen configuration. Shape: the configurations of ``step``.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    levels = int(max_steps).bit_length()
    powers = [step]
    for _ in range(levels - 1):
        powers.append(compose(powers[-1], powers[-1]))
    s = np.broadcast_to(s0, step.b.shape).copy()
    t = np.zeros(step.b.shape[1:-1], np.int64)
    above = ~(expected_loss(h, s) <= target)
    for k in range(levels - 1, -1, -1):
        trial = apply(powers[k], s)
        take = above & ~(expected_loss(h, trial) <= target) & (t + (1 << k) < max_steps)
        s = np.where(take[..., None], trial, s)
        t = t + np.where(take, 1 << k, 0)
    final = apply(powers[0], s)
    reached_next = expected_loss(h, final) <= target
    result = np.where(~above, 0, np.where(reached_next & (t + 1 <= max_steps), t + 1, -1))
    return result.astype(np.int64)


def first_crossing(h: np.ndarray, step: AffineMap, s0: np.ndarray, target: float, max_steps: int) -> int:
    """The exact first step with expected loss ``<= target`` (-1 if none up to ``max_steps``), by
    iterating the map one step at a time: O(max_steps d), for the one configuration in ``step``."""
    s = np.array(s0, np.float64)
    for t in range(int(max_steps) + 1):
        if expected_loss(h, s) <= target:
            return t
        s = apply(step, s)
    return -1
