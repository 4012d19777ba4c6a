"""Input checks and the one JSON encoder: complex data refused by name, backends from
`optiscale_jax.backends`, non-finite floats spelled "NaN" / "Infinity" everywhere."""

from __future__ import annotations

import json
import math
import pathlib
import warnings

import numpy as np
import optax
import pytest

from optiscale_jax.backends import BACKEND_NAMES
from optiscale_jax.benchmark import identity
from optiscale_jax.problems import finite_matrix, finite_vector, make_problem
from optiscale_jax.training import Adam, RunResult, to_json_value
from optiscale_jax.training.result import jsonable, make_result


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 3)), rng.normal(size=20)


@pytest.mark.parametrize("as_list", [False, True])
def test_make_problem_refuses_complex_features_naming_x_and_the_fix(data, as_list):
    X, y = data
    Xc = X + 1j if not as_list else (X + 0j).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # refused, not dropped with a ComplexWarning
        with pytest.raises(ValueError, match=r"X is complex \(dtype complex128\).*X\.real.*np\.hstack"):
            make_problem("ridge", Xc, y, l2=1e-2)


def test_make_problem_refuses_complex_targets_naming_y_and_the_fix(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"y is complex \(dtype complex128\).*y\.real"):
            make_problem("least_squares", X, y + 0j)


def test_finite_matrix_and_vector_refuse_complex_and_keep_real(data):
    X, y = data
    with pytest.raises(ValueError, match=r"features is complex \(dtype complex64\)"):
        finite_matrix(X.astype(np.complex64), "features")
    with pytest.raises(ValueError, match=r"targets is complex"):
        finite_vector(y + 0j, len(y), "targets")
    np.testing.assert_array_equal(finite_matrix(X), X)
    np.testing.assert_array_equal(finite_vector(y, len(y)), y)


def test_one_encoder_spells_non_finite_floats_as_strict_json():
    value = {"a": float("nan"), "b": np.float32("inf"), "c": [-math.inf, np.float64(1e-3)],
             "d": np.array([[1, 2]]), "e": np.array(2.5), "f": pathlib.PurePosixPath("/x"),
             1: (True, None)}
    expected = {"a": "NaN", "b": "Infinity", "c": ["-Infinity", 0.001], "d": [[1, 2]],
                "e": 2.5, "f": "/x", "1": [True, None]}
    assert to_json_value(value) == expected
    assert identity.to_json_value is to_json_value      # benchmark uses the same definition
    json.dumps(to_json_value(value), allow_nan=False)
    schedule = optax.constant_schedule(0.1)
    with pytest.raises(TypeError, match="cannot write a value of type function"):
        to_json_value({"lr": schedule})
    assert jsonable({"lr": schedule, "x": float("nan")}) == {"lr": repr(schedule), "x": "NaN"}


def test_run_result_to_dict_uses_the_project_spelling():
    result = make_result(params=np.zeros(2), initial_loss=float("nan"), initial_grad_norm=1.0,
                         train_loss=np.array([1.0, np.inf]), grad_norm=np.array([1.0, 1.0]),
                         diverged_epoch=2, f_star=None, tol=1e-6, grad_tol=None,
                         compile_time_s=0.0, run_time_s=0.0, backend="jax", device="cpu",
                         dtype="float32", optimizer="adam", hyperparams={}, batch_size=None, seed=0)
    assert isinstance(result, RunResult)
    record = result.to_dict()
    assert record["initial_loss"] == "NaN" and record["train_loss"] == [1.0, "Infinity"]
    json.dumps(record, allow_nan=False)


def test_estimator_backends_are_the_backends_package_list():
    with pytest.raises(ValueError, match="choose one of: " + ", ".join(BACKEND_NAMES) + "$"):
        Adam(backend="tpu").fit(np.ones((4, 2)), np.arange(4.0))
