"""Synthetic generators: exact condition numbers (measured by SVD), memory guard, bad input."""

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import psutil
import pytest
import scipy.linalg
import threadpoolctl

from optiscale_jax.datasets import (
    generate_extreme_condition_data,
    generate_highdim_regression,
    hessian_spectrum,
)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Multi-threaded BLAS stalls on a shared 2-core machine; one thread is far faster here."""
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


def _measured_kappa(X):
    """kappa of X^T X / n over the nonzero spectrum, by LAPACK gesvd (an independent SVD)."""
    s = scipy.linalg.svd(np.asarray(X, dtype=np.float64), compute_uv=False, lapack_driver="gesvd")
    return (s[0] / s[-1]) ** 2, s


@pytest.mark.parametrize("n, d, kappa, method", [
    (300, 100, 50.0, "haar"),
    (300, 100, 50.0, "dct"),
    (200, 200, 1e6, "haar"),
    (257, 120, 1e6, "dct"),
    (80, 250, 1e4, "dct"),   # n < d: singular Hessian
    (60, 150, 1e4, "haar"),  # n < d: singular Hessian
])
def test_highdim_hits_requested_condition_number(n, d, kappa, method):
    X, y, w, meta = generate_highdim_regression(n, d, kappa, n_informative=7, noise=0.05,
                                                seed=1, orthogonal=method)
    assert X.shape == (n, d) and y.shape == (n,) and w.shape == (d,)
    assert X.dtype == np.float64 and meta["orthogonal_factors"] == method
    measured, s = _measured_kappa(X)
    assert measured == pytest.approx(kappa, rel=1e-6)
    assert meta["condition_number_nonzero"] == pytest.approx(kappa, rel=1e-12)
    assert meta["L"] == pytest.approx(s[0] ** 2 / n, rel=1e-10) and meta["L"] == pytest.approx(1.0)
    if n >= d:
        assert meta["condition_number"] == pytest.approx(kappa, rel=1e-12)
        assert meta["mu"] == pytest.approx(1.0 / kappa, rel=1e-10) and meta["rank"] == d
    else:
        assert meta["condition_number"] == float("inf") and meta["singular"]
        assert meta["rank"] == n and meta["mu"] == 0.0
    assert np.count_nonzero(w) == 7 and meta["n_informative"] == 7
    residual = y - X @ w
    assert residual.std() == pytest.approx(0.05, rel=0.3)


@pytest.mark.parametrize("method", ["haar", "dct"])
@pytest.mark.parametrize("condition_type", ["exponential", "linear", "clustered"])
def test_hessian_eigenvalues_are_the_designed_spectrum(method, condition_type):
    n, d, kappa = 150, 40, 1e3
    X, *_ = generate_highdim_regression(n, d, kappa, condition_type=condition_type,
                                        orthogonal=method, seed=2)
    eig = np.linalg.eigvalsh(X.T @ X / n)[::-1]  # the Hessian, formed explicitly
    design = hessian_spectrum(condition_type, kappa, d)
    np.testing.assert_allclose(eig, design, rtol=1e-9)
    if condition_type == "exponential":
        np.testing.assert_allclose(np.diff(np.log(design)), -np.log(kappa) / (d - 1), rtol=1e-9)
    elif condition_type == "linear":
        np.testing.assert_allclose(np.diff(design), -(1 - 1 / kappa) / (d - 1), rtol=1e-9)
    else:
        gaps = -np.diff(np.log(design))
        assert gaps.max() > 0.8 * np.log(kappa)  # one wide gap between two tight clusters


def test_dct_factors_are_dense_like_haar():
    """Rows are delocalised like a Haar construction's: no row is dominated by a few
    coordinates (for a random unit vector in R^256 the largest squared entry is ~0.035)."""
    shares = {}
    for method in ("haar", "dct"):
        X, *_ = generate_highdim_regression(400, 256, 10.0, orthogonal=method, seed=0)
        shares[method] = np.max(X**2, axis=1) / np.sum(X**2, axis=1)
    assert shares["dct"].max() < 0.2
    assert np.median(shares["dct"]) == pytest.approx(np.median(shares["haar"]), rel=0.2)


def test_highdim_seed_and_dtype():
    a = generate_highdim_regression(120, 60, 30.0, seed=5)
    b = generate_highdim_regression(120, 60, 30.0, seed=5)
    c = generate_highdim_regression(120, 60, 30.0, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    X32, y32, w32, meta = generate_highdim_regression(120, 60, 1e4, seed=5, dtype=np.float32)
    assert X32.dtype == y32.dtype == w32.dtype == np.float32 and meta["dtype"] == "float32"
    bound = meta["cast_perturbation_bound"]
    X64 = generate_highdim_regression(120, 60, 1e4, seed=5)[0]
    assert np.linalg.norm(X32.astype(np.float64) - X64) <= bound
    s32 = np.linalg.svd(X32.astype(np.float64), compute_uv=False)
    s64 = np.sqrt(120 * hessian_spectrum("exponential", 1e4, 60))
    assert np.max(np.abs(s32 - s64)) <= bound  # Weyl


def test_highdim_d10000_singular_case():
    """d = 10,000 (n = 400 < d): built in well under a second of work; nonzero kappa exact."""
    X, y, w, meta = generate_highdim_regression(400, 10_000, 1e6, seed=0)
    assert X.shape == (400, 10_000) and meta["orthogonal_factors"] == "dct"
    # eigenvalues of the 400 x 400 Gram matrix X X^T / n = the nonzero Hessian spectrum;
    # accurate to ~eps * kappa = 2e-10 relative, far inside the 1e-6 tolerance
    eig = np.linalg.eigvalsh(X @ X.T / 400)
    assert eig[-1] / eig[0] == pytest.approx(1e6, rel=1e-6)
    assert meta["condition_number"] == float("inf") and meta["rank"] == 400
    assert meta["n_informative"] == 1000


def test_memory_error_before_allocation(monkeypatch):
    # 1e5 x 1e5 float64: the 74.5 GiB output, the 74.5 GiB scaled right factor, blocks
    with pytest.raises(MemoryError, match=r"needs about 149\.\d\d GiB but only .* GiB is "
                                          r"available.*reduce n_samples or n_features"):
        generate_highdim_regression(100_000, 100_000, 10.0)

    class Tiny:
        available = 50 * 2**20

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tiny())
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"needs about 0\.\d\d GiB but only 0\.05 GiB"):
            generate_highdim_regression(3000, 3000, 10.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # nothing of the 72 MB matrix was allocated


@pytest.mark.parametrize("kwargs, match", [
    ({"condition_number": 0.5}, "condition_number must be finite and >= 1, got 0.5"),
    ({"condition_number": float("nan")}, "condition_number must be finite"),
    ({"n_informative": 21}, "n_informative=21 exceeds n_features=20"),
    ({"n_informative": 0}, "n_informative must be a positive integer"),
    ({"n_samples": 0}, "n_samples must be a positive integer, got 0"),
    ({"n_features": -3}, "n_features must be a positive integer, got -3"),
    ({"n_samples": 10.5}, "n_samples must be a positive integer"),
    ({"noise": -1.0}, "noise must be finite and >= 0"),
    ({"condition_type": "cubic"}, "unknown condition_type 'cubic'"),
    ({"orthogonal": "svd"}, "unknown orthogonal method 'svd'"),
    ({"dtype": np.int64}, "floating dtype"),
])
def test_highdim_bad_arguments(kwargs, match):
    args = {"n_samples": 50, "n_features": 20, "condition_number": 10.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_highdim_regression(**args)


@pytest.mark.parametrize("condition_type", ["exponential", "linear", "clustered"])
@pytest.mark.parametrize("kappa, tol", [(1e3, 1e-6), (1e6, 1e-6), (1e9, 1e-3)])
def test_extreme_condition_actual_kappa(condition_type, kappa, tol):
    X, y, meta = generate_extreme_condition_data(kappa, condition_type, n_samples=300,
                                                 n_features=60, seed=3)
    measured, _ = _measured_kappa(X)
    assert measured == pytest.approx(kappa, rel=tol)
    assert meta["actual_kappa"] == pytest.approx(measured, rel=1e-9)
    assert meta["relative_kappa_error"] < tol and meta["target_kappa"] == kappa
    assert X.shape == (300, 60) and y.shape == (300,) and meta["condition_type"] == condition_type


def test_extreme_float32_is_measured_after_the_cast():
    X, _, meta = generate_extreme_condition_data(1e9, n_samples=200, n_features=50, seed=0,
                                                 dtype=np.float32)
    measured, _ = _measured_kappa(X)
    assert X.dtype == np.float32 and meta["actual_kappa"] == pytest.approx(measured, rel=1e-9)


def test_extreme_defaults_and_bad_arguments():
    X, y, meta = generate_extreme_condition_data(1e3)
    assert X.shape == (1000, 100) and meta["relative_kappa_error"] < 1e-6
    with pytest.raises(ValueError, match="n_samples=50 < n_features=60"):
        generate_extreme_condition_data(1e3, n_samples=50, n_features=60)
    with pytest.raises(ValueError, match="target_kappa must be finite and >= 1, got 0.1"):
        generate_extreme_condition_data(0.1)
    with pytest.raises(ValueError, match="unknown condition_type 'quadratic'"):
        generate_extreme_condition_data(1e3, "quadratic")


_PEAK_SCRIPT = """
import json, sys
import numpy as np
from optiscale_jax.datasets import generate_highdim_regression, is_aligned
def field(name):
    for line in open('/proc/self/status'):
        if line.startswith(name + ':'):
            return int(line.split()[1]) * 1024
open('/proc/self/clear_refs', 'w').write('5')
base = field('VmRSS')
X, y, w, meta = generate_highdim_regression(int(sys.argv[1]), int(sys.argv[2]), 100.0,
                                            dtype=np.float32, orthogonal='dct')
print(json.dumps({'peak': field('VmHWM') - base, 'estimate': meta['estimated_bytes'],
                  'out': X.nbytes, 'aligned': is_aligned(X), 'dtype': str(X.dtype)}))
"""


@pytest.mark.slow
def test_float32_generation_allocates_what_its_estimate_counts():
    """Built directly in float32: the process peak above the start (VmHWM) stays within the
    estimate the memory check uses, and far below a float64 n x d matrix."""
    n, d = 40_000, 2_000                                   # 305 MiB of float32 output
    proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n), str(d)],
                          capture_output=True, text=True, timeout=300, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["dtype"] == "float32" and out["aligned"]
    assert out["out"] <= out["peak"] <= out["estimate"] + 64 * 2**20, out   # + interpreter slack
    assert out["peak"] < 1.6 * out["out"], out                               # no float64 n x d
