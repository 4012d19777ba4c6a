"""Streaming problems: the structured transform, the exact population objective, f* by quadrature."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optiscale_jax.studies import streaming


def _dense(problem):
    """V as a d x d matrix (test only): its columns are V e_j."""
    eye = jnp.eye(problem.dim, dtype=jnp.float64)
    return np.asarray(jax.vmap(problem.apply_v)(eye)).T, np.asarray(jax.vmap(problem.apply_vt)(eye)).T


@pytest.fixture(scope="module")
def least_squares_2000():
    with jax.enable_x64(True):
        problem = streaming.make_streaming("least_squares", 2000, spectrum_kind="exponential", kappa=1e9)
        V, Vt = _dense(problem)
    return problem, V, Vt


@pytest.mark.slow  # ~5 s: a dense 2,000 x 2,000 V and its eigendecomposition
def test_transform_is_orthogonal_and_the_spectrum_exact(least_squares_2000):
    problem, V, Vt = least_squares_2000
    assert np.abs(V.T @ V - np.eye(2000)).max() < 1e-12
    assert np.abs(Vt - V.T).max() < 1e-12          # apply_vt is the transpose of apply_v
    sigma = V @ np.diag(problem.eigenvalues) @ V.T
    eigenvalues = np.sort(np.linalg.eigvalsh(sigma))[::-1]
    assert np.abs(eigenvalues - problem.eigenvalues).max() < 1e-12
    assert problem.eigenvalues[0] == 1.0 and problem.eigenvalues[-1] == 1e-9


@pytest.mark.slow  # shares the dense V above
def test_population_risk_equals_the_dense_formula(least_squares_2000):
    problem, V, _ = least_squares_2000
    sigma = V @ np.diag(problem.eigenvalues) @ V.T
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        for w in (rng.standard_normal(2000), problem.w_star + 1e-3 * rng.standard_normal(2000)):
            diff = w - problem.w_star
            dense = 0.5 * diff @ sigma @ diff + 0.5 * problem.noise_std ** 2
            closed = float(problem.population_loss(jnp.asarray(w)))
            assert abs(closed - dense) <= 1e-10 * abs(dense)
            gradient = np.asarray(problem.population_gradient(jnp.asarray(w)))
            np.testing.assert_allclose(gradient, sigma @ diff, atol=1e-10 * np.abs(sigma @ diff).max())


@pytest.mark.slow  # 10^7 samples
def test_logistic_f_star_agrees_with_monte_carlo():
    problem = streaming.make_streaming("logistic", 256, kappa=100.0, signal=2.0)
    f_star = problem.f_star()
    rng = np.random.default_rng(0)
    n = 10 ** 7
    s = rng.standard_normal(n) * 2.0                       # x.w* ~ N(0, w*^T Sigma w* = 4)
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-s))
    values = np.logaddexp(0.0, s) - y * s
    error = values.std() / np.sqrt(n)
    assert abs(f_star - values.mean()) < 3 * error, (f_star, values.mean(), error)
    with jax.enable_x64(True):  # the population loss at w* is the same integral (2-D rule)
        assert abs(float(problem.population_loss(jnp.asarray(problem.w_star))) - f_star) < 1e-12


@pytest.mark.slow  # ~3 s compiling the float64 program
def test_logistic_population_loss_and_batch_gradient_match_sampling():
    with jax.enable_x64(True):
        problem = streaming.make_streaming("logistic", 64, kappa=10.0, signal=2.0, seed=1)
        n = 40_000

        @jax.jit  # one program (eager float64 ops would compile one by one)
        def statistics(w):
            batch = problem.sample(jax.random.key(0), n, jnp.float64)
            u = batch.z @ problem.whiten(w)
            labels = batch.e < jax.nn.sigmoid(batch.z @ problem.whiten(jnp.asarray(problem.w_star)))
            values = jax.nn.softplus(u) - labels * u
            exact = problem.population_gradient(w)
            trace, grad_sq = problem.noise_statistics(w, batch)
            return (jnp.mean(values), jnp.std(values) / np.sqrt(n), problem.population_loss(w),
                    jnp.sum((problem.batch_gradient(w, batch) - exact) ** 2), trace, grad_sq, exact @ exact)

        mean, error, population, spread, trace, grad_sq, exact_sq = (
            float(v) for v in statistics(jnp.asarray(0.5 * problem.w_star + 0.1)))
    assert abs(mean - population) < 3 * error
    # E|g_B - G|^2 = tr(Sigma) / B: the batch gradient is unbiased with that spread.
    assert spread < 9 * trace / n
    assert abs(grad_sq - exact_sq) < 0.05 * exact_sq


@pytest.mark.parametrize("kind, dim, kappa, match", [
    ("cubic", 10, 10.0, "unknown spectrum"),
    ("power", 1, 10.0, "dim must be an integer >= 2"),
    ("power", 10, 0.5, "kappa must be a finite number in"),
    ("exponential", 10, float("inf"), "kappa must be a finite number in"),
])
def test_bad_spectrum_or_kappa_names_the_value(kind, dim, kappa, match):
    with pytest.raises(ValueError, match=match):
        streaming.spectrum(kind, dim, kappa)


@pytest.mark.slow
def test_a_million_dimensions_run_in_under_two_gib():
    """Peak resident memory of a fresh process that compiles and runs d = 10^6 steps at B = 2."""
    code = ("import json; from optiscale_jax.studies.streaming_memory import measure; "
            "print(json.dumps(measure(1_000_000, 2, 10, repeats=1)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["peak_resident_gib"] < 2.0, result
    assert np.isfinite(result["final_loss"]) and result["step_s"] > 0 and result["rng_floor_step_s"] > 0
