"""Small optax-style building blocks: learning-rate-free directions, decay, lr scaling.

Each factory returns an `optax.GradientTransformation` whose state is a NamedTuple
of arrays. The structure of a state never depends on numeric hyperparameter
values (a constant learning rate and a schedule both keep a step count), so a
state built for one setting can be reused for any other, and hyperparameters may
be traced (`jax.vmap` sweeps, `optax.inject_hyperparams`). Boolean variants
(`bias_correction`, `centered`) and a weight-decay schedule add state fields, as
in optax.

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
from optiscale_jax.optimizers._validation import check_float_params

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
    """RMSProp state: moving average nu of squared gradient magnitudes."""
    nu: Any


class ScaleByRmsWithCountState(NamedTuple):
    """RMSProp state with bias correction: step count (int32) and nu."""
    count: Array
    nu: Any


class ScaleByRStdDevState(NamedTuple):
    """Centered RMSProp state: moving averages of g (mu) and |g|^2 (nu)."""
    mu: Any
    nu: Any


class ScaleByRStdDevWithCountState(NamedTuple):
    """Centered RMSProp state with bias correction: step count, mu, nu."""
    count: Array
    mu: Any
    nu: Any


class ScaleByAdagradState(NamedTuple):
    """Adagrad state: running sum of squared gradient magnitudes."""
    sum_of_squares: Any


class ScaleByLearningRateState(NamedTuple):
    """Step count, kept for constant rates too so the structure never changes."""
    count: Array


class WeightDecayScheduleState(NamedTuple):
    """Step count of a weight-decay schedule."""
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


def _full_like(params: Any, value: Any, xp: Any, dtype: Any = None) -> Any:
    return _tree_map(lambda p: xp.full_like(p, value, dtype=dtype), params)


def _count(xp: Any) -> Array:
    return xp.zeros([], dtype=xp.int32)


def scale_by_momentum(decay: Any = 0.9, nesterov: bool = False, accumulator_dtype: Any = None, *,
                      namespace: Any = None) -> optax.GradientTransformation:
    """Heavy-ball (or Nesterov) momentum direction m_t = g_t + decay m_{t-1} (`optax.trace`).

    `accumulator_dtype`: dtype of the stored m (None: the parameters' dtype).
    """
    xp = _xp(namespace)

    def init_fn(params):
        return TraceState(trace=_full_like(params, 0, xp, accumulator_dtype))

    def update_fn(updates, state, params=None):
        del params
        direction, trace = _leafwise(
            lambda g, m: _rules.momentum_direction(g, m, decay, nesterov, xp), 2, updates, state.trace)
        return direction, TraceState(trace=trace)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_adam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
                  mu_dtype: Any = None, *, nesterov: bool = False,
                  namespace: Any = None) -> optax.GradientTransformation:
    """Bias-corrected Adam direction (NAdam when `nesterov`); see `_rules.adam_direction`.

    `mu_dtype`: dtype of the stored first moment (None: the parameters' dtype).
    """
    xp = _xp(namespace)

    def init_fn(params):
        return ScaleByAdamState(count=_count(xp), mu=_full_like(params, 0, xp, mu_dtype),
                                nu=_full_like(params, 0, xp))

    def update_fn(updates, state, params=None):
        del params
        count = _rules.safe_increment(state.count, xp)
        direction, mu, nu = _leafwise(
            lambda g, m, v: _rules.adam_direction(g, m, v, count, b1, b2, eps, eps_root,
                                                  nesterov, xp),
            3, updates, state.mu, state.nu)
        return direction, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_rms(decay: Any = 0.9, eps: Any = 1e-8, initial_scale: Any = 0.0, eps_in_sqrt: bool = True,
                 bias_correction: bool = False, *,
                 namespace: Any = None) -> optax.GradientTransformation:
    """RMSProp direction g / sqrt(nu + eps), nu an EMA of |g|^2 starting at `initial_scale`.

    `eps_in_sqrt=False` gives PyTorch's g / (sqrt(nu) + eps); `bias_correction`
    divides nu by 1 - decay^t (and keeps a step count). Matches `optax.scale_by_rms`.
    """
    xp = _xp(namespace)

    def init_fn(params):
        nu = _full_like(params, initial_scale, xp)
        return ScaleByRmsWithCountState(count=_count(xp), nu=nu) if bias_correction else ScaleByRmsState(nu)

    def update_fn(updates, state, params=None):
        del params
        count = _rules.safe_increment(state.count, xp) if bias_correction else None
        direction, nu = _leafwise(
            lambda g, v: _rules.rms_direction(g, v, count, decay, eps, eps_in_sqrt, xp),
            2, updates, state.nu)
        new_state = ScaleByRmsWithCountState(count, nu) if bias_correction else ScaleByRmsState(nu)
        return direction, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_stddev(decay: Any = 0.9, eps: Any = 1e-8, initial_scale: Any = 0.0, eps_in_sqrt: bool = True,
                    bias_correction: bool = False, *,
                    namespace: Any = None) -> optax.GradientTransformation:
    """Centered RMSProp direction g / sqrt(nu - |mu|^2 + eps) (`optax.scale_by_stddev`)."""
    xp = _xp(namespace)

    def init_fn(params):
        mu, nu = _full_like(params, 0, xp), _full_like(params, initial_scale, xp)
        if bias_correction:
            return ScaleByRStdDevWithCountState(count=_count(xp), mu=mu, nu=nu)
        return ScaleByRStdDevState(mu=mu, nu=nu)

    def update_fn(updates, state, params=None):
        del params
        count = _rules.safe_increment(state.count, xp) if bias_correction else None
        direction, mu, nu = _leafwise(
            lambda g, m, v: _rules.centered_rms_direction(g, m, v, count, decay, eps, eps_in_sqrt, xp),
            3, updates, state.mu, state.nu)
        if bias_correction:
            return direction, ScaleByRStdDevWithCountState(count=count, mu=mu, nu=nu)
        return direction, ScaleByRStdDevState(mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_adagrad(initial_accumulator_value: Any = 0.1, eps: Any = 1e-7, *,
                     namespace: Any = None) -> optax.GradientTransformation:
    """Adagrad direction g / sqrt(sum of |g|^2 + eps), the sum starting at the initial value."""
    xp = _xp(namespace)

    def init_fn(params):
        return ScaleByAdagradState(sum_of_squares=_full_like(params, initial_accumulator_value, xp))

    def update_fn(updates, state, params=None):
        del params
        direction, sums = _leafwise(lambda g, s: _rules.adagrad_direction(g, s, eps, xp),
                                    2, updates, state.sum_of_squares)
        return direction, ScaleByAdagradState(sum_of_squares=sums)

    return optax.GradientTransformation(init_fn, update_fn)


def add_decayed_weights(weight_decay: Any = 1e-4, mask: Any = None, *,
                        namespace: Any = None) -> optax.GradientTransformation:
    """Adds weight_decay * params to the direction (decoupled weight decay).

    `weight_decay` may be a schedule of the step (the state then keeps a count);
    `mask`: a pytree of booleans (or a function params -> such a tree) selecting the
    leaves to decay, applied with `optax.masked`. A constant 0 leaves the direction as is.
    """
    xp = _xp(namespace)
    scheduled = callable(weight_decay)

    def init_fn(params):
        del params
        return WeightDecayScheduleState(count=_count(xp)) if scheduled else optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "add_decayed_weights needs the parameters: call update(grads, state, params).")
        if scheduled:
            rate = weight_decay(state.count)
            new_state = WeightDecayScheduleState(count=_rules.safe_increment(state.count, xp))
        else:
            rate, new_state = weight_decay, state
            if isinstance(weight_decay, (int, float)) and weight_decay == 0:
                return updates, new_state
        return _tree_map(lambda d, p: _rules.decayed_weights(d, p, rate, xp), updates, params), new_state

    transform = optax.GradientTransformation(init_fn, update_fn)
    return transform if mask is None else optax.masked(transform, mask)


def scale_by_learning_rate(learning_rate: LearningRate, *,
                           namespace: Any = None) -> optax.GradientTransformation:
    """Turns a direction d into the descent update -lr * d; `lr` may be a schedule of the step.

    Its `init` refuses integer or boolean parameters (see `check_float_params`); every
    optimizer of this package ends with this transform, so every one refuses them.
    """
    xp = _xp(namespace)

    def init_fn(params):
        check_float_params(params)
        return ScaleByLearningRateState(count=_count(xp))

    def update_fn(updates, state, params=None):
        del params
        rate = learning_rate(state.count) if callable(learning_rate) else learning_rate
        if namespace is not None and callable(learning_rate):
            rate = float(rate)  # a JAX schedule evaluated for a NumPy/CuPy reference run
        updates = _tree_map(lambda d: _rules.scaled_by_learning_rate(d, rate, xp), updates)
        return updates, ScaleByLearningRateState(count=_rules.safe_increment(state.count, xp))

    return optax.GradientTransformation(init_fn, update_fn)
