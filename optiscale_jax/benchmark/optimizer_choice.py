"""The benchmark's view of an optimizer: choose, validate, build, describe, measure its state.

An optimizer is named by a spec string (``optiscale_jax.optimizers.resolve_optimizer``):
one of ours (``adam``, case-insensitive), an optax alias (``optax:lion``,
``optax:contrib.muon``) or a user factory (``my_pkg.my_opt:make``,
``path/to/file.py:make``) returning an ``optax.GradientTransformation``.
Everything the benchmark needs from ``optiscale_jax.optimizers`` goes through
this module:

* :class:`OptimizerChoice` - a label, a spec string and hyperparameters (plain data, so
  a plan travels to worker processes); :func:`resolve_choices` builds them from
  ``--optimizers`` / ``--hparams`` / ``--config`` or a suite, validating every spec
  (unknown import path, a factory that raises or returns no transform, a
  hyperparameter it does not take: ``OptimizerSpecError``, a ValueError) before any run;
* :func:`canonical`, :func:`validate`, :func:`spec_of` - the stored spelling and
  the resolved ``OptimizerSpec``;
* :func:`engine_arguments` - what ``training.run`` takes (our names by name, others
  as their built transform);
* :func:`state_bytes` and :func:`describe` - optimizer-state bytes (from
  ``jax.eval_shape`` of ``init``, nothing allocated) and what the report shows: import
  path, version, every hyperparameter value, state bytes per parameter.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from optiscale_jax.benchmark.identity import canonical_json
from optiscale_jax.optimizers import (
    EXTENDED_BASELINES,
    OPTIMIZER_NAMES,
    OptimizerSpec,
    default_hyperparams,
    load_optimizer_config,
    parse_hparams,
    resolve_optimizer,
    resolve_optimizers,
    state_bytes_per_parameter,
)

__all__ = ["OptimizerChoice", "canonical", "default_learning_rate", "describe",
           "engine_arguments", "full_hyperparameters", "is_ours", "resolve_choices", "spec_of",
           "state_bytes", "suite_choices", "sweep_target", "validate"]


class OptimizerChoice(NamedTuple):
    """An optimizer of a plan: display label, spec string, the hyperparameters given."""

    label: str
    spec: str
    hyperparameters: dict[str, Any]


def is_ours(optimizer: str) -> bool:
    """Whether ``optimizer`` names one of this package's optimizers."""
    return optimizer.strip().lower().removeprefix("optiscale:") in OPTIMIZER_NAMES


def canonical(optimizer: str) -> str:
    """The stored spelling: our names lower-cased, other specs as given (stripped)."""
    optimizer = optimizer.strip()
    return optimizer.lower().removeprefix("optiscale:") if is_ours(optimizer) else optimizer


@functools.lru_cache(maxsize=256)
def _resolved(optimizer: str, hyper_json: str) -> OptimizerSpec:
    """Resolving imports and builds a factory: once per (spec, hyperparameters)."""
    return resolve_optimizer(optimizer, json.loads(hyper_json))


def spec_of(optimizer: str, hyperparameters: Mapping[str, Any]) -> OptimizerSpec:
    """The resolved spec (imported, hyperparameters checked against the factory, built once)."""
    return _resolved(canonical(optimizer), canonical_json(dict(hyperparameters)))


def validate(optimizer: str, hyperparameters: Mapping[str, Any]) -> None:
    """Resolves the spec now: an invalid one raises ``OptimizerSpecError`` (a ValueError)."""
    spec_of(optimizer, hyperparameters)


def default_learning_rate(optimizer: str) -> float:
    """The optimizer's default learning rate (a tuning grid's centre when none is given)."""
    if is_ours(optimizer):
        return float(default_hyperparams(canonical(optimizer))["learning_rate"])
    rate = spec_of(optimizer, {}).full_hyperparams().get("learning_rate")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool):
        raise ValueError(f"optimizer spec {optimizer!r} has no default learning_rate; give one "
                         f"(e.g. --hparams=NAME.learning_rate=1e-3) to tune around")
    return float(rate)


def engine_arguments(optimizer: str, hyperparameters: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(optimizer, hyperparams)`` for ``training.run``: our names by name; any other
    spec as its built ``GradientTransformation`` (it carries its hyperparameters)."""
    if is_ours(optimizer):
        return canonical(optimizer), dict(hyperparameters)
    return spec_of(optimizer, hyperparameters).build(), None


def _recordable(value: Any) -> Any:
    """A hyperparameter value as JSON: numbers, strings, bools, None and lists of them
    as they are; anything else (a dtype, a function, a mask) as its ``repr``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_recordable(v) for v in value]
    return repr(value)


def full_hyperparameters(optimizer: str, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """Every hyperparameter value the optimizer runs with (its defaults, then the given)."""
    return {key: _recordable(value)
            for key, value in spec_of(optimizer, hyperparameters).full_hyperparams().items()}


def sweep_target(optimizer: str, hyperparameters: Mapping[str, Any]) -> Any:
    """What ``training.sweep`` is given for a learning-rate sweep: our names by name, any
    other spec as its ``OptimizerSpec`` (``build(learning_rate=rate)`` inside the vmap)."""
    if is_ours(optimizer):
        return canonical(optimizer)
    spec = spec_of(optimizer, hyperparameters)  # build(learning_rate=rate) overrides its rate
    if not spec.accepts_learning_rate:
        raise ValueError(f"optimizer spec {optimizer!r}: its factory takes no learning_rate, so "
                         "--tune cannot sweep it; run it without --tune")
    return spec


def state_bytes(optimizer: str, hyperparameters: Mapping[str, Any],
                param_shape: tuple[int, ...], dtype: str) -> int:
    """Bytes of the optimizer's state for parameters of ``param_shape`` in ``dtype``."""
    transform = spec_of(optimizer, hyperparameters).build()
    params = jax.ShapeDtypeStruct(tuple(param_shape), np.dtype(dtype))
    return int(round(state_bytes_per_parameter(transform, params) * math.prod(param_shape)))


def describe(optimizer: str, hyperparameters: Mapping[str, Any], param_shape: tuple[int, ...],
             n_state_bytes: int) -> dict[str, Any]:
    """The report's identification of the optimizer: spec, import path, version, every
    hyperparameter value, and state bytes per parameter."""
    spec = spec_of(optimizer, hyperparameters)
    n_params = math.prod(param_shape)
    return {"spec": spec.spec, "name": spec.name, "source": spec.source,
            "import_path": spec.import_path, "version": spec.version,
            "hyperparameters": full_hyperparameters(optimizer, hyperparameters),
            "state_bytes_per_parameter": n_state_bytes / n_params if n_params else None}


# ----------------------------------------------------------------------------- choices
def _from_specs(specs: Sequence[OptimizerSpec]) -> tuple[OptimizerChoice, ...]:
    return tuple(OptimizerChoice(s.name, s.spec, dict(s.hyperparams)) for s in specs)


def suite_choices(ours: Sequence[str], extended: bool) -> tuple[OptimizerChoice, ...]:
    """A suite's optimizers: our names (default hyperparameters set by the suite) and, for
    the extended suite, every ``EXTENDED_BASELINES`` entry with its hyperparameters."""
    choices = [OptimizerChoice(name, name, {}) for name in ours]
    if extended:
        choices += _from_specs(list(EXTENDED_BASELINES.values()))
    return tuple(choices)


def resolve_choices(optimizers: Sequence[str] | None, hparams: str | None,
                    config: str | os.PathLike | None, suite_default: Sequence[OptimizerChoice]
                    ) -> tuple[OptimizerChoice, ...]:
    """The plan's optimizers from the flags, every spec resolved (OptimizerSpecError first).

    ``config`` (a JSON / YAML file) or ``optimizers`` (spec strings) replace the suite's
    list; ``hparams`` (``NAME.KEY=VALUE,...``) sets hyperparameters by display name
    (on top of a config file's or a suite's).
    """
    if config is not None and optimizers:
        raise ValueError("--config and --optimizers both list optimizers; give one of them")
    overrides = parse_hparams(hparams)
    if config is not None:
        base = _from_specs(load_optimizer_config(config))
    elif optimizers:
        base = _from_specs(resolve_optimizers([o.strip() for o in optimizers if o.strip()],
                                              overrides))
    else:
        base = tuple(suite_default)
    labels = [c.label for c in base]
    orphans = sorted(set(overrides) - set(labels))
    if orphans:
        raise ValueError(f"--hparams names {', '.join(map(repr, orphans))}, which no optimizer "
                         f"of the run is called; the optimizers are: {', '.join(labels)}")
    choices = tuple(OptimizerChoice(c.label, canonical(c.spec),
                                    {**c.hyperparameters, **overrides.get(c.label, {})})
                    for c in base)
    for choice in choices:
        validate(choice.spec, choice.hyperparameters)
    return choices
