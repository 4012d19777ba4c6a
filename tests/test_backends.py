"""Backends: names, the CuPy 'not available' path, and basic operations."""

from __future__ import annotations

import builtins
import subprocess
import sys

import numpy as np
import pytest

from optiscale_jax.backends import BACKEND_NAMES, BackendUnavailableError, backend_available, get_backend


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'; choose one of: jax, numpy, cupy"):
        get_backend("tensorflow")


def test_cupy_missing_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    with pytest.raises(BackendUnavailableError, match="requirements-cuda.txt"):
        get_backend("cupy")
    available, reason = backend_available("cupy")
    assert not available and "CuPy is not installed" in reason


def test_cupy_installed_without_gpu_says_so(monkeypatch):
    class FakeCupy:
        @staticmethod
        def is_available():
            return False

    monkeypatch.setitem(sys.modules, "cupy", FakeCupy)
    with pytest.raises(BackendUnavailableError, match="no CUDA device is visible.*requirements-cuda.txt"):
        get_backend("cupy")


@pytest.mark.slow
def test_cupy_is_not_imported_by_the_package():
    code = ("import sys, optiscale_jax.backends, optiscale_jax.optimizers; "
            "optiscale_jax.backends.get_backend('numpy'); print('cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["jax", "numpy"])
def test_backend_round_trip_and_update(name):
    backend = get_backend(name)
    assert backend.name == name and name in BACKEND_NAMES
    x = backend.asarray(np.arange(4.0), dtype=backend.xp.float32)
    assert backend.to_numpy(backend.synchronize(x)).tolist() == [0, 1, 2, 3]
    tx = backend.optimizer("sgd", learning_rate=0.5)
    updates, _ = tx.update(x, tx.init(x), x)
    new = backend.apply_updates(x, updates)
    np.testing.assert_allclose(backend.to_numpy(new), [0, 0.5, 1, 1.5])
    assert backend.to_numpy(new).dtype == np.float32
    assert backend.device_description().startswith(f"{name}:")


@pytest.mark.gpu
def test_cupy_backend_matches_numpy_on_gpu():
    cupy_backend, numpy_backend = get_backend("cupy"), get_backend("numpy")
    rng = np.random.default_rng(0)
    params = rng.normal(size=(64,))
    grads = [rng.normal(size=(64,)) for _ in range(50)]
    results = []
    for backend in (cupy_backend, numpy_backend):
        tx = backend.optimizer("adam", learning_rate=1e-2)
        p = backend.asarray(params)
        state = tx.init(p)
        for g in grads:
            updates, state = tx.update(backend.asarray(g), state, p)
            p = backend.apply_updates(p, updates)
        results.append(backend.to_numpy(backend.synchronize(p)))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)
