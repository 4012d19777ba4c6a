"""Small optax-style building blocks: learning-rate-free directions, decay, lr scaling.

Each factory returns an `optax.GradientTransformation` whose state is a NamedTuple
of arrays. The structure of a state never depends on hyperparameter values
(a constant learning rate and a schedule both keep a step count), so a state
built for one hyperparameter setting can be reused for any other, and
hyperparameters may be traced (`jax.vmap` sweeps, `optax.inject_hyperparams`).

`namespace` selects the array module: `None` means `jax.numpy`; the reference
backends pass `numpy` or `cupy` and get the same arithmetic (see `_rules.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optiscale_jax.optimizers import _rules

Array = Any
LearningRate = float | Array | Callable[[Array], Array]


class TraceState(NamedTuple):
    """Momentum buffer m (same pytree as the parameters)."""
    trace: Any


class ScaleByAdamState(NamedTuple):
    """Adam state: step count (int32 scalar), first moment mu, second moment nu."""
    count: Array
    mu: Any
    nu: Any


class ScaleByRmsState(NamedTuple):
    """RMSProp state: moving average nu of squared gradients."""
    nu: Any


class ScaleByAdagradState(NamedTuple):
    """Adagrad state: running sum of squared gradients."""
    sum_of_squares: Any


class ScaleByLearningRateState(NamedTuple):
    """Step count, kept for constant rates too so the structure never changes."""
    count: Array


def _xp(namespace: Any) -> Any:
    return jnp if namespace is None else namespace


def _tree_map(fn: Callable, *trees: Any) -> Any:
    """`jax.tree.map` that leaves None leaves (frozen parameters) alone."""
    return jax.tree.map(lambda first, *rest: None if first is None else fn(first, *rest),
                        *trees, is_leaf=lambda x: x is None)


def _leafwise(rule: Callable, n_out: int, updates: Any, *states: Any) -> tuple[Any, ...]:
    """Apply `rule(g, *state_leaves) -> n_out-tuple` leaf by leaf; return n_out trees.

    Trees have the structure of `updates`; None leaves (frozen parameters) stay None.
    """
    structure = jax.tree.structure(updates, is_leaf=lambda x: x is None)
    leaves = [structure.flatten_up_to(tree) for tree in (updates, *states)]
    results = [None if leaf[0] is None else rule(*leaf) for leaf in zip(*leaves)]
    return tuple(structure.unflatten([None if r is None else r[i] for r in results])
                 for i in range(n_out))


def _zeros_like(params: Any, xp: Any) -> Any:
    return _tree_map(lambda p: xp.zeros_like(p), params)


def _count(xp: Any) -> Array:
    return xp.zeros([], dtype=xp.int32)


def _increment(count: Array, xp: Any) -> Array:
    """count + 1, saturating at the int32 maximum (as `optax.safe_increment`)."""
    return xp.minimum(count + 1, xp.asarray(2**31 - 1, dtype=count.dtype)).astype(count.dtype)


def scale_by_momentum(decay: Any = 0.9, nesterov: bool = False, *,
                      namespace: Any = None) -> optax.GradientTransformation:
    """Heavy-ball (or Nesterov) momentum direction m_t = g_t + decay m_{t-1}."""
    xp = _xp(namespace)

    def init_fn(params):
        return TraceState(trace=_zeros_like(params, xp))

    def update_fn(updates, state, params=None):
        del params
        direction, trace = _leafwise(
            lambda g, m: _rules.momentum_direction(g, m, decay, nesterov), 2, updates, state.trace)
        return direction, TraceState(trace=trace)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_adam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
                  nesterov: bool = False, *, namespace: Any = None) -> optax.GradientTransformation:
    """Bias-corrected Adam direction (NAdam when `nesterov`); see `_rules.adam_direction`."""
    xp = _xp(namespace)

    def init_fn(params):
        return ScaleByAdamState(count=_count(xp), mu=_zeros_like(params, xp),
                                nu=_zeros_like(params, xp))

    def update_fn(updates, state, params=None):
        del params
        step = _increment(state.count, xp)
        direction, mu, nu = _leafwise(
            lambda g, m, v: _rules.adam_direction(g, m, v, step, b1, b2, eps, eps_root,
                                                  nesterov, xp),
            3, updates, state.mu, state.nu)
        return direction, ScaleByAdamState(count=step, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_rms(decay: Any = 0.9, eps: Any = 1e-8, *,
                 namespace: Any = None) -> optax.GradientTransformation:
    """RMSProp direction g / sqrt(nu + eps), nu an EMA of g^2 starting at 0."""
    xp = _xp(namespace)

    def init_fn(params):
        return ScaleByRmsState(nu=_zeros_like(params, xp))

    def update_fn(updates, state, params=None):
        del params
        direction, nu = _leafwise(lambda g, v: _rules.rms_direction(g, v, decay, eps, xp),
                                  2, updates, state.nu)
        return direction, ScaleByRmsState(nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_adagrad(initial_accumulator_value: Any = 0.1, eps: Any = 1e-7, *,
                     namespace: Any = None) -> optax.GradientTransformation:
    """Adagrad direction g / sqrt(sum of g^2 + eps), the sum starting at the initial value."""
    xp = _xp(namespace)

    def init_fn(params):
        return ScaleByAdagradState(sum_of_squares=_tree_map(
            lambda p: xp.full_like(p, initial_accumulator_value), params))

    def update_fn(updates, state, params=None):
        del params
        direction, sums = _leafwise(lambda g, s: _rules.adagrad_direction(g, s, eps, xp),
                                    2, updates, state.sum_of_squares)
        return direction, ScaleByAdagradState(sum_of_squares=sums)

    return optax.GradientTransformation(init_fn, update_fn)


def add_decayed_weights(weight_decay: Any = 1e-4) -> optax.GradientTransformation:
    """Adds weight_decay * params to the direction (decoupled weight decay)."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "add_decayed_weights needs the parameters: call update(grads, state, params).")
        return _tree_map(lambda d, p: _rules.decayed_weights(d, p, weight_decay),
                         updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_learning_rate(learning_rate: LearningRate, *,
                           namespace: Any = None) -> optax.GradientTransformation:
    """Turns a direction d into the descent update -lr * d; `lr` may be a schedule of the step."""
    xp = _xp(namespace)

    def init_fn(params):
        del params
        return ScaleByLearningRateState(count=_count(xp))

    def update_fn(updates, state, params=None):
        del params
        rate = learning_rate(state.count) if callable(learning_rate) else learning_rate
        if namespace is not None and callable(learning_rate):
            rate = float(rate)  # a JAX schedule evaluated for a NumPy/CuPy reference run
        updates = _tree_map(lambda d: _rules.scaled_by_learning_rate(d, rate, xp), updates)
        return updates, ScaleByLearningRateState(count=_increment(state.count, xp))

    return optax.GradientTransformation(init_fn, update_fn)
