"""The benchmark's data sets, suites and per-optimizer starting learning rates.

Data sets (``--datasets`` keys). Every one is split into a training part (the
objective, its f* and the condition number are of this part) and a held-out
test part:

=====================  ============================================  ======================
key                    data                                          problem
=====================  ============================================  ======================
mnist_10k              MNIST, 10,000 images, digits 0-4 vs 5-9       logistic, L2 = 1e-4
mnist_2k               MNIST, 2,000 images (quick suite)             logistic, L2 = 1e-4
california_housing     all 20,640 rows, 8 standardized features,     least squares
                       target centred (an intercept)
highdim_{50,100,...}   synthetic regression, 2,500 rows, kappa 50    ridge, L2 = 1e-3
kappa_{1e3,1e6,1e9}    synthetic, exponential spectrum, 1,250 x 100  least squares
kappa_1e3_small        synthetic, 500 x 50 (quick suite)             least squares
=====================  ============================================  ======================

High-dimensional sets use ridge so that d = 5,000 and 10,000 with 2,000
training rows (n < d) still have one optimum; the kappa sets are least squares
on the generator's spectrum (the training rows' kappa is measured and
reported next to the generator's target).

Starting learning rates (documented, not tuned on the results; ``--tune``
searches a grid around them):

* SGD, Momentum, Nesterov (momentum 0.9): ``1 / L`` with ``L`` the problem's
  smoothness constant (``problem.smoothness()``: largest Hessian eigenvalue
  bound, ``sigma_max(X)^2 / n`` for squares, ``/4`` for logistic, ``+ l2``),
  the classical step of gradient descent and within the stable range of both
  momentum methods;
* Adam, AdamW, NAdam: 1e-2, the estimators' default example; AdamW's decoupled
  weight decay 1e-4 (optax's default);
* RMSProp 1e-3 and Adagrad 1e-1: their common defaults.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from optiscale_jax.backends import BACKEND_NAMES
from optiscale_jax.datasets import (
    generate_extreme_condition_data,
    generate_highdim_regression,
    load_california_housing,
    load_mnist,
    spectral_metadata,
)
from optiscale_jax.optimizers import OPTIMIZER_NAMES

__all__ = [
    "BACKENDS", "DATASETS", "DEFAULT_OPTIMIZERS", "DISPLAY_NAMES", "DTYPES", "DatasetSpec",
    "EXTENDED_SUITES",
    "SUITES", "SuiteEntry", "check_choice", "check_datasets", "check_optimizers",
    "starting_configs",
]

Loaded = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]

DISPLAY_NAMES = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "adam": "Adam",
                 "adamw": "AdamW", "nadam": "NAdam", "rmsprop": "RMSProp", "adagrad": "Adagrad"}
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
BACKENDS: tuple[str, ...] = BACKEND_NAMES    # the one list, from optiscale_jax.backends
DTYPES: tuple[str, ...] = ("float32", "float64")
TEST_FRACTION = 0.2


class DatasetSpec(NamedTuple):
    """One benchmark data set: how to load it and which objective to put on it."""

    key: str
    name: str            # as shown in the report
    category: str        # classification | regression | high_dimensional | extreme_conditioning
    problem: str         # problem kind for make_problem
    l2: float
    load: Callable[[str | os.PathLike | None, int], Loaded]  # (data_dir, seed) -> data
    epochs: int          # epochs when a suite does not set them (the default suite's)


class SuiteEntry(NamedTuple):
    """A data set in a suite, with the suite's number of epochs for it."""

    dataset: str
    epochs: int


def _split(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded random split: TEST_FRACTION of the rows held out."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(X.shape[0])
    n_test = int(round(TEST_FRACTION * X.shape[0]))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


def _with_train_spectrum(X_train: np.ndarray, metadata: Mapping[str, Any],
                         n_test: int) -> dict[str, Any]:
    """Generator metadata with the spectral figures recomputed on the training rows."""
    spectral = ("condition_number", "condition_number_nonzero", "rank", "L", "mu", "singular",
                "sigma_max", "sigma_min", "sigma_min_nonzero", "actual_kappa",
                "relative_kappa_error", "n_train", "n_test")
    out = {(f"generator_{k}" if k in spectral else k): v for k, v in metadata.items()
           if np.isscalar(v) or isinstance(v, str)}
    out.update(spectral_metadata(X_train))
    out.update(n_train=int(X_train.shape[0]), n_test=int(n_test),
               n_features=int(X_train.shape[1]))
    return out


def _mnist(n_samples: int) -> Callable[[Any, int], Loaded]:
    def load(data_dir: Any, seed: int) -> Loaded:
        return load_mnist(n_samples=n_samples, binary_classification=True,
                          test_size=TEST_FRACTION, seed=seed, data_dir=data_dir)
    return load


def _california(data_dir: Any, seed: int) -> Loaded:
    """Standardized features; the target centred by the training rows' mean. The
    features being centred too, this is least squares with an intercept (the
    intercept is that mean) without an extra column, so d = 8 and the condition
    number is the standardized features' own. Loaded in float64 (the loader's
    default is float32) so that the standardization and the centring are exact
    before the run casts to its own precision."""
    X_train, y_train, X_test, y_test, metadata = load_california_housing(
        data_dir=data_dir, test_size=TEST_FRACTION, standardize=True, seed=seed, dtype=np.float64)
    offset = float(np.mean(y_train))
    return X_train, y_train - offset, X_test, y_test - offset, {
        **metadata, "target_offset": offset,
        "target": "median_house_value / 100,000 minus the training mean (target_offset)"}


def _highdim(n_samples: int, n_features: int) -> Callable[[Any, int], Loaded]:
    def load(data_dir: Any, seed: int) -> Loaded:
        X, y, _, metadata = generate_highdim_regression(
            n_samples=n_samples, n_features=n_features, condition_number=50.0,
            n_informative=max(n_features // 10, 1), seed=seed, dtype=np.float64)
        X_train, y_train, X_test, y_test = _split(X, y, seed)
        return X_train, y_train, X_test, y_test, {
            **_with_train_spectrum(X_train, metadata, X_test.shape[0]),
            "target_condition_number": 50.0, "task": "regression"}
    return load


def _extreme(kappa: float, n_samples: int, n_features: int) -> Callable[[Any, int], Loaded]:
    def load(data_dir: Any, seed: int) -> Loaded:
        X, y, metadata = generate_extreme_condition_data(
            target_kappa=kappa, condition_type="exponential", n_samples=n_samples,
            n_features=n_features, seed=seed)
        X_train, y_train, X_test, y_test = _split(X, y, seed)
        return X_train, y_train, X_test, y_test, {
            **_with_train_spectrum(X_train, metadata, X_test.shape[0]),
            "target_condition_number": kappa, "task": "regression"}
    return load


def _specs() -> dict[str, DatasetSpec]:
    specs = [
        DatasetSpec("mnist_10k", "MNIST-10k (0-4 vs 5-9)", "classification", "logistic", 1e-4,
                    _mnist(10_000), 500),
        DatasetSpec("mnist_2k", "MNIST-2k (0-4 vs 5-9)", "classification", "logistic", 1e-4,
                    _mnist(2_000), 500),
        DatasetSpec("california_housing", "California Housing", "regression",
                    "least_squares", 0.0, _california, 2_000),
    ]
    for d in (50, 100, 1_000, 5_000, 10_000):
        specs.append(DatasetSpec(f"highdim_{d}", f"High-dimensional d={d:,}", "high_dimensional",
                                 "ridge", 1e-3, _highdim(2_500, d), 1_000))
    for label, kappa in (("1e3", 1e3), ("1e6", 1e6), ("1e9", 1e9)):
        specs.append(DatasetSpec(f"kappa_{label}", f"Extreme conditioning kappa={label}",
                                 "extreme_conditioning", "least_squares", 0.0,
                                 _extreme(kappa, 1_250, 100), 10_000))
    specs.append(DatasetSpec("kappa_1e3_small", "Extreme conditioning kappa=1e3 (small)",
                             "extreme_conditioning", "least_squares", 0.0,
                             _extreme(1e3, 500, 50), 10_000))
    return {spec.key: spec for spec in specs}


DATASETS: dict[str, DatasetSpec] = _specs()

_DEFAULT = tuple(SuiteEntry(key, DATASETS[key].epochs) for key in (
    "mnist_10k", "california_housing", "highdim_100", "highdim_1000", "kappa_1e3", "kappa_1e6"))
SUITES: dict[str, tuple[SuiteEntry, ...]] = {
    "quick": (SuiteEntry("mnist_2k", 30), SuiteEntry("california_housing", 100),
              SuiteEntry("highdim_50", 100), SuiteEntry("kappa_1e3_small", 300)),
    "default": _DEFAULT,
    "full": _DEFAULT + tuple(SuiteEntry(key, DATASETS[key].epochs)
                             for key in ("highdim_5000", "highdim_10000", "kappa_1e9")),
}
SUITES["extended"] = _DEFAULT
SUITE_OPTIMIZERS = {"quick": ("sgd", "adam"), "default": DEFAULT_OPTIMIZERS,
                    "full": DEFAULT_OPTIMIZERS, "extended": DEFAULT_OPTIMIZERS}
# Suites that add optiscale_jax.optimizers.EXTENDED_BASELINES (Lion, Adafactor, Muon, ...).
EXTENDED_SUITES = frozenset({"extended"})


def _check_choices(values: Sequence[str], choices: Sequence[str], what: str) -> list[str]:
    """Stripped, non-empty values, all in `choices`; ValueError naming the bad ones."""
    values = [v.strip() for v in values if v.strip()]
    unknown = [v for v in values if v not in choices]
    if unknown:
        raise ValueError(f"unknown {what}(s) {', '.join(map(repr, unknown))}; choose from: "
                         f"{', '.join(choices)}")
    if not values:
        raise ValueError(f"no {what} selected; choose from: {', '.join(choices)}")
    return values


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """``value`` when it is one of ``choices``; ValueError naming it and the choices."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def check_datasets(keys: Sequence[str]) -> list[str]:
    """The keys, validated; ValueError naming the bad ones and listing the choices."""
    return _check_choices(keys, list(DATASETS), "dataset")


def check_optimizers(names: Sequence[str]) -> list[str]:
    """Lower-cased optimizer names, validated against ``OPTIMIZER_NAMES``."""
    return _check_choices([n.lower() for n in names], OPTIMIZER_NAMES, "optimizer")


def starting_configs(optimizers: Sequence[Any], smoothness: float) -> dict[str, dict[str, Any]]:
    """``{label: {"optimizer": spec, hyperparameters}}``; ``smoothness`` is the problem's L.

    ``optimizers``: our names, or ``OptimizerChoice`` s (label, spec, hyperparameters).
    Our optimizers start from the rates in this module's docstring (labelled SGD, Adam,
    ...), with any hyperparameter the choice gives on top; other specs run with the
    hyperparameters they were given (their factory's defaults otherwise).
    """
    if not (np.isfinite(smoothness) and smoothness > 0):
        raise ValueError(f"smoothness L must be finite and > 0, got {smoothness}")
    rates = {"sgd": 1.0 / smoothness, "momentum": 1.0 / smoothness,
             "nesterov": 1.0 / smoothness, "adam": 1e-2, "adamw": 1e-2, "nadam": 1e-2,
             "rmsprop": 1e-3, "adagrad": 1e-1}
    configs: dict[str, dict[str, Any]] = {}
    for item in optimizers:
        label, spec, given = (item, item, {}) if isinstance(item, str) else item
        config: dict[str, Any] = {"optimizer": spec}
        if spec in rates:
            config["learning_rate"] = float(rates[spec])
            if spec == "adamw":
                config["weight_decay"] = 1e-4
            label = DISPLAY_NAMES.get(label, label)
        configs[label] = {**config, **given}
    return configs
