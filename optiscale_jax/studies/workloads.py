"""The batch-scaling study's workloads: an exact objective, a target, and a batch stream per B.

A :class:`Workload` is what :func:`optiscale_jax.training.steps_to_target.steps_to_target` needs:
a start, the exact objective (closed form, quadrature or the full data set), the mini-batch
gradient, a sampler per batch size, and a noise measurement (``tr Sigma``, ``|G|^2``) at any
parameters. Finite data sets draw mini-batches WITHOUT replacement: epoch ``e`` visits the rows in
the order ``jax.random.permutation(fold_in(key, e), n)`` cut into ``n // B`` batches of exactly B
rows (the ``n mod B`` rows left at the end of that permutation wait for a later epoch).
Streaming and NQM batches are drawn from ``fold_in(key, t)`` at step t inside the program.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optiscale_jax.problems import Problem
from optiscale_jax.studies.nqm import NQM
from optiscale_jax.studies.streaming import StreamingProblem
from optiscale_jax.training.steps_to_target import noise_estimates

__all__ = ["Sampler", "Workload", "finite_workload", "nqm_workload", "streaming_workload"]

_MEASURE_BATCH = 256


@dataclasses.dataclass(frozen=True)
class Sampler:
    """``sample(t, state) -> (batch, state)`` and the state it starts from."""

    sample: Callable[[jax.Array, Any, Any], tuple[Any, Any]]
    state0: Any


@dataclasses.dataclass(frozen=True)
class Workload:
    """One problem of the study, with everything the steps-to-target engine needs.

    ``target`` is an objective value (units of the objective); ``f_star`` its minimum;
    ``n_samples`` the data set size (None when the stream is unbounded). The functions take the
    arrays ``data`` as their last argument (the engine passes them to its program at run time).
    """

    name: str
    description: str
    params0: np.ndarray
    target: float
    f_star: float
    initial_loss: float
    n_samples: int | None
    objective: Callable[[jax.Array, Any], jax.Array]
    grad: Callable[[jax.Array, Any, Any], jax.Array]
    make_sampler: Callable[[int], Sampler]
    measure: Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, jax.Array]]
    data: Any = ()

    def check_batch_size(self, batch_size: int) -> None:
        """ValueError before any work when a finite data set cannot fill one batch."""
        if self.n_samples is not None and batch_size > self.n_samples:
            raise ValueError(
                f"batch size {batch_size} is larger than the {self.n_samples} rows of "
                f"{self.name}; give --batch_exponents with every 2^k <= {self.n_samples} "
                f"(k <= {int(np.log2(self.n_samples))})"
            )


def _target(f_star: float, initial: float, fraction: float) -> float:
    """``f* + fraction (f(w_0) - f*)``: the target as a fraction of the initial excess."""
    if not (0.0 < fraction < 1.0):
        raise ValueError(f"target fraction of the initial excess loss must be in (0, 1), got {fraction!r}")
    return float(f_star + fraction * (initial - f_star))


def nqm_workload(nqm: NQM, *, target: float, seed: int = 0) -> Workload:
    """The NQM simulated (one realisation): objective ``L(theta_t)``, gradient ``h theta + sqrt(c/B) xi``."""
    if not (0.0 < target < nqm.initial_loss()):
        raise ValueError(
            f"NQM target loss must be in (0, initial loss {nqm.initial_loss():.4g}), got {target!r}"
        )
    key = jax.random.key(seed)
    h, c = jnp.asarray(nqm.h, jnp.float32), jnp.asarray(nqm.c, jnp.float32)

    def make_sampler(batch_size: int) -> Sampler:
        scale = jnp.sqrt(c / batch_size)
        def sample(t, state, _data):
            return scale * jax.random.normal(jax.random.fold_in(key, t), h.shape), state

        return Sampler(sample, ())

    def measure(theta, t, _data):
        del t  # Sigma = diag(c) and G = h theta are known exactly.
        return jnp.sum(c), jnp.sum((h * theta) ** 2)

    return Workload(
        name="nqm_sim",
        description=f"NQM simulated, d = {nqm.dim}, h_i = 1/i, c_i = h_i, theta_0 = 1",
        params0=np.asarray(nqm.theta0, np.float32),
        target=float(target),
        f_star=0.0,
        initial_loss=nqm.initial_loss(),
        n_samples=None,
        objective=lambda theta, _: nqm.loss(theta),
        grad=lambda theta, noise, _: h * theta + noise,
        make_sampler=make_sampler,
        measure=measure,
    )


def streaming_workload(
    name: str, problem: StreamingProblem, *, target_fraction: float, seed: int = 0
) -> Workload:
    """A streaming problem: the population objective, fresh samples every step."""
    key, measure_key = jax.random.split(jax.random.key(seed))
    params0 = np.zeros(problem.dim, np.float32)
    f_star = problem.f_star()
    with jax.enable_x64(True):
        initial = float(problem.population_loss(jnp.zeros(problem.dim, jnp.float64)))

    def make_sampler(batch_size: int) -> Sampler:
        return Sampler(lambda t, s, _: (problem.sample(jax.random.fold_in(key, t), batch_size), s), ())

    def measure(w, t, _data):
        return problem.noise_statistics(w, problem.sample(jax.random.fold_in(measure_key, t), _MEASURE_BATCH))

    lam = problem.eigenvalues
    return Workload(
        name=name,
        description=(
            f"streaming {problem.kind.replace('_', ' ')}, d = {problem.dim}, "
            f"kappa = {lam[0] / lam[-1]:.3g}, f* = {f_star:.6g}"
        ),
        params0=params0,
        target=_target(f_star, initial, target_fraction),
        f_star=f_star,
        initial_loss=initial,
        n_samples=None,
        objective=lambda w, _: problem.population_loss(w),
        grad=lambda w, batch, _: problem.batch_gradient(w, batch),
        make_sampler=make_sampler,
        measure=measure,
    )


def finite_workload(
    name: str, description: str, problem: Problem, *, relative_target: float, seed: int = 0
) -> Workload:
    """A finite data set: the full-data objective, mini-batches without replacement.

    Target: relative suboptimality ``(f - f*) / |f*| <= relative_target`` (f* solved in float64).
    """
    if not (0.0 < relative_target < np.inf):
        raise ValueError(f"relative_target must be a number > 0 ((f - f*)/|f*|), not {relative_target!r}")
    key, measure_key = jax.random.split(jax.random.key(seed))
    X, y = jnp.asarray(problem.X, jnp.float32), jnp.asarray(problem.y, jnp.float32)
    n = int(X.shape[0])
    f_star = float(problem.optimum().f_star)
    params0 = np.zeros(problem.n_features, np.float32)
    initial = float(problem.loss(params0.astype(np.float64), problem.X, problem.y, xp=np))

    def make_sampler(batch_size: int) -> Sampler:
        per_epoch = n // batch_size

        def sample(t, perm, data):
            epoch, j = t // per_epoch, t % per_epoch
            perm = jax.lax.cond(
                j == 0, lambda: jax.random.permutation(jax.random.fold_in(key, epoch), n), lambda: perm
            )
            rows = jax.lax.dynamic_slice(perm, (j * batch_size,), (batch_size,))
            return (data[0][rows], data[1][rows]), perm

        return Sampler(sample, jnp.arange(n))

    per_example = jax.vmap(jax.grad(lambda w, x, t: problem.loss(w, x[None], t[None])), (None, 0, 0))

    def measure(w, t, data):
        rows = jax.random.choice(jax.random.fold_in(measure_key, t), n, (_MEASURE_BATCH,), replace=False)
        g = per_example(w, data[0][rows], data[1][rows])
        mean = jnp.mean(g, 0)
        return noise_estimates(jnp.mean(jnp.sum(g * g, 1)), jnp.sum(mean * mean), _MEASURE_BATCH)

    return Workload(
        name=name,
        description=f"{description}, f* = {f_star:.6g}",
        params0=params0,
        target=f_star + relative_target * abs(f_star),
        f_star=f_star,
        initial_loss=initial,
        n_samples=n,
        objective=lambda w, data: problem.loss(w, data[0], data[1]),
        grad=lambda w, batch, _: problem.grad(w, batch[0], batch[1]),
        make_sampler=make_sampler,
        measure=measure,
        data=(X, y),
    )
