"""LargeScaleBenchmark: diverged and failed runs are recorded and the campaign goes on;
bad configurations fail before any run; the problem kind is inferred from the labels."""

import math

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
    with pytest.raises(ValueError, match="unknown optimizer 'adm'; choose one of"):
        bench.benchmark_dataset("toy", *regression_data, {},
                                {"SGD": {"learning_rate": 0.1}, "adm": {}}, max_epochs=5)
    with pytest.raises(ValueError, match="unknown hyperparameter.*'lr'"):
        bench.benchmark_dataset("toy", *regression_data, {}, {"Adam": {"lr": 0.1}}, max_epochs=5)
    with pytest.raises(ValueError, match="max_epochs must be a positive integer, got 0"):
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
