"""Estimators: fit / predict / score / step, backends, use_jit=False, bad input."""

from __future__ import annotations

import gzip

import jax
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from optiscale_jax.datasets import load_california_housing, load_mnist
from optiscale_jax.training import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    JAXOptimizer,
    Momentum,
    Nesterov,
    RMSProp,
    events,
)

ALL = [SGD, Momentum, Nesterov, Adam, AdamW, RMSProp, Adagrad]


@pytest.fixture(scope="module")
def binary_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = (X @ np.array([2.0, -1.0, 0.5]) + 0.3 * rng.normal(size=80) > 0).astype(float)
    return X, y


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=90)
    return X, y


def test_auto_loss_predict_and_score(binary_data, regression_data):
    X, y = binary_data
    clf = Adam(learning_rate=0.1, epochs=200).fit(X, y)
    assert clf.loss_ == "logistic" and clf.problem_.kind == "logistic"
    assert clf.coef_.shape == (3,) and clf.intercept_ == 0.0 and not clf.fit_intercept_
    assert len(clf.history_["loss"]) == 200 and clf.history_["loss"][-1] < np.log(2)
    labels = clf.predict(X)
    assert set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (X @ clf.coef_ >= 0).astype(int))
    assert clf.score(X, y) == pytest.approx(np.mean(labels == y)) and clf.score(X, y) > 0.9
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-(X @ clf.coef_.astype(float)))),
                               rtol=1e-6)
    assert clf.compile_time_s_ > 0 and clf.fit_time_s_ > 0 and clf.result_.epochs == 200

    X, y = regression_data
    reg = Nesterov(learning_rate=0.1, epochs=300).fit(X, y + 5.0)
    assert reg.loss_ == "least_squares" and reg.problem_.kind == "ridge" and reg.fit_intercept_
    assert reg.problem_.X.shape == (90, 5) and np.all(reg.problem_.X[:, -1] == 1.0)
    assert reg.intercept_ == pytest.approx(5.0, abs=0.05)
    prediction = reg.predict(X)
    residual = np.sum((y + 5.0 - prediction) ** 2)
    expected_r2 = 1 - residual / np.sum((y - y.mean()) ** 2)
    assert reg.score(X, y + 5.0) == pytest.approx(expected_r2) and expected_r2 > 0.99


def test_step_is_one_optimizer_step_and_matches_fit(regression_data):
    X, y = regression_data
    fitted = Momentum(learning_rate=0.05, epochs=30, dtype="float64").fit(X, y)
    stepped = Momentum(learning_rate=0.05, dtype="float64")
    losses = [stepped.step(X, y) for _ in range(30)]
    np.testing.assert_allclose(stepped.params_, fitted.params_, rtol=1e-10, atol=1e-12)
    # step returns the loss before its update: the first is f(0), the rest follow fit's curve.
    assert losses[0] == pytest.approx(fitted.result_.initial_loss, rel=1e-12)
    np.testing.assert_allclose(losses[1:], fitted.history_["loss"][:29], rtol=1e-10)
    assert stepped.history_["loss"] == losses
    # A hand-written mini-batch loop keeps going from the fitted weights.
    before = fitted.problem_.full_loss(fitted.params_)
    for start in range(0, 90, 30):
        fitted.step(X[start:start + 30], y[start:start + 30])
    assert fitted.problem_.full_loss(fitted.params_) < before


@pytest.mark.slow
def test_use_jit_false_runs_op_by_op_with_the_same_result(binary_data):
    X, y = binary_data
    seen = []
    listener = events.add_listener(lambda *e: seen.append(e[0]))
    try:
        eager = JAXOptimizer("momentum", learning_rate=0.1, use_jit=False, epochs=3,
                             dtype="float64").fit(X, y)
    finally:
        events.remove_listener(listener)
    jitted = JAXOptimizer("momentum", learning_rate=0.1, use_jit=True, epochs=3,
                          dtype="float64").fit(X, y)
    assert seen == ["setup", "epochs"]        # no compile event: nothing was jit-compiled
    assert eager.result_.kernel == "reference" and eager.compile_time_s_ == 0.0
    assert eager.result_.backend == "jax" and jitted.result_.kernel == "fused"
    np.testing.assert_allclose(eager.coef_, jitted.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(eager.history_["loss"], jitted.history_["loss"], rtol=1e-10)


def test_numpy_backend_matches_the_engine(regression_data):
    X, y = regression_data
    kwargs = dict(learning_rate=0.01, epochs=5, dtype="float64")
    engine = AdamW(**kwargs).fit(X, y)
    reference = AdamW(backend="numpy", **kwargs).fit(X, y)
    assert reference.result_.backend == "numpy"
    np.testing.assert_allclose(engine.coef_, reference.coef_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("X,y,match", [
    (np.ones((5, 2)), np.ones(4), "y has 4 entries but X has 5 rows"),
    (np.ones((0, 2)), np.ones(0), "empty"),
    (np.ones(5), np.ones(5), "2-D"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), np.ones(2), r"NaN/Inf\), first at X\[0, 1\]"),
    (np.ones((2, 2)), np.array([1.0, np.inf]), "NaN/Inf"),
])
def test_fit_rejects_bad_data(X, y, match):
    with pytest.raises(ValueError, match=match):
        Adam(epochs=1).fit(X, y)


def test_fit_rejects_bad_settings(binary_data):
    X, y = binary_data
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        Adam(loss="logistic", epochs=1).fit(X, y * 2 + 1.5)
    with pytest.raises(ValueError, match="loss='logistic'.* 3: 0, 1, 2.*loss='softmax'"):
        Adam(loss="logistic", epochs=1).fit(X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0))
    with pytest.raises(ValueError, match="batch_size=0"):
        Adam(batch_size=0)
    with pytest.raises(ValueError, match="batch_size=81 is larger than the 80 samples"):
        Adam(batch_size=81, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="loss='hinge'"):
        Adam(loss="hinge")
    with pytest.raises(ValueError, match="backend='tpu'"):
        Adam(backend="tpu")
    with pytest.raises(ValueError, match="optimizer_type='adm'"):
        JAXOptimizer("adm")
    with pytest.raises(ValueError, match="learning_rate"):
        SGD(learning_rate=-1.0)
    with pytest.raises(ValueError, match="epochs=0"):
        SGD(epochs=0)
    with pytest.raises(NotFittedError, match="not fitted"):
        SGD().predict(X)
    model = SGD(epochs=2).fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but SGD is expecting 3 features"):
        model.predict(np.ones((2, 5)))
    assert not jax.config.jax_enable_x64


def softmax(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def three_classes():
    rng = np.random.default_rng(2)
    centres = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.5]])
    labels = np.repeat([0, 1, 2], 40)
    return centres[labels] + 0.6 * rng.normal(size=(120, 2)), labels


def test_class_ids_fit_a_softmax_classifier_not_least_squares(three_classes):
    X, y = three_classes
    model = Adam(learning_rate=0.1, epochs=200, backend="numpy").fit(X, y)
    assert model.loss_ == "softmax" and model.problem_.kind == "softmax"
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    scores = X @ model.coef_                          # (n, 3) logits, computed here
    np.testing.assert_array_equal(model.predict(X), np.argmax(scores, axis=1))
    np.testing.assert_allclose(model.predict_proba(X), softmax(scores), rtol=1e-12)
    np.testing.assert_allclose(model.decision_function(X), scores, rtol=1e-12)
    accuracy = np.mean(model.predict(X) == y)
    assert model.score(X, y) == accuracy and accuracy > 0.95
    # The same ids as floats are ambiguous: refused with both fixes named, unless loss says.
    with pytest.raises(ValueError, match="whole numbers.*loss='softmax'.*loss='least_squares'"):
        Adam(epochs=1, backend="numpy").fit(X, y.astype(float))
    as_floats = Adam(learning_rate=0.1, epochs=200, backend="numpy", loss="softmax")
    np.testing.assert_array_equal(as_floats.fit(X, y.astype(float)).coef_, model.coef_)


@pytest.mark.parametrize("labels", [np.array([-1, 1]), np.array([-1.0, 1.0]),
                                    np.array(["spam", "ham"])])
def test_two_class_labels_are_mapped_to_logistic_and_back(binary_data, labels):
    X, y01 = binary_data
    y = labels[y01.astype(int)]
    settings = dict(learning_rate=0.5, epochs=100, backend="numpy", dtype="float64")
    model = SGD(**settings).fit(X, y)
    reference = SGD(**settings).fit(X, y01)
    assert model.loss_ == "logistic"
    np.testing.assert_array_equal(model.classes_, np.sort(labels))
    # classes_[1] is the positive class: the same weights as 0/1 labels in that order.
    sign = 1.0 if np.sort(labels)[1] == labels[1] else -1.0
    np.testing.assert_allclose(model.coef_, sign * reference.coef_, rtol=1e-10)
    prediction = model.predict(X)
    np.testing.assert_array_equal(prediction, np.sort(labels)[(X @ model.coef_ >= 0).astype(int)])
    assert model.score(X, y) == np.mean(prediction == y) > 0.9
    assert model.decision_function(X).shape == (80,)
    p = 1 / (1 + np.exp(-(X @ model.coef_)))
    np.testing.assert_allclose(model.predict_proba(X), np.stack([1 - p, p], axis=1), rtol=1e-10)


def test_step_encodes_labels_with_the_fitted_classes(binary_data):
    X, y01 = binary_data
    y = np.where(y01 == 1, 1, -1)
    model = SGD(learning_rate=0.5, epochs=5, backend="numpy", dtype="float64").fit(X, y)
    twin = SGD(learning_rate=0.5, epochs=5, backend="numpy", dtype="float64").fit(X, y01)
    positives = y == 1                                   # a batch of one class is fine
    assert model.step(X[positives], y[positives]) == twin.step(X[positives], y01[positives])
    np.testing.assert_array_equal(model.coef_, twin.coef_)
    with pytest.raises(ValueError, match=r"label\(s\) \[0\].*its classes are \[-1, 1\]"):
        model.step(X[:3], np.array([0, 1, -1]))


def test_complex_inputs_and_string_hyperparameters_are_refused(binary_data):
    X, y = binary_data
    with pytest.raises(ValueError, match="Complex data not supported: X has dtype complex128"):
        Adam(epochs=1).fit(X + 1j, y)
    with pytest.raises(ValueError, match="y is complex"):
        Adam(epochs=1).fit(X, y + 0j)
    with pytest.raises(ValueError, match=r"learning_rate='0.01' is invalid \(str\)"):
        Adam(learning_rate="0.01")
    with pytest.raises(ValueError, match=r"learning_rate='0.1' is invalid \(str\)"):
        SGD(learning_rate="0.1")
    with pytest.raises(ValueError, match=r"b1='0.9' is invalid \(str\).*e.g. b1=0.9"):
        Adam(b1="0.9")
    with pytest.raises(ValueError, match=r"learning_rate='0.01' is invalid"):
        JAXOptimizer("adam", learning_rate="0.01")
    with pytest.raises(ValueError, match=r"momentum=array\(\[0.9\]\) is invalid \(ndarray\)"):
        Momentum(momentum=np.array([0.9]))
    with pytest.raises(ValueError, match="b1=0.5: not a hyperparameter of optimizer_type='sgd'"):
        JAXOptimizer("sgd", b1=0.5)
    with pytest.raises(ValueError, match="seed=-1 is invalid"):
        SGD(seed=-1)
    with pytest.raises(ValueError, match="epochs=2147483653 is too large"):
        SGD(epochs=2**31 + 5)
    model = Adam(epochs=1)
    with pytest.raises(ValueError, match="learning_rate='fast'"):
        model.set_params(learning_rate="fast")
    assert model.learning_rate == 0.01                  # left as it was


def test_optimizer_hyperparameters_are_parameters_that_reach_the_optimizer(regression_data):
    X, y = regression_data
    model = Adam(learning_rate=0.05, epochs=4, b1=0.5, b2=0.9, dtype="float64", l2=0.0,
                 fit_intercept=False, backend="numpy")
    assert model.get_params()["b1"] == 0.5 and clone(model).get_params() == model.get_params()
    model.fit(X, y)
    # Independently: Adam's update (Kingma & Ba) in NumPy on the least-squares gradient
    # X^T (X w - y) / n.
    w, m, v = np.zeros(4), np.zeros(4), np.zeros(4)
    for t in range(1, 5):
        g = X.T @ (X @ w - y) / 90
        m, v = 0.5 * m + 0.5 * g, 0.9 * v + 0.1 * g**2
        w = w - 0.05 * (m / (1 - 0.5**t)) / (np.sqrt(v / (1 - 0.9**t)) + 1e-8)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-12)
    by_name = JAXOptimizer("adam", learning_rate=0.05, epochs=4, b1=0.5, b2=0.9,
                           dtype="float64", l2=0.0, fit_intercept=False).fit(X, y)
    np.testing.assert_allclose(by_name.coef_, model.coef_, rtol=1e-10)
    assert by_name.optimizer_name == "adam" and clone(by_name).b1 == 0.5


# --- acceptance on the real data sets, with the documented defaults ------------------------
MNIST_F_STAR = 0.3012673719   # shared/data/README.md: scipy L-BFGS to gradient 7e-9, float64
# Reached with the defaults (measured, docs/training.md); the others stop short of 1e-3 on
# MNIST (kappa ~ 1e5: L = 9.9, mu = l2 = 1e-4) and are held to the bound they do reach.
MNIST_REACHES_1E3 = {"momentum", "nesterov", "adam", "adamw"}


@pytest.fixture(scope="module")
def california(data_dir):
    X, y, _, _, _ = load_california_housing(data_dir=data_dir, test_size=0.0)
    # Independent f*: ridge normal equations (A^T A / n + l2 I) w = A^T y / n with the
    # intercept column A = [X, 1] (least squares fits an intercept by default).
    X = np.hstack([X, np.ones((X.shape[0], 1))])
    n, d = X.shape
    w = np.linalg.solve(X.T @ X / n + 1e-4 * np.eye(d), X.T @ y / n)
    f_star = 0.5 * np.mean((X @ w - y) ** 2) + 0.5e-4 * w @ w
    return X, y, f_star


@pytest.fixture(scope="module")
def mnist(data_dir):
    # Read the IDX files directly (the README's f* is for exactly these rows: all 10,000
    # test images, pixels / 255, label 1 for digits 5-9), independent of the loader.
    with gzip.open(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz") as handle:
        X = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(10000, 784) / 255.0
    with gzip.open(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz") as handle:
        digits = np.frombuffer(handle.read(), np.uint8, offset=8)
    return X, (digits >= 5).astype(np.float64)


@pytest.mark.slow
@pytest.mark.parametrize("cls", ALL)
def test_defaults_fit_california_housing_to_1e3(cls, california):
    X, y, f_star = california
    model = cls().fit(X[:, :-1], y)
    assert model.problem_.kind == "ridge" and model.result_.epochs == cls().epochs
    assert model.problem_.optimum().f_star == pytest.approx(f_star, rel=1e-10)
    relative = (model.problem_.full_loss(model.params_) - f_star) / f_star
    assert relative <= 1e-3, (cls.__name__, relative)
    assert model.score(X[:, :-1], y) > 0.6          # R^2 of a linear fit of California


@pytest.mark.slow
def test_ten_digit_mnist_is_a_softmax_classifier_scored_by_accuracy(data_dir):
    X, y, X_test, y_test, metadata = load_mnist(n_samples=5000, data_dir=data_dir)
    assert metadata["task"] == "multiclass_classification" and y.dtype == np.int64
    model = JAXOptimizer(optimizer_type="adam", learning_rate=0.01).fit(X, y)
    assert model.loss_ == "softmax" and model.coef_.shape == (784, 10)
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    # Held-out accuracy, computed here from the weights: argmax of X_test W.
    digits = np.argmax(X_test.astype(np.float64) @ model.coef_.astype(np.float64), axis=1)
    np.testing.assert_array_equal(model.predict(X_test), digits)
    accuracy = float(np.mean(digits == y_test))
    print(f"10-digit MNIST, 4000 train / 1000 held out: accuracy {accuracy:.3f}")
    assert accuracy > 0.85
    assert model.score(X_test, y_test) == accuracy


@pytest.mark.slow
@pytest.mark.parametrize("cls", ALL)
def test_defaults_fit_mnist_binary(cls, mnist):
    X, y = mnist
    model = cls().fit(X, y)
    assert model.problem_.kind == "logistic" and model.result_.status != "diverged"
    final = model.problem_.full_loss(model.coef_)
    relative = (final - MNIST_F_STAR) / MNIST_F_STAR
    assert relative > -1e-6                     # f* really is the minimum
    bound = 1e-3 if cls.optimizer_name in MNIST_REACHES_1E3 else 1e-1
    assert relative <= bound, (cls.__name__, relative)
    assert model.score(X, y) > 0.85
