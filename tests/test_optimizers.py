"""Optimizers: equal to optax step for step, traceable hyperparameters, clear errors."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optiscale_jax import optimizers
from optiscale_jax.backends import get_backend

# name -> (our hyperparameters, optax's equivalent optimizer)
CASES = {
    "sgd": (dict(learning_rate=0.05), lambda: optax.sgd(0.05)),
    "momentum": (dict(learning_rate=0.05, momentum=0.8), lambda: optax.sgd(0.05, momentum=0.8)),
    "nesterov": (dict(learning_rate=0.05, momentum=0.8),
                 lambda: optax.sgd(0.05, momentum=0.8, nesterov=True)),
    "adam": (dict(learning_rate=0.01, b1=0.85, b2=0.99, eps=1e-6),
             lambda: optax.adam(0.01, b1=0.85, b2=0.99, eps=1e-6)),
    "adamw": (dict(learning_rate=0.01, weight_decay=0.05),
              lambda: optax.adamw(0.01, weight_decay=0.05)),
    "nadam": (dict(learning_rate=0.01), lambda: optax.nadam(0.01)),
    "rmsprop": (dict(learning_rate=0.01, decay=0.95, eps=1e-6),
                lambda: optax.rmsprop(0.01, decay=0.95, eps=1e-6)),
    "adagrad": (dict(learning_rate=0.1, initial_accumulator_value=0.2, eps=1e-7),
                lambda: optax.adagrad(0.1, initial_accumulator_value=0.2, eps=1e-7)),
}
N_STEPS = 50


def random_tree(seed: int, dtype) -> dict:
    """A nested pytree of parameters of several shapes."""
    rng = np.random.default_rng(seed)
    return {
        "dense": {"w": rng.normal(size=(5, 3)).astype(dtype), "b": rng.normal(size=3).astype(dtype)},
        "scale": [rng.normal(size=()).astype(dtype), rng.normal(size=(2, 2, 2)).astype(dtype)],
    }


def gradient_stream(dtype) -> list[dict]:
    """50 different random gradients (fresh each step, some exact zeros for adagrad's where)."""
    grads = [random_tree(100 + step, dtype) for step in range(N_STEPS)]
    grads[0]["dense"]["b"][0] = 0.0
    return grads


def run_steps(tx, params, grads, apply=optax.apply_updates, jit=False):
    """Apply `tx` for every gradient; return the list of params after each step."""
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    history = []
    for g in grads:
        updates, state = update(g, state, params)
        params = apply(params, updates)
        history.append(params)
    return history


def assert_trees_close(actual, expected, rtol):
    """Each leaf equal to relative `rtol` in the 2-norm, ||a - e|| <= rtol * ||e||, same dtype.

    (Norm-wise, since an entry that passes near zero loses relative accuracy to
    cancellation in p - lr*d, whichever library computes it.)
    """
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape
        error = np.linalg.norm((a - e).ravel().astype(np.float64))
        scale = np.linalg.norm(e.ravel().astype(np.float64))
        assert error <= rtol * scale, f"relative error {error / scale:.3g} > {rtol:g}"


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_matches_optax_for_50_steps(name, dtype, rtol):
    hyperparams, reference = CASES[name]
    with jax.enable_x64(dtype == np.float64):
        params = jax.tree.map(jnp.asarray, random_tree(0, dtype))
        grads = [jax.tree.map(jnp.asarray, g) for g in gradient_stream(dtype)]
        # both jitted: XLA compiles the same arithmetic the same way
        ours = run_steps(optimizers.get_optimizer(name, **hyperparams), params, grads, jit=True)
        theirs = run_steps(reference(), params, grads, jit=True)
        for a, b in zip(ours, theirs, strict=True):
            assert_trees_close(a, b, rtol)
        # the run moved: the comparison is not between two untouched copies
        assert not np.allclose(np.asarray(ours[-1]["dense"]["w"]), np.asarray(params["dense"]["w"]))


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_backend_matches_jax_in_float64(name):
    hyperparams, _ = CASES[name]
    numpy_backend = get_backend("numpy")
    params_np = random_tree(0, np.float64)
    grads_np = gradient_stream(np.float64)
    reference = run_steps(numpy_backend.optimizer(name, **hyperparams), params_np, grads_np,
                          apply=numpy_backend.apply_updates)
    assert not any(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(reference[-1]))
    with jax.enable_x64(True):
        ours = run_steps(optimizers.get_optimizer(name, **hyperparams),
                         jax.tree.map(jnp.asarray, params_np),
                         [jax.tree.map(jnp.asarray, g) for g in grads_np])
        for a, b in zip(ours, reference):
            assert_trees_close(a, b, 1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jitted_update_compiles_once_and_keeps_dtype(name):
    hyperparams, _ = CASES[name]
    tx = optimizers.get_optimizer(name, **hyperparams)
    params = jax.tree.map(jnp.asarray, random_tree(0, np.float32))

    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)  # runs only while tracing
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for g in gradient_stream(np.float32)[:3]:
        params, state = step(params, state, jax.tree.map(jnp.asarray, g))
    assert len(traces) == 1 and step._cache_size() == 1
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state)
               if jnp.issubdtype(leaf.dtype, jnp.floating))


@pytest.mark.parametrize("name", sorted(CASES))
def test_vmap_over_8_learning_rates_equals_8_runs(name):
    hyperparams, _ = CASES[name]
    learning_rates = jnp.geomspace(1e-3, 1e-1, 8).astype(jnp.float32)
    params = jax.tree.map(jnp.asarray, random_tree(0, np.float32))
    grads = [jax.tree.map(jnp.asarray, g) for g in gradient_stream(np.float32)[:10]]

    def final_params(learning_rate):
        tx = optimizers.get_optimizer(name, **{**hyperparams, "learning_rate": learning_rate})
        return run_steps(tx, params, grads)[-1]

    swept = jax.jit(jax.vmap(final_params))(learning_rates)
    for i, lr in enumerate(np.asarray(learning_rates)):
        separate = final_params(float(lr))
        assert_trees_close(jax.tree.map(lambda x: x[i], swept), separate, 1e-5)


def test_traced_learning_rate_does_not_recompile():
    params = jnp.ones(4)

    traces = []

    @jax.jit
    def one_step(learning_rate):
        traces.append(1)
        tx = optimizers.adam(learning_rate)
        updates, _ = tx.update(params, tx.init(params), params)
        return updates

    first = one_step(jnp.float32(0.1))
    second = one_step(jnp.float32(0.2))
    np.testing.assert_allclose(np.asarray(second), 2 * np.asarray(first), rtol=1e-6)
    assert len(traces) == 1


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw", "rmsprop", "adagrad"])
def test_inject_hyperparams(name):
    hyperparams, reference = CASES[name]
    params = jax.tree.map(jnp.asarray, random_tree(0, np.float32))
    grads = [jax.tree.map(jnp.asarray, g) for g in gradient_stream(np.float32)[:5]]
    injected = optax.inject_hyperparams(getattr(optimizers, name))(**hyperparams)
    state = injected.init(params)
    step = jax.jit(injected.update)
    for g in grads:
        updates, state = step(g, state, params)
        params_next = optax.apply_updates(params, updates)
        params = params_next
    expected = run_steps(reference(), jax.tree.map(jnp.asarray, random_tree(0, np.float32)),
                         grads)[-1]
    assert_trees_close(params, expected, 1e-6)
    # the learning rate can be changed in the state without recompiling
    state.hyperparams["learning_rate"] = jnp.asarray(0.0, jnp.float32)
    updates, _ = step(grads[0], state, params)
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))


def test_learning_rate_schedule_matches_optax():
    schedule = optax.exponential_decay(0.1, transition_steps=5, decay_rate=0.5)
    params = jax.tree.map(jnp.asarray, random_tree(0, np.float32))
    grads = [jax.tree.map(jnp.asarray, g) for g in gradient_stream(np.float32)[:20]]
    ours = run_steps(optimizers.momentum(schedule, momentum=0.9), params, grads)[-1]
    theirs = run_steps(optax.sgd(schedule, momentum=0.9), params, grads)[-1]
    assert_trees_close(ours, theirs, 1e-6)
    numpy_backend = get_backend("numpy")
    reference = run_steps(numpy_backend.optimizer("momentum", learning_rate=schedule),
                          random_tree(0, np.float32), [jax.tree.map(np.asarray, g) for g in grads],
                          apply=numpy_backend.apply_updates)[-1]
    assert_trees_close(reference, ours, 1e-5)


def test_state_structure_independent_of_hyperparameters():
    params = jnp.zeros(3)
    for name in optimizers.OPTIMIZER_NAMES:
        constant = optimizers.get_optimizer(name, learning_rate=0.1).init(params)
        other = optimizers.get_optimizer(name, learning_rate=0.5).init(params)
        scheduled = optimizers.get_optimizer(name, learning_rate=optax.constant_schedule(0.1)).init(params)
        chex.assert_trees_all_equal_structs(constant, other, scheduled)
        # and stable under lax.cond (both branches must return the same structure)
        tx = optimizers.get_optimizer(name, learning_rate=0.1)
        state = tx.init(params)
        out = jax.lax.cond(True, lambda s: tx.update(params + 1, s, params)[1], lambda s: s, state)
        chex.assert_trees_all_equal_structs(out, state)


def test_registry_defaults_and_names():
    assert optimizers.OPTIMIZER_NAMES == (
        "adagrad", "adam", "adamw", "momentum", "nadam", "nesterov", "rmsprop", "sgd")
    assert optimizers.default_hyperparams("adamw")["weight_decay"] == 1e-4
    assert optimizers.default_hyperparams("ADAM")["learning_rate"] == 1e-3


@pytest.mark.parametrize("call,match", [
    (lambda: optimizers.get_optimizer("adm"), "unknown optimizer 'adm'; choose one of: adagrad, adam"),
    (lambda: optimizers.get_optimizer("adam", beta1=0.9), "unknown hyperparameter.*'beta1'.*valid ones: learning_rate, b1"),
    (lambda: optimizers.sgd(-0.1), r"learning_rate=-0.1 is invalid; learning_rate must be a finite number >= 0"),
    (lambda: optimizers.adam(float("nan")), "learning_rate=nan is invalid"),
    (lambda: optimizers.adam(1e-3, b1=1.0), r"b1=1.0 is outside the valid range \[0, 1\)"),
    (lambda: optimizers.adam(1e-3, b2=-0.1), r"b2=-0.1 is outside the valid range \[0, 1\)"),
    (lambda: optimizers.adam(1e-3, eps=-1e-8), "eps=-1e-08 is invalid"),
    (lambda: optimizers.adamw(1e-3, weight_decay=-0.01), "weight_decay=-0.01 is invalid"),
    (lambda: optimizers.momentum(0.1, momentum=1.5), r"momentum=1.5 is outside the valid range"),
    (lambda: optimizers.rmsprop(0.1, decay=1.0), "decay=1.0 is outside"),
    (lambda: optimizers.adagrad(0.1, initial_accumulator_value=-1), "initial_accumulator_value=-1 is invalid"),
    (lambda: optimizers.sgd(None), "learning_rate is required"),
])
def test_bad_hyperparameters_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_adamw_without_params_says_how_to_fix():
    tx = optimizers.adamw(1e-3)
    state = tx.init(jnp.ones(2))
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(jnp.ones(2), state)
