"""The noisy quadratic model (NQM): the problem, its exact theory per optimizer, and simulation.

``L(theta) = 1/2 sum_i h_i theta_i^2``; a mini-batch of size B gives the stochastic gradient
``g_i = h_i theta_i + sqrt(c_i / B) xi_i`` (xi ~ N(0, 1)). The default spectrum is the one of
Zhang et al. (2019): ``h_i = 1/i``, ``c_i = h_i``, ``d = 10^4``, and ``theta_0`` with
``E theta_{0,i}^2 = 1`` (here: ``theta_0 = 1``). The expected loss under SGD, heavy-ball momentum
and ``h^-p`` preconditioned SGD is exact (:mod:`optiscale_jax.studies.nqm_theory`);
:func:`simulate` runs the same with the project's optimizer transforms, vmapped over seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optiscale_jax.studies import nqm_theory as theory

__all__ = [
    "NQM", "NQMOptimizer", "TunedNQM", "grid_steps", "make_nqm", "nqm_transform", "simulate",
    "tune_closed_form",
]


@dataclasses.dataclass(frozen=True)
class NQM:
    """A noisy quadratic model: curvatures ``h`` (> 0), per-example noise variances ``c`` (>= 0),
    start ``theta0``."""

    h: np.ndarray
    c: np.ndarray
    theta0: np.ndarray

    def __post_init__(self) -> None:
        for name in ("h", "c", "theta0"):
            value = np.asarray(getattr(self, name), np.float64)
            if value.ndim != 1 or value.size == 0 or not np.all(np.isfinite(value)):
                raise ValueError(
                    f"NQM {name} must be a non-empty finite 1-D array, got shape {value.shape}"
                    f" with {int(np.sum(~np.isfinite(value)))} non-finite entries"
                )
            object.__setattr__(self, name, value)
        if not (self.h.shape == self.c.shape == self.theta0.shape):
            raise ValueError(
                f"NQM h, c, theta0 must have one shape, got {self.h.shape}, {self.c.shape}, "
                f"{self.theta0.shape}"
            )
        if np.any(self.h <= 0):
            raise ValueError(f"NQM curvatures h must be > 0 (min is {self.h.min():g}); drop flat directions")
        if np.any(self.c < 0):
            raise ValueError(f"NQM noise variances c must be >= 0 (min is {self.c.min():g})")

    @property
    def dim(self) -> int:
        return int(self.h.size)

    def loss(self, theta: jax.Array) -> jax.Array:
        """``1/2 sum_i h_i theta_i^2`` (the exact objective; its minimum is 0 at theta = 0)."""
        return 0.5 * jnp.sum(jnp.asarray(self.h, theta.dtype) * theta * theta)

    def initial_loss(self) -> float:
        return float(0.5 * np.sum(self.h * self.theta0**2))

    def gradient_noise_scales(self, theta_sq: np.ndarray) -> tuple[float, float]:
        """``(B_simple, B_noise)`` at moments ``E theta^2``: ``tr(Sigma)/|G|^2``, ``tr(H Sigma)/G^T H G``.

        The per-example covariance is ``Sigma = diag(c)`` and ``G = h theta``, so in expectation
        ``|G|^2 = sum h^2 E theta^2`` and ``G^T H G = sum h^3 E theta^2`` (McCandlish et al. 2018).
        """
        return (
            float(np.sum(self.c) / np.sum(self.h**2 * theta_sq)),
            float(np.sum(self.h * self.c) / np.sum(self.h**3 * theta_sq)),
        )


def make_nqm(dim: int = 10_000, *, curvature_power: float = 1.0, noise_scale: float = 1.0) -> NQM:
    """The paper's NQM: ``h_i = i^-curvature_power``, ``c_i = noise_scale h_i``, ``theta_0 = 1``."""
    if int(dim) != dim or dim < 1:
        raise ValueError(f"NQM dim must be a positive integer, got {dim!r}")
    if not (np.isfinite(curvature_power) and curvature_power >= 0):
        raise ValueError(f"curvature_power must be finite and >= 0 (h_i = i^-power), got {curvature_power!r}")
    if not (np.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be finite and >= 0, got {noise_scale!r}")
    h = np.arange(1, int(dim) + 1, dtype=np.float64) ** (-float(curvature_power))
    return NQM(h=h, c=noise_scale * h, theta0=np.ones(int(dim)))


class NQMOptimizer(NamedTuple):
    """One optimizer of the closed form: heavy-ball momentum ``mu`` on ``lr h^-p`` scaled steps."""

    name: str
    momenta: tuple[float, ...] = (0.0,)
    precondition_power: float = 0.0


def nqm_transform(
    nqm: NQM, learning_rate: jax.Array, momentum: jax.Array = 0.0, precondition_power: float = 0.0
) -> optax.GradientTransformation:
    """The project's SGD / momentum transform after a ``h^-p`` diagonal scaling (as in the closed form)."""
    from optiscale_jax.optimizers import momentum as heavy_ball  # noqa: PLC0415 (name clash with the argument)

    scale = jnp.asarray(nqm.h ** (-float(precondition_power)))
    precondition = optax.stateless(lambda g, _params: jax.tree.map(lambda x: x * scale.astype(x.dtype), g))
    return optax.chain(precondition, heavy_ball(learning_rate, momentum))


def simulate(
    nqm: NQM,
    make_transform: Callable[[], optax.GradientTransformation],
    *,
    batch_size: float,
    steps: int,
    seeds: int,
    log_every: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Runs ``seeds`` independent NQM trajectories (one vmapped, jitted scan); returns (logged steps, losses).

    Step t draws ``xi`` from ``fold_in(fold_in(key, seed_index), t)``. Losses: (seeds, len(logged steps)),
    the exact loss ``L(theta_t)`` at t = 0, log_every, 2 log_every, ... <= steps (float64).
    """
    if steps < 1 or log_every < 1 or seeds < 1 or batch_size <= 0:
        raise ValueError(
            f"simulate needs steps, log_every, seeds >= 1 and batch_size > 0; got "
            f"{steps}, {log_every}, {seeds}, {batch_size}"
        )
    chunks = steps // log_every
    with jax.enable_x64(True):
        h, c = jnp.asarray(nqm.h), jnp.asarray(nqm.c)
        tx = make_transform()

        def one(key: jax.Array) -> jax.Array:
            def step(carry, t):
                theta, state = carry
                xi = jax.random.normal(jax.random.fold_in(key, t), theta.shape, theta.dtype)
                grad = h * theta + jnp.sqrt(c / batch_size) * xi
                updates, state = tx.update(grad, state, theta)
                return (optax.apply_updates(theta, updates), state), None

            def chunk(carry, k):
                carry, _ = jax.lax.scan(step, carry, k * log_every + jnp.arange(log_every))
                return carry, nqm.loss(carry[0])

            theta0 = jnp.asarray(nqm.theta0)
            _, losses = jax.lax.scan(chunk, (theta0, tx.init(theta0)), jnp.arange(chunks))
            return jnp.concatenate([nqm.loss(theta0)[None], losses])

        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(seeds))
        losses = np.asarray(jax.jit(jax.vmap(one))(keys))
    return np.arange(chunks + 1) * log_every, losses


class TunedNQM(NamedTuple):
    """Closed-form tuning result at one batch size: steps per grid point and the best point."""

    steps: int | None
    learning_rate: float
    momentum: float
    grid_steps: np.ndarray  # (len(lrs), len(momenta)); -1 = not reached
    learning_rates: np.ndarray
    momenta: np.ndarray
    on_edge: bool  # best on the first or last learning rate of the final grid
    extensions: int  # times the grid was extended past an edge
    theta_sq_at_target: np.ndarray | None
    first_crossing_exact: bool = True  # False: momentum, lifting's crossing not re-checked step by step


def grid_steps(
    nqm: NQM,
    opt: NQMOptimizer,
    batch_size: float,
    lrs: np.ndarray,
    target: float,
    max_steps: int,
    memory_bytes: float = 2e8,
) -> np.ndarray:
    """Exact steps to target for every (lr, mu) of the grid (-1: not reached, or the expected loss
    diverges: an unstable map counts as not reached even if it dips under the target on the way),
    in chunks of configurations that keep the stored powers of the map under ``memory_bytes``."""
    LR, MU = np.meshgrid(lrs, np.asarray(opt.momenta, np.float64), indexing="ij")
    stable = theory.is_stable(nqm.h, LR.ravel(), MU.ravel(), opt.precondition_power)
    lr_flat, mu_flat = LR.ravel()[stable], MU.ravel()[stable]
    k = 1 if not np.any(mu_flat) else 3
    per_config = nqm.dim * (k * k + k) * 8 * max(int(max_steps).bit_length(), 1)
    chunk = max(1, int(memory_bytes // per_config))
    out = [np.zeros(0, np.int64)]
    for start in range(0, lr_flat.size, chunk):
        sl = slice(start, start + chunk)
        step = theory.affine_step(nqm.h, nqm.c, batch_size, lr_flat[sl], mu_flat[sl], opt.precondition_power)
        s0 = theory.initial_moments(nqm.theta0**2, step)
        out.append(theory.steps_to_target(nqm.h, step, s0, target, max_steps))
    steps = np.full(LR.size, -1, np.int64)
    steps[stable] = np.concatenate(out)
    return steps.reshape(LR.shape)


def _best(grid: np.ndarray) -> tuple[int, int] | None:
    cost = np.where(grid < 0, np.iinfo(np.int64).max, grid)
    if np.all(grid < 0):
        return None
    return tuple(int(v) for v in np.unravel_index(np.argmin(cost), cost.shape))


def tune_closed_form(
    nqm: NQM,
    opt: NQMOptimizer,
    batch_size: float,
    learning_rates: np.ndarray,
    *,
    target: float,
    max_steps: int,
    max_extensions: int = 6,
    verify_steps: int = 20_000,
) -> TunedNQM:
    """Exact steps to ``target`` over the grid learning_rates x opt.momenta; best of grid.

    A best learning rate on the grid's first or last point extends the grid by its own span
    ratio on that side (up to ``max_extensions`` times); ``on_edge`` stays True if it is still
    there, so the report can flag it. The grid is ranked by
    :func:`~optiscale_jax.studies.nqm_theory.steps_to_target` (binary lifting, exact for a
    monotone loss); with momentum the chosen configuration's steps are then its exact first
    crossing, iterated step by step when they are at most ``verify_steps``.
    """
    lrs = np.sort(np.asarray(learning_rates, np.float64))
    extensions = 0
    while True:
        grid = grid_steps(nqm, opt, batch_size, lrs, target, max_steps)
        best = _best(grid)
        edge = best is not None and best[0] in (0, lrs.size - 1) and lrs.size > 1
        if not edge or extensions >= max_extensions:
            break
        ratio = lrs[-1] / lrs[0]
        lrs = np.unique(np.concatenate([lrs, lrs * ratio if best[0] else lrs / ratio]))
        extensions += 1
    if best is None:
        return TunedNQM(
            None, float("nan"), float("nan"), grid, lrs, np.asarray(opt.momenta), False, extensions, None
        )
    lr, mu = float(lrs[best[0]]), float(opt.momenta[best[1]])
    steps = int(grid[best])
    step = theory.affine_step(
        nqm.h, nqm.c, batch_size, np.array([lr]), np.array([mu]), opt.precondition_power
    )
    s0 = theory.initial_moments(nqm.theta0**2, step)
    checked = mu == 0.0 or steps <= verify_steps
    if mu != 0.0 and checked:
        # With momentum the expected loss may oscillate: this configuration's exact first crossing.
        steps = theory.first_crossing(nqm.h, step, s0, target, steps)
    s = theory.moments_after(step, s0, steps)
    return TunedNQM(
        steps, lr, mu, grid, lrs, np.asarray(opt.momenta), bool(edge), extensions, s[0, 0], checked
    )
