"""LargeScaleBenchmark: diverged and failed runs are recorded and the campaign goes on;
bad configurations fail before any run; the problem kind is inferred from the labels."""

import math
import pathlib

import numpy as np
import pytest

from optiscale_jax import training
from optiscale_jax.benchmark import LargeScaleBenchmark, RunStatus, load_results, write_report
from optiscale_jax.benchmark.runner import infer_problem_kind, learning_rate_grid


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((250, 6))
    y = X @ rng.standard_normal(6) + rng.standard_normal(250)  # f* near 0.5: float32 resolves 1e-6
    return X[:200], y[:200], X[200:], y[200:]


def test_diverged_runs_are_recorded_and_the_others_unaffected(tmp_path, regression_data):
    bench = LargeScaleBenchmark(tmp_path, progress=False)
    results = bench.benchmark_dataset(
        "toy", *regression_data, {}, {"SGD": {"learning_rate": 0.5},
                                      "SGD-huge": {"optimizer": "sgd", "learning_rate": 50.0}},
        max_epochs=60)
    ok, bad = results["SGD"], results["SGD-huge"]
    assert bad["status"] == "diverged" and math.isfinite(bad["final_loss"])
    assert ok["status"] == "converged" and ok["relative_suboptimality"] <= 1e-6
    X, y, X_test, y_test = regression_data
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    assert math.isclose(ok["f_star"], 0.5 * np.mean((X @ w - y) ** 2), rel_tol=1e-10)
    assert math.isclose(ok["test_mse"], np.mean((X_test @ w - y_test) ** 2), rel_tol=1e-4)
    assert [r["status"] for r in load_results(bench.store.path)["runs"]] == [
        "converged", "diverged"]


def test_failing_runs_are_recorded_with_the_error_and_the_campaign_goes_on(
        tmp_path, regression_data, monkeypatch):
    real_run = training.run

    def run_that_fails_for_sgd(problem, optimizer, **kwargs):
        if optimizer == "sgd":
            raise FloatingPointError("injected failure inside the run")
        return real_run(problem, optimizer, **kwargs)

    monkeypatch.setattr(training, "run", run_that_fails_for_sgd)
    bench = LargeScaleBenchmark(tmp_path, progress=False)
    results = bench.benchmark_dataset("toy", *regression_data, {},
                                      {"SGD": {"learning_rate": 0.1}, "Adam": {}}, max_epochs=5)
    assert [r.status for r in results.values()] == [RunStatus.FAILED, RunStatus.MAX_EPOCHS]
    assert results["SGD"].error == "FloatingPointError: injected failure inside the run"
    assert "run_that_fails_for_sgd" in results["SGD"].traceback
    stored = load_results(bench.store.path)["runs"]
    assert [r["status"] for r in stored] == ["failed", "max_epochs"]
    report = write_report(bench.store.path).read_text()
    assert "## Failed runs" in report and "injected failure inside the run" in report


def test_bad_configurations_fail_before_any_run(tmp_path, regression_data):
    bench = LargeScaleBenchmark(tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown optimizer 'adm'"):
        bench.benchmark_dataset("toy", *regression_data, {},
                                {"SGD": {"learning_rate": 0.1}, "adm": {}}, max_epochs=5)
    with pytest.raises(ValueError, match="takes no hyperparameter 'lr'"):
        bench.benchmark_dataset("toy", *regression_data, {}, {"Adam": {"lr": 0.1}}, max_epochs=5)
    with pytest.raises(ValueError, match="max_epochs=0 is out of range; give an integer from 1"):
        bench.benchmark_dataset("toy", *regression_data, {}, {"Adam": {}}, max_epochs=0)
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        LargeScaleBenchmark(tmp_path, backend="tpu")
    assert bench.store.records == [] and load_results(bench.store.path)["runs"] == []


def test_problem_kind_and_grid():
    assert infer_problem_kind(np.array([0, 1, 1.0]), {}) == "logistic"
    assert infer_problem_kind(np.array([0, 3, 9]), {}) == "softmax"
    assert infer_problem_kind(np.array([0.5, 1.2]), {}) == "least_squares"
    assert infer_problem_kind(np.array([0, 1, 2]), {"task": "regression"}) == "least_squares"
    assert learning_rate_grid(1.0) == [2.0**k for k in range(-4, 4)]
    with pytest.raises(ValueError, match="positive learning rate"):
        learning_rate_grid(-1.0)


USER_FILE = pathlib.Path(__file__).parent / "fixtures" / "user_optimizers.py"


@pytest.mark.slow
def test_a_user_factory_and_an_optax_optimizer_run_and_are_identified(tmp_path, regression_data):
    bench = LargeScaleBenchmark(tmp_path, progress=False)
    results = bench.benchmark_dataset("toy", *regression_data, {}, {
        "heavy ball": {"optimizer": f"{USER_FILE}:heavy_ball", "learning_rate": 0.05, "beta": 0.8},
        "lion": {"optimizer": "optax:lion", "learning_rate": 1e-3},
        "broken": {"optimizer": f"{USER_FILE}:explodes_in_update"}}, max_epochs=10)
    heavy, lion, broken = results["heavy ball"], results["lion"], results["broken"]
    assert heavy.status is RunStatus.MAX_EPOCHS and lion.status is RunStatus.MAX_EPOCHS
    assert heavy.optimizer_info["import_path"] == f"{USER_FILE}:heavy_ball"
    assert heavy.optimizer_info["version"].startswith("sha256:")
    assert heavy.hyperparameters_full == {"learning_rate": 0.05, "beta": 0.8}
    assert heavy.optimizer_info["state_bytes_per_parameter"] == 4.0  # one float32 trace
    assert lion.optimizer_info["import_path"] == "optax.lion"
    assert lion.optimizer_info["hyperparameters"]["b2"] == 0.99  # optax's default, recorded
    # Independent check of the heavy ball run: the same recursion in NumPy, float64.
    X, y, _, _ = regression_data
    w, m = np.zeros(X.shape[1]), np.zeros(X.shape[1])
    for _ in range(10):
        m = X.T @ (X @ w - y) / len(y) + 0.8 * m
        w = w - 0.05 * m
    assert math.isclose(heavy.final_loss, 0.5 * np.mean((X @ w - y) ** 2), rel_tol=1e-5)
    # A run that raises is recorded failed with its message; the campaign went on.
    assert broken.status is RunStatus.FAILED
    assert broken.error == "RuntimeError: this optimizer's update is broken"
    report = write_report(bench.store.path).read_text()
    assert f"`{USER_FILE}:heavy_ball`" in report and "beta=0.8, learning_rate=0.05" in report
    assert "state 4 bytes per parameter" in report


def test_bad_specs_are_refused_before_any_run(tmp_path, regression_data):
    bench = LargeScaleBenchmark(tmp_path, progress=False)
    for config, message in [
            ({"optimizer": "nope.module:make"}, "module 'nope.module' cannot be imported"),
            ({"optimizer": f"{USER_FILE}:not_a_transform"}, "not an optax.GradientTransformation"),
            ({"optimizer": f"{USER_FILE}:heavy_ball", "momentum": 0.9},
             "takes no hyperparameter 'momentum'")]:
        with pytest.raises(ValueError, match=message):
            bench.benchmark_dataset("toy", *regression_data, {},
                                    {"SGD": {"learning_rate": 0.1}, "mine": config}, max_epochs=5)
    assert bench.store.records == []


@pytest.mark.slow
def test_labels_follow_the_project_label_rule(tmp_path):
    """{-1, +1} labels are classes (logistic), as in the estimators; held-out labels are
    encoded the same way, so the test error is the plain misclassification rate."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 4))
    y = np.where(X @ np.array([1.0, -2.0, 0.5, 0.0]) > 0, 1, -1)
    bench = LargeScaleBenchmark(tmp_path, progress=False)
    record = bench.benchmark_dataset("signs", X[:100], y[:100], X[100:], y[100:], {},
                                     {"SGD": {"learning_rate": 0.5}}, max_epochs=30)["SGD"]
    assert record.problem == "logistic" and record.test_metric == "error_rate"
    rerun = training.run(bench.dataset_context("signs", X[:100], y[:100], X[100:], y[100:],
                                               {}).problem, "sgd",
                         hyperparams={"learning_rate": 0.5}, epochs=30, seed=record.run_seed)
    predicted = np.where(X[100:] @ np.asarray(rerun.params, np.float64) >= 0, 1, -1)
    assert math.isclose(record.test_error, np.mean(predicted != y[100:]), abs_tol=1e-12)
    with pytest.raises(ValueError, match="all whole numbers"):
        bench.benchmark_dataset("ids", X[:100], np.arange(100) % 3 * 1.0, X[100:],
                                np.arange(20) % 3 * 1.0, {}, {"SGD": {}}, max_epochs=5)


@pytest.mark.slow
def test_tuning_a_user_spec_is_one_sweep_of_its_learning_rate(tmp_path, regression_data):
    config = {"hb": {"optimizer": f"{USER_FILE}:heavy_ball", "learning_rate": 0.05}}
    bench = LargeScaleBenchmark(tmp_path, tune=True, progress=False)
    record = bench.benchmark_dataset("toy", *regression_data, {}, config, max_epochs=20)["hb"]
    assert record.status is not RunStatus.FAILED, record.error
    grid = record.tuning["learning_rates"]
    assert np.allclose(grid, 0.05 * 2.0 ** np.arange(-4, 4))
    assert len(record.tuning["final_losses"]) == 8   # one vmapped sweep over the 8 rates
    # Independent check of every lane: the heavy-ball recursion in NumPy, float64.
    X, y, _, _ = regression_data
    expected = []
    for rate in grid:
        w, m = np.zeros(X.shape[1]), np.zeros(X.shape[1])
        for _ in range(20):
            m = X.T @ (X @ w - y) / len(y) + 0.9 * m
            w = w - rate * m
        expected.append(0.5 * np.mean((X @ w - y) ** 2))
    np.testing.assert_allclose(record.tuning["final_losses"], expected, rtol=1e-4)
    best = float(grid[int(np.argmin(expected))])
    assert record.tuning["best_learning_rate"] == best == record.hyperparameters_run["learning_rate"]

