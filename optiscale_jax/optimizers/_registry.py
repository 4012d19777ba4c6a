"""Names -> optimizer factories and their default hyperparameters."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import optax

from optiscale_jax.optimizers import _alias

_FACTORIES: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adagrad": _alias.adagrad,
    "adam": _alias.adam,
    "adamw": _alias.adamw,
    "momentum": _alias.momentum,
    "nadam": _alias.nadam,
    "nesterov": _alias.nesterov,
    "rmsprop": _alias.rmsprop,
    "sgd": _alias.sgd,
}

OPTIMIZER_NAMES: tuple[str, ...] = tuple(sorted(_FACTORIES))


def _canonical(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in _FACTORIES:
        raise ValueError(
            f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZER_NAMES)}")
    return name.lower()


def optimizer_keywords(name: str) -> dict[str, Any]:
    """Every keyword `name` accepts (the optax alias's), with its default; `namespace` aside."""
    factory = _FACTORIES[_canonical(name)]
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()
            if p.name != "namespace"}


def default_hyperparams(name: str) -> dict[str, Any]:
    """The numeric hyperparameters of `name`'s update rule, with their defaults.

    These are the keywords whose default is a number (learning rate included): the
    values a tuning sweep varies and a report lists. Options that select a variant or a
    storage type (`nesterov`, `centered`, `mu_dtype`, `mask`, an off-by-default
    `momentum=None`, ...) are in `optimizer_keywords(name)`.
    """
    return {key: value for key, value in optimizer_keywords(name).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def get_optimizer(name: str, *, namespace: Any = None, **hyperparams: Any) -> optax.GradientTransformation:
    """The optimizer `name` with `hyperparams` (unspecified ones take their defaults).

    Example: `get_optimizer("adam", learning_rate=1e-3, nesterov=True)`. Any keyword of
    `optimizer_keywords(name)` is accepted.
    Raises ValueError for an unknown name or hyperparameter, or a value out of range.
    """
    canonical = _canonical(name)
    accepted = optimizer_keywords(canonical)
    unknown = sorted(set(hyperparams) - set(accepted))
    if unknown:
        raise ValueError(
            f"{canonical}: unknown hyperparameter(s) {', '.join(map(repr, unknown))}; "
            f"valid ones: {', '.join(accepted)}")
    return _FACTORIES[canonical](**hyperparams, namespace=namespace)
