"""The engine: equality with plain Python loops, the GD rate, divergence, timing, records."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optiscale_jax.problems import make_problem
from optiscale_jax.training import compile_run, events, run, run_objective, run_reference
from optiscale_jax.training.batching import (
    batch_plan,
    batches,
    epoch_permutation,
    permutation_in_program,
    seed_key,
)
from optiscale_jax.training.engine import default_device, device_description
from optiscale_jax.training.objectives import prepare
from optiscale_jax.training.result import epochs_to_levels


@pytest.fixture(scope="module")
def logistic_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(103, 6))
    y = (X @ rng.normal(size=6) + rng.normal(size=103) > 0).astype(float)
    return make_problem("logistic", X, y, l2=1e-3)


@pytest.fixture(scope="module")
def ridge_problem():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 5)) * np.array([1.0, 2.0, 0.5, 1.5, 1.0])
    y = X @ rng.normal(size=5) + 0.1 * rng.normal(size=120)
    return make_problem("ridge", X, y, l2=1e-2)


def _close(a, b, tol=1e-10):
    np.testing.assert_allclose(a.params, b.params, rtol=0, atol=tol)
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=0, atol=tol)
    np.testing.assert_allclose(a.grad_norm, b.grad_norm, rtol=0, atol=tol)
    assert a.status == b.status and a.epochs_to == b.epochs_to


@pytest.mark.parametrize("name,rate,batch_size", [
    ("adam", 0.05, None), ("nesterov", 0.1, None), ("adagrad", 0.3, None), ("adam", 0.05, 10)])
def test_engine_equals_python_reference_loop_float64(logistic_problem, name, rate, batch_size):
    # 103 samples in batches of 10: ten full batches and a final batch of 3.
    engine = run(logistic_problem, name, hyperparams={"learning_rate": rate}, epochs=25,
                 batch_size=batch_size, dtype="float64", seed=3)
    reference = run_reference(logistic_problem, name, {"learning_rate": rate}, epochs=25,
                              batch_size=batch_size, dtype="float64", seed=3)
    assert engine.params.dtype == np.float64 and engine.kernel == "fused"
    assert reference.backend == "numpy" and engine.backend == "jax"
    _close(engine, reference)
    assert engine.train_loss[-1] < engine.initial_loss


def test_zero_columns_kernel_equals_reference_loop(logistic_problem):
    blank = logistic_problem.X * (np.arange(6) != 4)
    problem = make_problem("logistic", blank, logistic_problem.y, l2=1e-3)
    engine = run(problem, "adam", hyperparams={"learning_rate": 0.05}, epochs=20,
                 dtype="float64", kernel="fused_nonzero")
    reference = run_reference(problem, "adam", {"learning_rate": 0.05}, epochs=20,
                              dtype="float64")
    assert engine.kernel == "fused_nonzero"
    _close(engine, reference)
    assert engine.params[4] == 0.0        # its gradient is l2 * w = 0 from w = 0


def test_softmax_engine_equals_reference_loop(logistic_problem):
    labels = np.random.default_rng(6).integers(0, 3, size=103)
    problem = make_problem("softmax", logistic_problem.X, labels, l2=1e-3)
    engine = run(problem, "rmsprop", hyperparams={"learning_rate": 0.01}, epochs=20,
                 dtype="float64")
    reference = run_reference(problem, "rmsprop", {"learning_rate": 0.01}, epochs=20,
                              dtype="float64")
    assert engine.params.shape == (6, 3) and engine.kernel == "fused"
    _close(engine, reference)


@pytest.mark.parametrize("kernel", ["quadratic", "generic"])
def test_quadratic_kernel_equals_reference_loop(ridge_problem, kernel):
    engine = run(ridge_problem, "momentum", hyperparams={"learning_rate": 0.05}, epochs=40,
                 dtype="float64", kernel=kernel)
    reference = run_reference(ridge_problem, "momentum", {"learning_rate": 0.05}, epochs=40,
                              dtype="float64")
    assert engine.kernel == kernel
    _close(engine, reference)


@pytest.mark.slow
def test_kernels_compute_the_problem_objective(logistic_problem, ridge_problem):
    rng = np.random.default_rng(5)
    softmax = make_problem("softmax", logistic_problem.X, rng.integers(0, 3, size=103), l2=1e-3)
    blank = logistic_problem.X * (np.arange(6) != 2)            # column 2 is zero everywhere
    blank_logistic = make_problem("logistic", blank, logistic_problem.y, l2=1e-3)
    blank_softmax = make_problem("softmax", blank, softmax.y, l2=1e-3)
    with jax.enable_x64(True):
        for problem, kernel in [(logistic_problem, "fused"), (ridge_problem, "quadratic"),
                                (softmax, "fused"), (blank_logistic, "fused_nonzero"),
                                (blank_softmax, "fused_nonzero")]:
            prepared = prepare(problem, "float64", kernel)
            for _ in range(2):
                w = rng.normal(size=problem.param_shape)
                loss, grad = prepared.objective.full_value_and_grad(jnp.asarray(w), prepared.data)
                assert float(loss) == pytest.approx(problem.loss(w, problem.X, problem.y, xp=np),
                                                    rel=1e-12)
                np.testing.assert_allclose(np.asarray(grad),
                                           problem.grad(w, problem.X, problem.y, xp=np),
                                           rtol=1e-10, atol=1e-13)


def test_quadratic_centre_needs_no_least_squares_solve(ridge_problem):
    # Ridge: the Cholesky centre is the exact optimum (independent: scipy's solver cache).
    with jax.enable_x64(True):
        prepared = prepare(ridge_problem, "float64", "quadratic")
    np.testing.assert_allclose(np.asarray(prepared.data.extra["w_ref"]),
                               ridge_problem.optimum().w_star, rtol=1e-9, atol=1e-12)
    # Least squares with a singular H (a duplicated column): still the exact objective.
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 3))
    X = np.hstack([X, X[:, :1]])
    singular = make_problem("least_squares", X, X @ np.array([1.0, -1.0, 2.0, 0.5]) + 0.1)
    with jax.enable_x64(True):
        prepared = prepare(singular, "float64", "quadratic")
        w = rng.normal(size=4)
        loss, grad = prepared.objective.full_value_and_grad(jnp.asarray(w), prepared.data)
    assert float(loss) == pytest.approx(singular.loss(w, X, singular.y, xp=np), rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad), singular.grad(w, X, singular.y, xp=np),
                               rtol=1e-9, atol=1e-12)
    # float32 keeps its digits near the optimum: f* / (||y||^2 / 2n) ~ 1e-4 here, so an
    # uncentred kernel (f = ||y||^2/2n - b.w + w^T H w / 2) would record ~1e-3 relative noise.
    X = rng.normal(size=(400, 20)) * np.logspace(0, -1, 20)
    y = X @ rng.normal(size=20) + 0.01 * rng.normal(size=400)
    tight = make_problem("ridge", X, y, l2=1e-6)
    optimum = tight.optimum()
    result = run(tight, "sgd", hyperparams={"learning_rate": 1.0 / tight.smoothness()},
                 epochs=20000, f_star=optimum.f_star)
    true = tight.full_loss(result.params) - optimum.f_star
    assert abs(result.suboptimality[-1] - true) <= 1e-6 * optimum.f_star


def test_result_names_the_device_the_run_lives_on(ridge_problem):
    third = jax.devices()[3]                      # conftest: 8 virtual CPU devices
    with jax.default_device(third):
        assert default_device() == third          # not jax.devices()[0]
        assert device_description() == f"jax:cpu:{third.device_kind}"
        result = run(ridge_problem, "sgd", hyperparams={"learning_rate": 0.1}, epochs=3)
    assert result.device == f"jax:{third.platform}:{third.device_kind}"
    with jax.default_device("cpu"):
        assert default_device() == jax.devices("cpu")[0]
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    sharded = jax.device_put(np.zeros((16, 2)), jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec("data")))
    assert device_description({"X": sharded}) == f"jax:cpu:{third.device_kind} x8"
    assert device_description(jax.device_put(np.zeros(2), third)) == device_description(None)


def test_minibatch_order_is_a_seeded_permutation_cut_into_fixed_batches():
    plan = batch_plan(23, 5)
    assert (plan.n_full, plan.remainder, plan.steps_per_epoch) == (4, 3, 5)
    order = epoch_permutation(7, 2, 23)
    assert sorted(order.tolist()) == list(range(23))
    assert [len(b) for b in batches(order, plan)] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(batches(order, plan)), order)
    assert not np.array_equal(order, epoch_permutation(7, 3, 23))
    assert not np.array_equal(order, epoch_permutation(8, 2, 23))
    np.testing.assert_array_equal(order, epoch_permutation(7, 2, 23))
    assert batch_plan(23, None).full_batch and batch_plan(23, 23).steps_per_epoch == 1


@pytest.mark.parametrize("n", [1, 2, 3, 64, 1000, 4097])
def test_shuffle_is_the_same_bijection_in_numpy_and_in_the_program(n):
    for seed, epoch in ((0, 0), (7, 2), (2**32 - 1, 12345)):
        host = epoch_permutation(seed, epoch, n)
        program = jax.jit(permutation_in_program, static_argnums=2)(
            seed_key(seed), jnp.uint32(epoch), n)
        np.testing.assert_array_equal(host, np.asarray(program))
        np.testing.assert_array_equal(np.sort(host), np.arange(n))


def test_shuffle_does_not_sort_and_mixes():
    jaxpr = str(jax.make_jaxpr(lambda k, e: permutation_in_program(k, e, 5000))(
        seed_key(3), jnp.uint32(1)))
    primitives = set(re.findall(r"= ([a-z_]+)\[", jaxpr)) | set(re.findall(r"= ([a-z_]+) ", jaxpr))
    assert "while" in primitives and not {"sort", "random_bits", "threefry2x32"} & primitives
    orders = np.stack([epoch_permutation(3, e, 5000) for e in range(20)])
    # position of each sample spread over the epoch: the mean position ~ n/2, no fixed points
    assert abs(orders.argsort(axis=1).mean(axis=0).mean() - 2499.5) < 1.0
    assert np.mean(orders == np.arange(5000)) < 0.01
    # consecutive epochs are unrelated: rank correlation ~ 0
    ranks = orders.argsort(axis=1)
    assert abs(np.corrcoef(ranks[0], ranks[1])[0, 1]) < 0.05


@pytest.mark.slow
def test_eval_every_records_the_logged_epochs_of_the_same_trajectory(logistic_problem):
    common = dict(hyperparams={"learning_rate": 0.05}, epochs=7, batch_size=16, seed=4,
                  dtype="float64")
    every = run(logistic_problem, "adam", **common)
    sparse = run(logistic_problem, "adam", eval_every=3, **common)
    np.testing.assert_array_equal(sparse.logged_epochs, [3, 6, 7])
    np.testing.assert_allclose(sparse.train_loss, every.train_loss[[2, 5, 6]], rtol=1e-12)
    np.testing.assert_allclose(sparse.params, every.params, rtol=1e-12)
    assert sparse.epochs == 7 and sparse.eval_every == 3 and sparse.to_dict()["eval_every"] == 3
    reference = run_reference(logistic_problem, "adam", eval_every=3, **common)
    np.testing.assert_allclose(reference.train_loss, sparse.train_loss, rtol=1e-9)
    full = run(logistic_problem, "sgd", hyperparams={"learning_rate": 0.5}, epochs=5,
               eval_every=2)
    np.testing.assert_array_equal(full.logged_epochs, [2, 4, 5])
    assert full.train_loss.shape == (3,)
    with pytest.raises(ValueError, match="eval_every=0 is invalid"):
        run(logistic_problem, "sgd", epochs=2, eval_every=0)


def test_gradient_descent_at_1_over_L_follows_the_linear_rate():
    # X = U diag(s) V^T: H = X^T X / n has eigenvalues s^2 / n, known exactly.
    n, d = 64, 4
    rng = np.random.default_rng(2)
    U = np.linalg.qr(rng.normal(size=(n, d)))[0]
    V = np.linalg.qr(rng.normal(size=(d, d)))[0]
    eigenvalues = np.array([4.0, 2.0, 1.0, 0.4])
    X = U @ np.diag(np.sqrt(eigenvalues * n)) @ V.T
    w_star = rng.normal(size=d)
    problem = make_problem("least_squares", X, X @ w_star)     # f* = 0
    L, kappa = eigenvalues.max(), eigenvalues.max() / eigenvalues.min()
    epochs = 60
    result = run(problem, "sgd", hyperparams={"learning_rate": 1 / L}, epochs=epochs,
                 dtype="float64", f_star=0.0, kernel="generic")
    # Exact theory: e_t = (I - H/L)^t e_0, f(w_t) - f* = sum_i lambda_i/2 (1-lambda_i/L)^(2t) c_i^2.
    c = V.T @ (0.0 - w_star)
    t = np.arange(1, epochs + 1)[:, None]
    predicted = (eigenvalues / 2 * (1 - eigenvalues / L) ** (2 * t) * c**2).sum(axis=1)
    np.testing.assert_allclose(result.suboptimality, predicted, rtol=1e-8, atol=1e-300)
    initial = 0.5 * np.sum(eigenvalues * c**2)
    assert np.all(result.suboptimality <= (1 - 1 / kappa) ** t[:, 0] * initial * (1 + 1e-9))
    observed_rate = result.suboptimality[-1] / result.suboptimality[-2]
    assert observed_rate == pytest.approx((1 - 1 / kappa) ** 2, rel=1e-6)


def test_divergence_freezes_params_and_is_reported(ridge_problem):
    result = run(ridge_problem, "sgd", hyperparams={"learning_rate": 5.0}, epochs=30)
    assert result.status == "diverged"
    assert result.diverged_epoch is not None and 1 <= result.diverged_epoch <= 30
    assert np.all(np.isfinite(result.params)) and np.all(np.isfinite(result.train_loss))
    assert np.all(np.isfinite(result.grad_norm))
    frozen = result.train_loss[result.diverged_epoch - 1:]
    assert np.all(frozen == frozen[0])
    if result.diverged_epoch > 1:
        before = run(ridge_problem, "sgd", hyperparams={"learning_rate": 5.0},
                     epochs=result.diverged_epoch - 1)
        np.testing.assert_array_equal(before.params, result.params)
    # The rule: an end-of-epoch loss above factor * f(w_0) is rejected.
    strict = run(ridge_problem, "sgd", hyperparams={"learning_rate": 5.0}, epochs=30,
                 divergence_factor=1.5)
    assert strict.diverged_epoch <= result.diverged_epoch
    assert np.all(strict.train_loss <= 1.5 * strict.initial_loss)


def test_records_times_events_and_json(ridge_problem):
    seen = []
    listener = events.add_listener(lambda *event: seen.append(event))
    try:
        f_star = ridge_problem.optimum().f_star
        result = run(ridge_problem, "adam", hyperparams={"learning_rate": 0.1}, epochs=300,
                     f_star=f_star)
    finally:
        events.remove_listener(listener)
    assert [e[0] for e in seen] == ["setup", "compile", "epochs"]
    assert seen[0][1] == result.setup_time_s > 0
    assert seen[1][1] == result.compile_time_s > 0
    assert seen[2][1:] == (300, result.run_time_s) and result.run_time_s > 0
    assert result.time_per_epoch_s == pytest.approx(result.run_time_s / 300)
    assert result.dtype == "float32" and result.params.dtype == np.float32
    assert result.train_loss.shape == result.grad_norm.shape == (300,)
    # Independent check of suboptimality, epochs_to and status.
    np.testing.assert_allclose(result.suboptimality, result.train_loss.astype(float) - f_star)
    relative = np.concatenate([[result.initial_loss], result.train_loss]) - f_star
    relative /= abs(f_star)
    for key, level in [("1e-2", 1e-2), ("1e-4", 1e-4)]:
        first = int(np.argmax(relative <= level))
        assert result.epochs_to[key] == first and relative[first - 1] > level
    assert result.status == ("converged" if relative[-1] <= 1e-6 else "max_epochs")
    grad = ridge_problem.grad(result.params.astype(float), ridge_problem.X, ridge_problem.y, xp=np)
    assert result.grad_norm[-1] == pytest.approx(np.linalg.norm(grad), rel=1e-3, abs=1e-5)
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["status"] == result.status and len(payload["train_loss"]) == 300
    assert not jax.config.jax_enable_x64


def test_compile_run_compiles_once_and_reruns_the_same_program(ridge_problem):
    seen = []
    listener = events.add_listener(lambda *event: seen.append(event[0]))
    try:
        compiled = compile_run(ridge_problem, "adam", hyperparams={"learning_rate": 0.1},
                               epochs=20)
        first, second = compiled(), compiled(repeats=2)
    finally:
        events.remove_listener(listener)
    assert seen == ["setup", "compile", "epochs", "epochs", "epochs"]
    assert first.compile_time_s == second.compile_time_s == compiled.compile_time_s
    np.testing.assert_array_equal(first.train_loss, second.train_loss)
    with pytest.raises(ValueError, match="repeats=0"):
        compiled(repeats=0)


def test_epochs_to_levels_without_optimum_and_never_reached():
    assert epochs_to_levels(1.0, np.array([0.5, 0.1]), None) == {
        "1e-2": None, "1e-4": None, "1e-6": None}
    assert epochs_to_levels(2.0, np.array([1.5, 1.0101, 1.00001]), 1.0) == {
        "1e-2": 3, "1e-4": 3, "1e-6": None}


@pytest.mark.slow
def test_run_objective_trains_a_pytree_like_a_hand_written_optax_loop():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.7

    def value_and_grad(params, X, y):
        def loss(p):
            return 0.5 * jnp.mean((X @ p["w"] + p["b"] - y) ** 2)
        return jax.value_and_grad(loss)(params)

    params0 = {"w": np.zeros(3), "b": np.zeros(())}
    with jax.enable_x64(True):
        result = run_objective(value_and_grad, params0, optax.adam(0.1), X, y, epochs=50,
                               dtype="float64")
        tx = optax.adam(0.1)
        params = jax.tree.map(jnp.asarray, params0)
        state = tx.init(params)

        @jax.jit
        def step(params, state):
            _, grads = value_and_grad(params, X, y)
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        for _ in range(50):
            params, state = step(params, state)
        expected_loss = float(value_and_grad(params, X, y)[0])
    np.testing.assert_allclose(result.params["w"], params["w"], atol=1e-12)
    assert float(result.params["b"]) == pytest.approx(float(params["b"]), abs=1e-12)
    assert result.train_loss[-1] == pytest.approx(expected_loss, abs=1e-12)


def test_bad_arguments_raise_clear_errors(ridge_problem):
    with pytest.raises(ValueError, match="epochs=0"):
        run(ridge_problem, "sgd", epochs=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        run(ridge_problem, "sgd", epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="batch_size=121"):
        run(ridge_problem, "sgd", epochs=1, batch_size=121)
    with pytest.raises(ValueError, match="float16"):
        run(ridge_problem, "sgd", epochs=1, dtype="float16")
    with pytest.raises(ValueError, match="adm"):
        run(ridge_problem, "adm", epochs=1)
    with pytest.raises(ValueError, match="kernel='fused'"):
        run(ridge_problem, "sgd", epochs=1, kernel="fused")
    with pytest.raises(ValueError, match="params0 has shape"):
        run(ridge_problem, "sgd", epochs=1, params0=np.zeros(3))
    with pytest.raises(ValueError, match="divergence_factor"):
        run(ridge_problem, "sgd", epochs=1, divergence_factor=0.5)
