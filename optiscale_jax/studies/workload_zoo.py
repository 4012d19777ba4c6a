"""The study's named workloads, built from its settings, with a first learning-rate guess per optimizer.

* ``nqm_sim``: the NQM (h_i = 1/i, c_i = h_i, theta_0 = 1) simulated; objective = L(theta_t).
* ``streaming_least_squares`` / ``streaming_logistic``: :mod:`optiscale_jax.studies.streaming`,
  signal ``w*^T Sigma w* = 4``, least-squares noise sigma = 0.5.
* ``mnist_binary``: L2 logistic regression (l2 = 1e-4) on every MNIST image found (digits 5-9 = 1).
* ``california_housing``: ridge (l2 = 1e-4) on all 20,640 standardised rows plus an intercept column.

Targets: streaming ``f* + target_fraction (f(w_0) - f*)``; finite data sets the relative
suboptimality ``(f - f*) / |f*| <= relative_target``; the NQM the absolute loss ``nqm_sim_target``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optiscale_jax.datasets import load_california_housing, load_mnist
from optiscale_jax.optimizers import OptimizerSpec
from optiscale_jax.problems import make_problem
from optiscale_jax.studies import nqm as nqm_lib
from optiscale_jax.studies import streaming
from optiscale_jax.studies.workloads import Workload, finite_workload, nqm_workload, streaming_workload

__all__ = ["build_workload", "check_streaming", "first_learning_rate"]

_GRADIENT_STEP = ("sgd", "momentum", "nesterov")
_L2 = 1e-4


def check_streaming(spectrum_kind: str, dim: int, kappa: float) -> None:
    """The streaming spectrum's checks (kind, dim >= 2, 1 <= kappa <= 1e12), before any work."""
    streaming.check_spectrum(spectrum_kind, dim, kappa)


def _with_intercept(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1), X.dtype)])


def build_workload(name: str, settings: Any) -> tuple[Workload, float]:
    """``(workload, per-example curvature scale)``; the scale sets SGD's first learning-rate guess.

    The scale is ``E |x|^2`` (least squares), ``E |x|^2 / 4`` (logistic) or ``max h`` (NQM): a
    step of ``1 / scale`` is at the edge of stability at batch size 1.
    """
    seed = settings.seed
    if name == "nqm_sim":
        nqm = nqm_lib.make_nqm(settings.nqm_sim_dim)
        return nqm_workload(nqm, target=settings.nqm_sim_target, seed=seed), float(nqm.h.max())
    if name in ("streaming_least_squares", "streaming_logistic"):
        kind = name.removeprefix("streaming_")
        problem = streaming.make_streaming(
            kind,
            settings.streaming_dim,
            spectrum_kind=settings.streaming_spectrum,
            kappa=settings.streaming_kappa,
            seed=seed,
        )
        scale = float(np.sum(problem.eigenvalues)) * (1.0 if kind == "least_squares" else 0.25)
        return streaming_workload(name, problem, target_fraction=settings.target_fraction, seed=seed), scale
    if name == "mnist_binary":
        X, y, _, _, _ = load_mnist(
            binary_classification=True, test_size=0.0, data_dir=settings.data_dir, dtype=np.float64
        )
        problem = make_problem("logistic", X, y, l2=_L2)
        description = (
            f"MNIST binary (digits 5-9 = 1) L2 logistic, n = {X.shape[0]}, d = {X.shape[1]}, l2 = {_L2}"
        )
        scale = float(np.mean(np.sum(X * X, 1))) / 4.0
    elif name == "california_housing":
        X, y, _, _, _ = load_california_housing(test_size=0.0, data_dir=settings.data_dir)
        X = _with_intercept(X)
        problem = make_problem("ridge", X, y, l2=_L2)
        description = f"California Housing ridge + intercept, n = {X.shape[0]}, d = {X.shape[1]}, l2 = {_L2}"
        scale = float(np.mean(np.sum(X * X, 1)))
    else:
        raise ValueError(f"unknown workload {name!r}")
    return finite_workload(
        name, description, problem, relative_target=settings.relative_target, seed=seed
    ), scale


def first_learning_rate(spec: OptimizerSpec, curvature_scale: float) -> float:
    """Centre of the first grid: ``1/(2 scale)`` for plain gradient steps (SGD; heavy-ball and Nesterov
    momentum: times ``1 - 0.9``, their step being amplified ``1/(1 - mu)``), else 1e-2 (optimizers that
    normalise the step: Adam, RMSProp, Lion, ...; the first grid spans a factor 256 around it)."""
    base = 0.5 / curvature_scale
    if spec.source == "optiscale" and spec.name in ("momentum", "nesterov"):
        return base * 0.1
    if spec.name in _GRADIENT_STEP:
        return base
    return 1e-2
