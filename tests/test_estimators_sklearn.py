"""The estimators against scikit-learn's own estimator checks (`sklearn.utils.estimator_checks`).

Every check runs on Adam with each `loss` (the estimator type follows it: "auto" is
neither classifier nor regressor until fitted, "least_squares" a regressor, "logistic"
a binary and "softmax" a multiclass classifier) and on SGD, on the NumPy reference
backend: the scikit-learn layer (parameters, labels, validation, predictions) is the same
for every backend, and the NumPy loop needs no compilation (each check fits several
times; on the JAX engine each fit compiles, about 4 minutes for the same list). The JAX
engine and JAXOptimizer get the checks that fit and predict in the slow tests below, and
the parameter checks (no fit) here.

`EXPECTED_FAILURES` lists every check that does not apply, with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils import estimator_checks as checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from optiscale_jax.training import SGD, Adagrad, Adam, AdamW, JAXOptimizer, Momentum, Nesterov, RMSProp

EXPECTED_FAILURES: dict[str, str] = {
    "check_do_not_raise_errors_in_init_or_set_params":
        "bad hyperparameters are refused when the estimator is built and by set_params, "
        "naming the value (Adam(learning_rate='0.01') fails at once, not inside fit)",
    "check_estimators_empty_data_messages":
        "the project's one X check (problems.finite_matrix) words it 'X is empty (shape "
        "(12, 0)); it needs at least one row (sample) and one column (feature)', not "
        "scikit-learn's '0 feature(s) (shape=(12, 0)) while a minimum of 1 is required'",
    "check_fit2d_predict1d":
        "a 1-D X is refused by the project's X check with 'X must be 2-D (n_samples, "
        "n_features), got shape (3,); reshape a single feature with X.reshape(-1, 1)', "
        "not scikit-learn's 'Reshape your data' wording",
    "check_dtype_object":
        "an X holding a non-number (a dict) is refused with ValueError naming X (the "
        "project's X check), where scikit-learn expects numpy's TypeError",
}
# Quick and reproducible: few epochs, a step size that fits the checks' small data sets.
FAST = dict(learning_rate=0.1, epochs=60, backend="numpy")
NUMPY_INSTANCES = [Adam(**FAST), Adam(loss="least_squares", **FAST),
                   Adam(loss="logistic", **FAST), Adam(loss="softmax", **FAST),
                   SGD(learning_rate=0.3, epochs=100, backend="numpy")]


pytestmark = [
    # set_params refuses bad values (see EXPECTED_FAILURES); check_set_params then warns that
    # it recommends validating in fit only. That the parameters stay unchanged is an error.
    pytest.mark.filterwarnings("ignore:.*occurred during set_params.*:UserWarning"),
    pytest.mark.filterwarnings("error:Estimator's parameters changed:UserWarning"),
]


@pytest.mark.slow       # about 300 checks: 3 s of fits, 20 s with pytest's overhead here
@parametrize_with_checks(NUMPY_INSTANCES, expected_failed_checks=lambda _: EXPECTED_FAILURES)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# Checks that need no fit: the parameters of every class (each has its own signature).
PARAMETER_CHECKS = [checks.check_no_attributes_set_in_init, checks.check_estimator_cloneable,
                    checks.check_estimator_repr, checks.check_get_params_invariance,
                    checks.check_set_params, checks.check_parameters_default_constructible,
                    checks.check_estimator_tags_renamed, checks.check_valid_tag_types]


@pytest.mark.parametrize("estimator", [cls() for cls in (SGD, Momentum, Nesterov, Adam, AdamW,
                                                         RMSProp, Adagrad)]
                         + [JAXOptimizer(), JAXOptimizer("rmsprop", decay=0.8)], ids=repr)
@pytest.mark.parametrize("check", PARAMETER_CHECKS, ids=lambda c: c.__name__)
def test_parameter_checks_for_every_class(estimator, check):
    check(type(estimator).__name__, estimator)


# The checks that fit and predict, on the compiled engine (each fit compiles: slow).
SOFTMAX = JAXOptimizer("adam", learning_rate=0.1, epochs=60, loss="softmax")
LOGISTIC = Adam(learning_rate=0.1, epochs=60, loss="logistic")
REGRESSOR = JAXOptimizer("momentum", learning_rate=0.1, epochs=60, momentum=0.9, loss="least_squares")
ENGINE_CASES = [
    (SOFTMAX, checks.check_classifiers_train), (SOFTMAX, checks.check_classifiers_classes),
    (SOFTMAX, checks.check_estimators_pickle), (SOFTMAX, checks.check_methods_subset_invariance),
    (LOGISTIC, checks.check_classifiers_train), (LOGISTIC, checks.check_decision_proba_consistency),
    (REGRESSOR, checks.check_regressors_train), (REGRESSOR, checks.check_fit_idempotent),
    (REGRESSOR, checks.check_n_features_in_after_fitting)]


@pytest.mark.slow
@pytest.mark.parametrize("estimator,check", ENGINE_CASES,
                         ids=[f"{c.__name__}-{e.loss}" for e, c in ENGINE_CASES])
def test_engine_passes_the_fit_and_predict_checks(estimator, check):
    check(type(estimator).__name__, estimator)


def test_estimator_type_follows_loss_then_the_fitted_kind():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    assert not is_classifier(Adam()) and not is_regressor(Adam())
    assert is_regressor(Adam(loss="least_squares")) and is_classifier(Adam(loss="softmax"))
    clf = Adam(epochs=5, backend="numpy").fit(X, (X[:, 0] > 0).astype(int))
    reg = Adam(epochs=5, backend="numpy").fit(X, X[:, 0] + 0.1)
    assert is_classifier(clf) and hasattr(clf, "predict_proba") and hasattr(clf, "classes_")
    assert is_regressor(reg) and not hasattr(reg, "predict_proba")
    assert not hasattr(reg, "decision_function") and not hasattr(reg, "classes_")
    assert not is_classifier(clone(clf))             # a clone is unfitted again


def test_model_selection_clones_sets_params_and_scores():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=120)
    scores = cross_val_score(Adam(epochs=200, learning_rate=0.1, backend="numpy"), X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.95)          # R^2 per fold
    labels = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    search = GridSearchCV(Momentum(epochs=100, backend="numpy"),
                          {"learning_rate": [0.01, 0.1], "momentum": [0.5, 0.9]}, cv=3)
    search.fit(X, labels)
    assert search.best_estimator_.loss_ == "softmax"
    assert set(search.best_params_) == {"learning_rate", "momentum"}
    best = search.best_estimator_
    assert best.momentum == search.best_params_["momentum"]
    # refit on all rows: its score is the accuracy, computed here independently
    assert best.score(X, labels) == pytest.approx(np.mean(best.predict(X) == labels))
