"""Checks on optimizer inputs, with errors that name the value and the fix.

Hyperparameters are checked when an optimizer is built: a concrete value must be a
real scalar number in the valid range (a string, a bool, NaN, an array of shape
(1,) are refused). A traced value (inside `jit`/`vmap`, or `optax.inject_hyperparams`
under `jit`) is passed through, since its value is unknown until run time; so is a
schedule (a callable of the step) where the hyperparameter may be one.
Parameters are checked by `init`: they must be floating point or complex.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _scalar(name: str, value: Any, optimizer: str, valid: str, schedule_ok: bool) -> float | None:
    """`value` as a float if it is a concrete real scalar; None if traced or a schedule.

    Raises ValueError (naming `value` and the `valid` range) for anything else.
    A complex value with zero imaginary part counts as real: `optax.inject_hyperparams`
    casts hyperparameters to the parameters' dtype, complex for complex parameters.
    """
    if isinstance(value, jax.core.Tracer):
        return None
    if callable(value):
        if schedule_ok:
            return None
        raise ValueError(f"{optimizer}: {name}={value!r} is a function; {name} must be {valid} "
                         "(only learning_rate and weight_decay may be schedules).")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{optimizer}: {name}={value!r} is a bool; {name} must be {valid}.")
    try:
        array = np.asarray(value)
    except Exception as error:  # any conversion failure is the same user error
        raise ValueError(f"{optimizer}: {name}={value!r} is not a number ({error}); "
                         f"{name} must be {valid}.") from error
    if not (np.issubdtype(array.dtype, np.number) or jnp.issubdtype(array.dtype, jnp.floating)):
        raise ValueError(f"{optimizer}: {name}={value!r} is not a number (got "
                         f"{type(value).__name__}); {name} must be {valid}, e.g. {name}=0.1 "
                         f"rather than {name}='0.1'.")
    if array.ndim != 0:
        raise ValueError(f"{optimizer}: {name}={value!r} is an array of shape {array.shape}; "
                         f"{name} must be a scalar, {valid}.")
    if np.iscomplexobj(array):
        if array.imag != 0:
            raise ValueError(f"{optimizer}: {name}={value!r} is complex; {name} must be {valid}.")
        array = array.real
    number = float(array)
    if not np.isfinite(number):
        raise ValueError(f"{optimizer}: {name}={value!r} is invalid; {name} must be {valid}.")
    return number


def check_non_negative(name: str, value: Any, optimizer: str, *, schedule_ok: bool = False) -> None:
    """Raise ValueError unless `value` is a finite real number >= 0 (or traced / a schedule)."""
    valid = "a finite number >= 0"
    number = _scalar(name, value, optimizer, valid, schedule_ok)
    if number is not None and number < 0:
        raise ValueError(
            f"{optimizer}: {name}={value!r} is invalid; {name} must be {valid} (e.g. {name}=1e-3).")


def check_unit_interval(name: str, value: Any, optimizer: str) -> None:
    """Raise ValueError unless 0 <= value < 1 (or traced)."""
    number = _scalar(name, value, optimizer, "a number in [0, 1)", schedule_ok=False)
    if number is not None and not (0.0 <= number < 1.0):
        dtype = getattr(value, "dtype", None)
        hint = ("; it was rounded in low precision: optax.inject_hyperparams casts hyperparameters to "
                "the parameters' dtype, so pass hyperparam_dtype=jnp.float32"
                if dtype is not None and jnp.dtype(dtype).itemsize <= 2 else "")
        raise ValueError(
            f"{optimizer}: {name}={value!r} is outside the valid range [0, 1); "
            f"use a value such as 0.9 or 0.999{hint}.")


def check_optional_unit_interval(name: str, value: Any, optimizer: str) -> None:
    """None (the feature is off) or a number in [0, 1)."""
    if value is not None:
        check_unit_interval(name, value, optimizer)


def check_learning_rate(value: Any, optimizer: str) -> None:
    """A learning rate is a number >= 0, a traced array, or a schedule `count -> lr`."""
    if value is None:
        raise ValueError(f"{optimizer}: learning_rate is required (e.g. learning_rate=1e-3).")
    check_non_negative("learning_rate", value, optimizer, schedule_ok=True)


def check_flag(name: str, value: Any, optimizer: str) -> bool:
    """A boolean option (`nesterov`, `centered`, ...): True or False, nothing else."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{optimizer}: {name}={value!r} must be True or False.")
    return bool(value)


def check_dtype(name: str, value: Any, optimizer: str, *, for_jax: bool) -> Any:
    """A state dtype option (`mu_dtype`, `accumulator_dtype`): None or a floating/complex dtype.

    Returns the dtype object (None stays None). For JAX it is canonicalized as optax does
    (float64 becomes float32 unless `jax_enable_x64` is on when the optimizer is built).
    """
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError as error:
        raise ValueError(f"{optimizer}: {name}={value!r} is not a dtype ({error}); use None "
                         "(the parameters' dtype) or e.g. 'float32', 'bfloat16'.") from error
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
        raise ValueError(f"{optimizer}: {name}={value!r} is not a floating-point or complex dtype; "
                         "use None (the parameters' dtype) or e.g. 'float32', 'bfloat16'.")
    return jax.dtypes.canonicalize_dtype(dtype) if for_jax else dtype


def check_float_params(params: Any) -> None:
    """Refuse parameters whose dtype is integer or boolean, naming the leaf and the fix.

    optax would add a float update to an integer parameter and truncate it back,
    while its state changes dtype after the first step; neither is an optimizer.
    """
    leaves = jax.tree_util.tree_leaves_with_path(params)
    for path, leaf in leaves:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = np.asarray(leaf).dtype
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
            where = jax.tree_util.keystr(path) or "the parameter array"
            raise ValueError(
                f"optimizer parameters must be floating point or complex, but {where} has dtype "
                f"{np.dtype(dtype).name}; cast the parameters first, e.g. "
                "params = jax.tree.map(lambda p: p.astype(jnp.float32), params).")
