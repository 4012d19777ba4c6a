"""optax 0.2.8's own test cases for its optimizer aliases, run on our eight optimizers.

The cases of optax's `alias_test.py`, re-stated for this package: minimising a
quadratic and the Rosenbrock function in float32 and complex64; no recompilation
on the second step; extra keyword arguments to `update` accepted; the same updates
and states under `optax.inject_hyperparams`; explicit state dtypes (`mu_dtype`,
`accumulator_dtype`); updates in the gradients' dtype; parameter and state dtypes
stable under `lax.cond` for float16 ... complex128; gradient accumulation with
`optax.MultiSteps`. The table of optimizers mirrors optax's entries for sgd (with
momentum), adam, adamw, nadam, rmsprop (with and without momentum), adagrad, plus
our `sgd` without momentum, `momentum` and `nesterov`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optiscale_jax import optimizers

UNDER_TEST = [
    ("adagrad", {"learning_rate": 1.0}),
    ("adam", {"learning_rate": 1e-1}),
    ("adamw", {"learning_rate": 1e-1}),
    ("nadam", {"learning_rate": 1e-2}),
    ("rmsprop", {"learning_rate": 5e-3}),
    ("rmsprop", {"learning_rate": 5e-3, "momentum": 0.9}),
    ("sgd", {"learning_rate": 1e-3, "momentum": 0.9}),
    ("sgd", {"learning_rate": 1e-3}),
    ("momentum", {"learning_rate": 1e-3}),
    # at 1e-3 Nesterov momentum sits at its stability edge on complex Rosenbrock and optax's own
    # sgd(momentum=0.9, nesterov=True) does not converge in 10,000 steps either
    ("nesterov", {"learning_rate": 5e-4}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items() if k != "learning_rate")
       for name, kw in UNDER_TEST]
# `momentum` and `nesterov` build the very chain of `sgd(momentum=...)`: the property tests
# below (recompilation, dtypes, inject_hyperparams, MultiSteps) run on the distinct chains only
DISTINCT = [(case, id_) for case, id_ in zip(UNDER_TEST, IDS, strict=True)
            if case[0] not in ("momentum", "nesterov")]
DISTINCT_CASES, DISTINCT_IDS = [c for c, _ in DISTINCT], [i for _, i in DISTINCT]
N_STEPS = 10_000


def _abs_sq(x):
    return (jnp.conj(x) * x).real


def parabola(dtype):
    """sum |p - p*|^2 from (-1, 10, 1) to p* = (1, -1, 1) (times 1 + i when complex)."""
    start = jnp.array([-1.0, 10.0, 1.0], dtype=dtype)
    target = jnp.array([1.0, -1.0, 1.0], dtype=dtype)
    if jnp.iscomplexobj(target):
        target = target * (1 + 1j)
    return start, target, lambda p: jnp.sum(_abs_sq(p - target))


def rosenbrock(dtype):
    """|a - x|^2 + 100 |y - x^2|^2 from (0, 0) to (a, a^2), a = 1 (1 + i when complex)."""
    a = 1.0 + 1.0j if jnp.issubdtype(dtype, jnp.complexfloating) else 1.0
    start = jnp.zeros(2, dtype=dtype)
    target = jnp.array([a, a * a], dtype=dtype)
    return start, target, lambda p: _abs_sq(a - p[0]) + 100.0 * _abs_sq(p[1] - p[0] ** 2)


def descent_step(tx, objective):
    """One step: gradient (conjugated, the descent direction for complex parameters), update."""

    def step(params, state):
        grads = jax.tree.map(jnp.conj, jax.grad(objective)(params))
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64], ids=["float32", "complex64"])
@pytest.mark.parametrize("target", [parabola, rosenbrock])
@pytest.mark.parametrize("name,keywords", UNDER_TEST, ids=IDS)
def test_minimises_quadratic_and_rosenbrock(name, keywords, target, dtype):
    tx = optimizers.get_optimizer(name, **keywords)
    start, solution, objective = target(dtype)
    step = descent_step(tx, objective)
    state = optax.tree.map_params(tx, lambda v: v, tx.init(start))  # tree_map_params works

    # gradient descent without momentum crawls along Rosenbrock's valley at the stable step
    # size (rate ~ 1 - lr * 0.4 per step): it gets three times the steps
    steps = 3 * N_STEPS if name == "sgd" and "momentum" not in keywords else N_STEPS

    @jax.jit
    def run(params, state):
        return jax.lax.fori_loop(0, steps, lambda _, carry: step(*carry), (params, state))

    params, _ = run(start, state)
    np.testing.assert_allclose(np.asarray(params), np.asarray(solution), rtol=3e-2, atol=3e-2)


@pytest.mark.slow
@pytest.mark.parametrize("name,keywords", DISTINCT_CASES, ids=DISTINCT_IDS)
def test_second_step_does_not_recompile(name, keywords):
    tx = optimizers.get_optimizer(name, **keywords)
    start, _, objective = rosenbrock(jnp.complex64)
    traces = []

    def counted(params, state):
        traces.append(1)  # runs only while tracing
        return descent_step(tx, objective)(params, state)

    step = jax.jit(counted)
    params, state = step(start, tx.init(start))
    params, state = step(params, state)
    step(params, state)
    assert len(traces) == 1


@pytest.mark.parametrize("name,keywords", UNDER_TEST, ids=IDS)
def test_update_accepts_extra_arguments(name, keywords):
    tx = optimizers.get_optimizer(name, **keywords)
    params = jnp.array([0.5, -1.0])
    updates, _ = tx.update(params, tx.init(params), params, an_argument_nobody_expects=1)
    assert updates.shape == params.shape


@pytest.mark.slow
@pytest.mark.parametrize("name,keywords", DISTINCT_CASES, ids=DISTINCT_IDS)
def test_inject_hyperparams_gives_the_same_updates_and_state(name, keywords):
    factory = getattr(optimizers, name)
    tx = factory(**keywords)
    injected = optax.inject_hyperparams(factory)(**keywords)
    params = [-jnp.ones((2, 3)), jnp.ones((2, 5, 2))]
    grads = [jnp.ones((2, 3)), -jnp.ones((2, 5, 2))]
    updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    updates_injected, state_injected = jax.jit(injected.update)(grads, injected.init(params), params)
    # optax's tolerances: injected hyperparameters are float32 arrays, and 1 - float32(0.999)
    # differs from 1 - 0.999 by 3e-5 relative
    for a, b in zip(jax.tree.leaves(updates_injected), jax.tree.leaves(updates), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3)
    for a, b in zip(jax.tree.leaves(state_injected.inner_state), jax.tree.leaves(state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4)


@pytest.mark.parametrize("params_dtype", ["bfloat16", "float32", "complex64", None])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "float32", "complex64", None])
@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_explicit_state_dtype(name, state_dtype, params_dtype):
    if name == "sgd":
        tx = optimizers.get_optimizer(name, learning_rate=0.1, momentum=0.9, accumulator_dtype=state_dtype)
        stored = lambda state: state[0].trace  # noqa: E731 - the leaf to look at, per optimizer
    else:
        tx = optimizers.get_optimizer(name, learning_rate=0.1, mu_dtype=state_dtype)
        stored = lambda state: state[0].mu  # noqa: E731
    params_dtype = jax.dtypes.canonicalize_dtype(params_dtype or jnp.float32)
    state = tx.init(jnp.zeros(2, dtype=params_dtype))
    expected = params_dtype if state_dtype is None else jnp.dtype(state_dtype)
    assert stored(state).dtype == expected


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("name,keywords", DISTINCT_CASES, ids=DISTINCT_IDS)
def test_updates_keep_the_gradients_dtype(name, keywords, dtype):
    tx = optimizers.get_optimizer(name, **keywords)
    params = jnp.array([1.0, 2.0], dtype=dtype)
    grads = jax.grad(lambda x: jnp.sum(x**2))(params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    assert updates.dtype == grads.dtype


def _two_steps_under_lax_cond(tx, dtypes) -> None:
    """Two steps on one parabola per dtype, update and state passed through `lax.cond`.

    The parabolas of all `dtypes` are stepped in one jitted program; `lax.cond` demands
    identical types from both branches, so any dtype or structure change fails.
    """
    problems = [parabola(dtype) for dtype in dtypes]

    @jax.jit
    def step(params, states):
        take = jax.random.randint(jax.random.key(0), (), 0, 2) == 0  # unknown to the compiler
        out = []
        for (_, _, objective), p, state in zip(problems, params, states, strict=True):
            grads = jnp.conj(jax.grad(objective)(p))
            updates, state = jax.lax.cond(take, lambda g=grads, s=state, p=p: tx.update(g, s, p),
                                          lambda s=state, p=p: (p, s))
            out.append((optax.apply_updates(p, updates), state))
        return tuple(p for p, _ in out), tuple(s for _, s in out)

    params = tuple(start for start, _, _ in problems)
    states = tuple(tx.init(p) for p in params)
    for _ in range(2):
        params, new_states = step(params, states)
        assert [p.dtype for p in params] == list(dtypes)
        take = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
        states = jax.lax.cond(take, lambda s=states: s, lambda s=new_states: s)


@pytest.mark.slow
@pytest.mark.parametrize("name,keywords", DISTINCT_CASES, ids=DISTINCT_IDS)
def test_dtypes_stable_under_lax_cond(name, keywords):
    _two_steps_under_lax_cond(optimizers.get_optimizer(name, **keywords),
                              [jnp.float16, jnp.bfloat16, jnp.float32, jnp.complex64])
    with jax.enable_x64(True):
        _two_steps_under_lax_cond(optimizers.get_optimizer(name, **keywords),
                                  [jnp.float64, jnp.complex128])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("name,keywords", DISTINCT_CASES, ids=DISTINCT_IDS)
def test_gradient_accumulation_with_multisteps(name, keywords, dtype):
    tx = optax.MultiSteps(optimizers.get_optimizer(name, **keywords), every_k_schedule=4)
    params = jnp.array([1.0, 2.0], dtype=dtype)
    grads = jax.grad(lambda x: jnp.sum(x**2))(params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(updates, np.float32), 0)  # accumulating, no step yet
    assert updates.dtype == grads.dtype
