"""The engine takes an OptimizerSpec (run, compile_run, one vmapped sweep) and reports a
schedule-free transform at its evaluation point x, both against plain optax loops."""

from __future__ import annotations

import importlib
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optiscale_jax import training
from optiscale_jax.optimizers import resolve_optimizer
from optiscale_jax.problems import make_problem
from optiscale_jax.training import compile_run, run, sweep
from optiscale_jax.training.engine import resolve_optimizer as engine_resolve

EPOCHS = 12


@pytest.fixture(scope="module")
def ridge():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 4))
    y = X @ rng.normal(size=4) + 0.1 * rng.normal(size=40)
    return make_problem("ridge", X, y, l2=1e-2)


def _optax_loop(problem, transform, epochs=EPOCHS):
    """Full-batch optax steps in float64 on the problem's own loss: (params, state)."""
    X, y = jnp.asarray(problem.X, jnp.float64), jnp.asarray(problem.y, jnp.float64)
    params = jnp.zeros(problem.param_shape, jnp.float64)
    state = transform.init(params)
    grad = jax.grad(lambda w: problem.loss(w, X, y))

    @jax.jit   # one small program per step: faster here than op-by-op dispatch
    def step(params, state):
        updates, state = transform.update(grad(params), state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(epochs):
        params, state = step(params, state)
    return params, state


def _loss(problem, params):
    return float(problem.loss(jnp.asarray(params), jnp.asarray(problem.X), jnp.asarray(problem.y)))


@pytest.fixture(scope="module")
def user_factory(tmp_path_factory):
    """A factory in a file outside the package that records whether its rate was traced."""
    path = tmp_path_factory.mktemp("user_opt") / "my_heavy_ball.py"
    path.write_text(textwrap.dedent("""
        import jax
        import optax

        CALLS = []

        def heavy_ball(learning_rate=0.1, momentum=0.9):
            CALLS.append(isinstance(learning_rate, jax.core.Tracer))
            return optax.sgd(learning_rate, momentum=momentum)

        def fixed_rate(momentum=0.9):
            return optax.sgd(0.1, momentum=momentum)
    """))
    return str(path)


def test_run_with_a_spec_equals_the_optax_loop_and_hyperparams_override(ridge):
    with jax.enable_x64(True):
        spec = resolve_optimizer("optax:lion", {"learning_rate": 1e-2})
        result = run(ridge, spec, hyperparams={"b1": 0.8}, epochs=EPOCHS, dtype="float64")
        expected, _ = _optax_loop(ridge, optax.lion(learning_rate=1e-2, b1=0.8))
    np.testing.assert_allclose(result.params, expected, rtol=0, atol=1e-12)
    assert result.optimizer == "lion"
    assert result.hyperparams["b1"] == 0.8 and result.hyperparams["learning_rate"] == 1e-2
    assert result.hyperparams["b2"] == 0.99          # optax.lion's default, from the spec
    compiled = compile_run(ridge, spec, hyperparams={"b1": 0.8}, epochs=EPOCHS, dtype="float64")
    np.testing.assert_allclose(compiled().params, result.params, rtol=0, atol=0)


def test_a_spec_with_a_hyperparameter_its_factory_lacks_is_refused_by_name():
    spec = resolve_optimizer("optax:lion", {"learning_rate": 1e-2})
    with pytest.raises(ValueError, match=r"'lion'.*momentum.*b1, b2"):
        engine_resolve(spec, {"momentum": 0.9})


def test_sweep_over_a_user_spec_is_one_vmapped_program(ridge, user_factory):
    spec = resolve_optimizer(f"{user_factory}:heavy_ball", {"momentum": 0.5})
    calls = spec.factory.__globals__["CALLS"]
    calls.clear()
    rates = [0.01, 0.05, 0.2]
    with jax.enable_x64(True):
        result = sweep(ridge, spec, learning_rates=rates, epochs=EPOCHS, dtype="float64")
        expected = [_optax_loop(ridge, optax.sgd(rate, momentum=0.5))[0] for rate in rates]
    assert calls.count(True) == 1        # the program was traced once, with the rate traced
    assert [r.hyperparams["learning_rate"] for r in result.runs] == rates
    assert result.optimizer == "heavy_ball"
    for lane, params in zip(result.runs, expected):
        np.testing.assert_allclose(lane.params, params, rtol=0, atol=1e-12)


def test_sweep_refuses_a_spec_without_a_learning_rate_before_any_work(ridge, user_factory):
    spec = resolve_optimizer(f"{user_factory}:fixed_rate")
    assert not spec.accepts_learning_rate
    with pytest.raises(ValueError, match=r"'fixed_rate'.*takes no learning_rate"):
        sweep(ridge, spec, learning_rates=[0.1], epochs=EPOCHS)
    with pytest.raises(ValueError, match="cannot vary the rate inside a built"):
        sweep(ridge, optax.sgd(0.1), learning_rates=[0.1, 0.2], epochs=EPOCHS)


@pytest.mark.parametrize("as_spec", [True, False])
def test_schedule_free_reports_its_evaluation_point(ridge, as_spec):
    hyper = {"learning_rate": 0.05, "warmup_steps": 3}
    transform = optax.contrib.schedule_free_adamw(**hyper)
    optimizer = resolve_optimizer("optax:contrib.schedule_free_adamw", hyper) if as_spec else transform
    with jax.enable_x64(True):
        result = run(ridge, optimizer, epochs=EPOCHS, dtype="float64")
        y, state = _optax_loop(ridge, transform)
        x = optax.contrib.schedule_free_eval_params(state, y)
        expected_loss, expected_y_loss = _loss(ridge, x), _loss(ridge, y)
    assert not np.allclose(x, y)         # x and y differ, so the test tells them apart
    np.testing.assert_allclose(result.params, x, rtol=0, atol=1e-12)
    assert result.final_loss == pytest.approx(expected_loss, rel=1e-12)
    assert result.eval_loss == result.final_loss
    assert result.train_loss[-1] == pytest.approx(expected_y_loss, rel=1e-12)   # the curve: at y
    assert result.final_grad_norm == result.eval_grad_norm > 0


def test_other_transforms_report_their_last_iterate(ridge):
    result = run(ridge, "adam", epochs=3)
    assert result.eval_loss is None and result.final_loss == float(result.train_loss[-1])
    assert result.final_grad_norm == float(result.grad_norm[-1])


def test_training_exports_steps_to_target():
    # the module by its path (the package attribute of that name is now the function)
    module = importlib.import_module("optiscale_jax.training.steps_to_target")
    assert training.steps_to_target is module.steps_to_target
    assert training.StepsToTargetResult is module.StepsToTargetResult
    assert {"steps_to_target", "StepsToTargetResult"} <= set(training.__all__)
