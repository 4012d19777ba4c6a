"""Sweeps: one vmapped program equals separate runs; a diverging lane leaves the others alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optiscale_jax.problems import make_problem
from optiscale_jax.training import run, run_reference, sweep
from optiscale_jax.training.sweep import best_index


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(57, 4)) * np.array([1.0, 3.0, 0.5, 1.0])
    y = X @ rng.normal(size=4) + 0.2 * rng.normal(size=57)
    return make_problem("least_squares", X, y)


@pytest.fixture(scope="module")
def full_batch_sweep(problem):
    # L = largest eigenvalue of X^T X / n: rates 2.5/L and beyond make GD diverge.
    L = np.linalg.eigvalsh(problem.X.T @ problem.X / problem.n_samples).max()
    rates = [0.1 / L, 0.5 / L, 1.0 / L, 2.5 / L]
    f_star = problem.optimum().f_star
    return rates, f_star, sweep(problem, "sgd", learning_rates=rates, epochs=60,
                                dtype="float64", f_star=f_star)


def test_sweep_equals_separate_runs_and_isolates_a_diverging_config(problem, full_batch_sweep):
    rates, f_star, result = full_batch_sweep
    assert result.statuses[-1] == "diverged"
    assert result.statuses[:3] == [r.status for r in result.runs[:3]]
    assert all(s != "diverged" for s in result.statuses[:3])
    diverged = result.runs[-1]
    assert np.all(np.isfinite(diverged.train_loss)) and np.all(np.isfinite(diverged.params))
    # Each lane equals the same configuration run alone (reference loop; the engine alone
    # for the diverging one), so the diverging lane changed nothing in the others.
    for rate, lane in zip(rates, result.runs):
        alone = run_reference(problem, "sgd", {"learning_rate": rate}, epochs=60,
                              dtype="float64", f_star=f_star)
        np.testing.assert_allclose(lane.train_loss, alone.train_loss, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(lane.params, alone.params, rtol=1e-10, atol=1e-12)
        assert lane.status == alone.status and lane.diverged_epoch == alone.diverged_epoch
    engine_alone = run(problem, "sgd", hyperparams={"learning_rate": rates[-1]}, epochs=60,
                       dtype="float64", f_star=f_star)
    np.testing.assert_allclose(engine_alone.params, diverged.params, rtol=1e-12)
    assert engine_alone.diverged_epoch == diverged.diverged_epoch
    assert result.train_loss.shape == (4, 60) and result.suboptimality.shape == (4, 60)


def test_best_config_is_lowest_final_loss_among_non_diverged(full_batch_sweep):
    rates, _, result = full_batch_sweep
    finals = [r.train_loss[-1] for r in result.runs[:3]]
    expected = int(np.argmin(finals))
    assert result.best_index == expected
    assert result.best_config["learning_rate"] == pytest.approx(rates[expected])
    assert result.best is result.runs[expected]
    assert best_index(np.array([1.0, 0.5, np.nan]), np.array([False, True, True])) == 0
    assert best_index(np.array([1.0, 0.5]), np.array([True, True])) is None
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["best_index"] == expected and len(payload["runs"]) == 4


def test_seeds_are_swept_and_each_lane_is_its_own_run(problem):
    result = sweep(problem, "adam", learning_rates=[0.05, 0.2], seeds=[0, 5], epochs=8,
                   batch_size=10, dtype="float64")
    assert result.learning_rates.tolist() == [0.05, 0.05, 0.2, 0.2]
    assert result.seeds.tolist() == [0, 5, 0, 5]
    assert not np.array_equal(result.runs[0].train_loss, result.runs[1].train_loss)
    alone = run_reference(problem, "adam", {"learning_rate": 0.2}, epochs=8, batch_size=10,
                          seed=5, dtype="float64")
    np.testing.assert_allclose(result.runs[3].train_loss, alone.train_loss, rtol=1e-10)
    np.testing.assert_allclose(result.runs[3].params, alone.params, rtol=1e-10, atol=1e-12)
    assert result.compile_time_s > 0 and result.run_time_s > 0


def test_bad_grids_raise_clear_errors(problem):
    with pytest.raises(ValueError, match="learning_rates"):
        sweep(problem, "sgd", learning_rates=[], epochs=1)
    with pytest.raises(ValueError, match="learning_rates"):
        sweep(problem, "sgd", learning_rates=[0.1, np.nan], epochs=1)
    with pytest.raises(ValueError, match="seeds"):
        sweep(problem, "sgd", learning_rates=[0.1], seeds=[-1], epochs=1)
    with pytest.raises(ValueError, match="learning_rates=..."):
        sweep(problem, "sgd", learning_rates=[0.1], epochs=1, hyperparams={"learning_rate": 1})
