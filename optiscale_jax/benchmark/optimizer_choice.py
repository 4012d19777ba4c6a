"""The benchmark's view of an optimizer choice: validate, build, describe, measure its state.

An optimizer is named by a string: one of ours (``adam``, case-insensitive).
Everything the benchmark needs from ``optiscale_jax.optimizers`` goes through
this module, so the runner, the campaign and the report see one interface:

* :func:`canonical` - the spelling stored in records (our names lower-cased);
* :func:`validate` - ValueError naming the optimizer and the bad hyperparameter,
  before any run starts;
* :func:`build` - the ``optax.GradientTransformation``;
* :func:`state_bytes` - bytes of its state for parameters of a shape, from
  ``jax.eval_shape`` of ``init`` (nothing is allocated);
* :func:`describe` - what the report shows: import path, package version,
  every hyperparameter value, state bytes per parameter.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import optax

import optiscale_jax
from optiscale_jax.optimizers import OPTIMIZER_NAMES, default_hyperparams, get_optimizer

__all__ = ["build", "canonical", "default_learning_rate", "describe", "engine_arguments",
           "state_bytes", "validate"]


def canonical(optimizer: str) -> str:
    """The stored spelling: our names lower-cased, other specs as given (stripped)."""
    optimizer = optimizer.strip()
    return optimizer.lower() if optimizer.lower() in OPTIMIZER_NAMES else optimizer


def validate(optimizer: str, hyperparameters: Mapping[str, Any]) -> None:
    """Builds the transform once: unknown names and bad hyperparameters raise ValueError now."""
    build(optimizer, hyperparameters)


def build(optimizer: str, hyperparameters: Mapping[str, Any]) -> optax.GradientTransformation:
    """The transform for ``optimizer`` with ``hyperparameters``."""
    return get_optimizer(optimizer, **dict(hyperparameters))


def full_hyperparameters(optimizer: str, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """Every hyperparameter value the optimizer runs with (its defaults, then the given)."""
    return {**default_hyperparams(canonical(optimizer)), **dict(hyperparameters)}


def default_learning_rate(optimizer: str) -> float:
    """The optimizer's default learning rate (the centre of a tuning grid when none is set)."""
    return float(default_hyperparams(canonical(optimizer))["learning_rate"])


def engine_arguments(optimizer: str, hyperparameters: Mapping[str, Any]) -> tuple[Any, dict]:
    """``(optimizer, hyperparams)`` for ``training.run``."""
    return optimizer, dict(hyperparameters)


def state_bytes(optimizer: str, hyperparameters: Mapping[str, Any],
                param_shape: tuple[int, ...], dtype: str) -> int:
    """Bytes of the optimizer's state for parameters of ``param_shape`` in ``dtype``."""
    transform = build(optimizer, hyperparameters)
    params = jax.ShapeDtypeStruct(tuple(param_shape), np.dtype(dtype))
    state = jax.eval_shape(transform.init, params)
    return int(sum(leaf.size * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(state)))


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return optiscale_jax.__version__


def describe(optimizer: str, hyperparameters: Mapping[str, Any], param_shape: tuple[int, ...],
             n_state_bytes: int) -> dict[str, Any]:
    """The report's identification of the optimizer: import path, version, every
    hyperparameter value, and state bytes per parameter."""
    name = canonical(optimizer)
    n_params = math.prod(param_shape)
    return {"spec": name, "import_path": f"optiscale_jax.optimizers.{name}",
            "package": "optiscale_jax", "version": _version("optiscale_jax"),
            "hyperparameters": full_hyperparameters(name, hyperparameters),
            "state_bytes_per_parameter": n_state_bytes / n_params if n_params else None}
