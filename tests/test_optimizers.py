"""Optimizers: one implementation for JAX and NumPy, traceable hyperparameters, saturating step
counts, complex parameters, clear errors for bad inputs.

Step-for-step equality with optax over every keyword is in tests/test_optax_parity.py;
optax's own alias test cases are in tests/test_optimizers_alias_cases.py.
"""

from __future__ import annotations

import inspect
import warnings

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
        error = np.linalg.norm((a - e).ravel().astype(np.complex128))  # complex leaves: |.| of both parts
        scale = np.linalg.norm(e.ravel().astype(np.complex128))
        assert error <= rtol * scale, f"relative error {error / scale:.3g} > {rtol:g}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_backend_matches_jax_in_float64(name):
    hyperparams, _ = CASES[name]
    numpy_backend = get_backend("numpy")
    params_np = random_tree(0, np.float64)
    grads_np = gradient_stream(np.float64)[:20]
    reference = run_steps(numpy_backend.optimizer(name, **hyperparams), params_np, grads_np,
                          apply=numpy_backend.apply_updates)
    assert not any(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(reference[-1]))
    with jax.enable_x64(True):
        ours = run_steps(optimizers.get_optimizer(name, **hyperparams),
                         jax.tree.map(jnp.asarray, params_np),
                         [jax.tree.map(jnp.asarray, g) for g in grads_np], jit=True)
        for a, b in zip(ours, reference, strict=True):
            assert_trees_close(a, b, 1e-12)


@pytest.mark.slow
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
    one_rate = jax.jit(final_params)  # compiled once, called for each rate
    for i, lr in enumerate(learning_rates):
        separate = one_rate(lr)
        assert_trees_close(jax.tree.map(lambda x, i=i: x[i], swept), separate, 1e-5)


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
        out = jax.lax.cond(True, lambda s, tx=tx: tx.update(params + 1, s, params)[1], lambda s: s, state)
        chex.assert_trees_all_equal_structs(out, state)


def test_registry_defaults_and_names():
    assert optimizers.OPTIMIZER_NAMES == (
        "adagrad", "adam", "adamw", "momentum", "nadam", "nesterov", "rmsprop", "sgd")
    assert optimizers.default_hyperparams("adamw")["weight_decay"] == 1e-4
    assert optimizers.default_hyperparams("ADAM")["learning_rate"] == 1e-3


@pytest.mark.parametrize("call,match", [
    (lambda: optimizers.get_optimizer("adm"),
     "unknown optimizer 'adm'; choose one of: adagrad, adam"),
    (lambda: optimizers.get_optimizer("adam", beta1=0.9),
     "unknown hyperparameter.*'beta1'.*valid ones: learning_rate, b1"),
    (lambda: optimizers.sgd(-0.1),
     r"learning_rate=-0.1 is invalid; learning_rate must be a finite number >= 0"),
    (lambda: optimizers.adam(float("nan")), "learning_rate=nan is invalid"),
    (lambda: optimizers.adam(1e-3, b1=1.0), r"b1=1.0 is outside the valid range \[0, 1\)"),
    (lambda: optimizers.adam(1e-3, b2=-0.1), r"b2=-0.1 is outside the valid range \[0, 1\)"),
    (lambda: optimizers.adam(1e-3, eps=-1e-8), "eps=-1e-08 is invalid"),
    (lambda: optimizers.adamw(1e-3, weight_decay=-0.01), "weight_decay=-0.01 is invalid"),
    (lambda: optimizers.momentum(0.1, momentum=1.5), r"momentum=1.5 is outside the valid range"),
    (lambda: optimizers.rmsprop(0.1, decay=1.0), "decay=1.0 is outside"),
    (lambda: optimizers.adagrad(0.1, initial_accumulator_value=-1),
     "initial_accumulator_value=-1 is invalid"),
    (lambda: optimizers.sgd(None), "learning_rate is required"),
    (lambda: optimizers.sgd("0.1"), r"learning_rate='0.1' is not a number.*finite number >= 0"),
    (lambda: optimizers.sgd(np.array([np.nan])),
     r"learning_rate=array\(\[nan\]\) is an array of shape \(1,\)"),
    (lambda: optimizers.sgd(np.nan), "learning_rate=nan is invalid; learning_rate must be a finite number"),
    (lambda: optimizers.adam(True), "learning_rate=True is a bool"),
    (lambda: optimizers.adam(0.1 + 0.1j), r"learning_rate=\(0.1\+0.1j\) is complex"),
    (lambda: optimizers.adam(1e-3, b1="0.9"), r"b1='0.9' is not a number.*\[0, 1\)"),
    (lambda: optimizers.adam(1e-3, b1=optax.constant_schedule(0.9)), "b1=.* is a function"),
    (lambda: optimizers.adam(1e-3, mu_dtype="flaot16"), "mu_dtype='flaot16' is not a dtype"),
    (lambda: optimizers.adam(1e-3, mu_dtype="int32"), "mu_dtype='int32' is not a floating-point"),
    (lambda: optimizers.adam(1e-3, nesterov="yes"), "nesterov='yes' must be True or False"),
    (lambda: optimizers.sgd(0.1, momentum=1.0), r"momentum=1.0 is outside the valid range"),
    (lambda: optimizers.rmsprop(0.1, initial_scale=-1.0), "initial_scale=-1.0 is invalid"),
    (lambda: optimizers.rmsprop(0.1, centered=1), "centered=1 must be True or False"),
    (lambda: optimizers.adamw(0.1, mu_dtype=0.01), "mu_dtype=0.01 is not a dtype"),
])
def test_bad_hyperparameters_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_adamw_without_params_says_how_to_fix():
    tx = optimizers.adamw(1e-3)
    state = tx.init(jnp.ones(2))
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(jnp.ones(2), state)


@pytest.mark.parametrize("name", optimizers.OPTIMIZER_NAMES)
@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.bool_])
def test_integer_parameters_are_refused_at_init(name, dtype):
    params = {"layer": {"w": np.ones(3, np.float32), "steps": np.ones(2, dtype)}}
    expected = rf"\['layer'\]\['steps'\] has dtype {np.dtype(dtype).name}; cast the parameters first"
    with pytest.raises(ValueError, match=expected):
        optimizers.get_optimizer(name).init(params)
    with pytest.raises(ValueError, match="has dtype"):
        get_backend("numpy").optimizer(name).init(params)


def test_bfloat16_injected_hyperparameters_point_to_hyperparam_dtype():
    params = jnp.ones(2, jnp.bfloat16)
    with pytest.raises(ValueError, match=r"b2=.* is outside .*hyperparam_dtype=jnp.float32"):
        optax.inject_hyperparams(optimizers.adam)(learning_rate=0.1).init(params)  # 0.999 -> 1.0
    injected = optax.inject_hyperparams(optimizers.adam, hyperparam_dtype=jnp.float32)(learning_rate=0.1)
    assert injected.init(params).inner_state[0].mu.dtype == jnp.bfloat16


def test_traced_hyperparameters_are_accepted():
    params = jnp.ones(3)

    def first_update(b1, learning_rate):
        tx = optimizers.adam(learning_rate, b1=b1, mu_dtype="float32")
        return tx.update(params, tx.init(params), params)[0]

    updates = jax.jit(jax.vmap(first_update))(jnp.array([0.5, 0.9]), jnp.array([0.1, 0.2]))
    np.testing.assert_allclose(updates[1], 2 * updates[0], rtol=1e-6)  # first step: -lr g / |g|


def test_complex_parameters_use_the_squared_magnitude():
    params = jnp.array([1 + 1j, -1j], jnp.complex64)
    grads = jnp.array([1j, 2], jnp.complex64)
    updates, state = optimizers.adam(0.1).update(grads, optimizers.adam(0.1).init(params), params)
    np.testing.assert_allclose(updates, [-0.1j, -0.1], atol=1e-6)  # -lr * g / |g|, not -lr * g / sqrt(g^2)
    np.testing.assert_allclose(state[0].nu, [0.001, 0.004], rtol=1e-6)  # (1 - b2) |g|^2


@pytest.mark.slow
def test_complex_parameters_match_optax_for_every_second_moment():
    params = jnp.array([1 + 1j, -1j], jnp.complex64)
    grads = jnp.array([1j, 2], jnp.complex64)
    for name in ("rmsprop", "adagrad", "nadam", "adamw"):
        tx = optimizers.get_optimizer(name, learning_rate=0.1)
        reference = getattr(optax, name)(0.1)
        ours, _ = tx.update(grads, tx.init(params), params)
        theirs, _ = reference.update(grads, reference.init(params), params)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


INT32_MAX = 2**31 - 1


def _near_the_limit(state):
    """The state with every int32 step count set to 2^31 - 2."""
    return jax.tree.map(lambda x: jnp.full_like(x, INT32_MAX - 1) if x.dtype == jnp.int32 else x, state)


@pytest.mark.parametrize("name,keywords,reference", [
    ("adam", {}, optax.adam),
    pytest.param("nadam", {}, optax.nadam, marks=pytest.mark.slow),
    pytest.param("adamw", {}, optax.adamw, marks=pytest.mark.slow),
    pytest.param("rmsprop", {"bias_correction": True}, optax.rmsprop, marks=pytest.mark.slow),
    pytest.param("rmsprop", {"bias_correction": True, "centered": True, "initial_scale": 0.1},
                 optax.rmsprop, marks=pytest.mark.slow),
    pytest.param("sgd", {"learning_rate": optax.exponential_decay(0.1, 10, 0.5, end_value=1e-3)},
                 optax.sgd, marks=pytest.mark.slow),
])
def test_step_count_saturates_and_the_update_stays_finite(name, keywords, reference):
    keywords = {"learning_rate": 0.1, **keywords}
    params, grads = jnp.array([0.5, -1.0]), jnp.array([0.3, 0.2])
    ours, theirs = optimizers.get_optimizer(name, **keywords), reference(**keywords)
    state, their_state = _near_the_limit(ours.init(params)), _near_the_limit(theirs.init(params))
    step = jax.jit(ours.update)
    for _ in range(3):
        updates, state = step(grads, state, params)
        their_updates, their_state = theirs.update(grads, their_state, params)
        assert np.all(np.isfinite(updates))
        np.testing.assert_allclose(updates, their_updates, rtol=1e-6)
    counts = [leaf for leaf in jax.tree.leaves(state) if leaf.dtype == jnp.int32]
    assert counts and all(int(c) == INT32_MAX for c in counts)  # saturated, not wrapped to -2^31


def test_numpy_step_count_saturates_without_overflow_warnings():
    numpy_backend = get_backend("numpy")
    tx = numpy_backend.optimizer("nadam", learning_rate=0.1)
    params = np.array([0.5, -1.0])
    state = jax.tree.map(lambda x: np.full_like(x, INT32_MAX - 1) if x.dtype == np.int32 else x,
                         tx.init(params))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an int32 overflow in NumPy would warn
        for _ in range(3):
            updates, state = tx.update(np.array([0.3, 0.2]), state, params)
    assert np.all(np.isfinite(updates))
    assert all(int(c) == INT32_MAX for c in jax.tree.leaves(state) if c.dtype == np.int32)


NUMPY_VARIANTS = [
    pytest.param("sgd", {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True},
                 marks=pytest.mark.slow, id="sgd"),
    pytest.param("adam", {"learning_rate": 0.01, "nesterov": True, "eps_root": 1e-8}, id="adam"),
    pytest.param("adamw", {"learning_rate": 0.01, "weight_decay": 0.05, "mask": {"re": True, "im": False}},
                 marks=pytest.mark.slow, id="adamw"),
    pytest.param("rmsprop", {"learning_rate": 0.01, "centered": True, "bias_correction": True,
                             "initial_scale": 0.1, "eps_in_sqrt": False, "momentum": 0.5},
                 marks=pytest.mark.slow, id="rmsprop"),
    pytest.param("adagrad", {"learning_rate": 0.1}, marks=pytest.mark.slow, id="adagrad"),
]


@pytest.mark.parametrize("name,keywords", NUMPY_VARIANTS)
def test_numpy_reference_matches_jax_with_complex_parameters(name, keywords):
    rng = np.random.default_rng(3)
    params = {"re": rng.normal(size=4), "im": rng.normal(size=3) + 1j * rng.normal(size=3)}
    grads = [{"re": rng.normal(size=4), "im": rng.normal(size=3) + 1j * rng.normal(size=3)}
             for _ in range(6)]
    numpy_backend = get_backend("numpy")
    reference = run_steps(numpy_backend.optimizer(name, **keywords), params, grads,
                          apply=numpy_backend.apply_updates)
    with jax.enable_x64(True):
        ours = run_steps(optimizers.get_optimizer(name, **keywords), jax.tree.map(jnp.asarray, params),
                         [jax.tree.map(jnp.asarray, g) for g in grads])
        for a, b in zip(ours, reference, strict=True):
            assert_trees_close(a, b, 1e-12)


def test_keywords_and_defaults_are_optax_s():
    for name in ("sgd", "adam", "adamw", "nadam", "rmsprop", "adagrad"):
        ours = optimizers.optimizer_keywords(name)
        theirs = {p.name: p.default for p in inspect.signature(getattr(optax, name)).parameters.values()}
        assert list(ours) == list(theirs), name
        assert {k: v for k, v in ours.items() if k != "learning_rate"} == {
            k: v for k, v in theirs.items() if k != "learning_rate"}, name
