"""The one label rule (`optiscale_jax.problems.labels.infer_problem_kind`), checked against
scikit-learn's `type_of_target` and `np.unique` as the independent reference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import type_of_target

from optiscale_jax.problems.labels import LOSSES, LabelRule, infer_problem_kind

RNG = np.random.default_rng(0)
DIGITS = RNG.integers(0, 10, size=200)


@pytest.mark.parametrize("y,kind", [
    (DIGITS, "softmax"),                                     # MNIST's 10 digits, int64
    (DIGITS.astype(np.int32) % 3, "softmax"),
    (DIGITS % 2, "logistic"),
    (np.where(DIGITS % 2 == 0, -1, 1), "logistic"),          # {-1, +1} as ints
    ((DIGITS % 2).astype(float), "logistic"),                # MNIST binary loader: float 0/1
    (np.where(DIGITS % 2 == 0, -1.0, 1.0), "logistic"),      # {-1., +1.}
    (DIGITS % 2 == 0, "logistic"),                           # bool
    (np.array(["cat", "dog", "eel"])[DIGITS % 3], "softmax"),
    (np.array(["no", "yes"])[DIGITS % 2], "logistic"),
    (DIGITS + 0.5, "least_squares"),
    (RNG.normal(size=200), "least_squares"),
])
def test_auto_rule_follows_type_of_target_and_encodes_in_sorted_order(y, kind):
    rule = infer_problem_kind(y)
    assert isinstance(rule, LabelRule) and rule.kind == kind
    assert rule.target_type == type_of_target(y)
    if kind == "least_squares":
        assert rule.classes is None and rule.n_classes is None and not rule.is_classification
        assert rule.encoded_y.dtype == np.float64
        np.testing.assert_array_equal(rule.encoded_y, y)
        return
    np.testing.assert_array_equal(rule.classes, np.unique(y))
    assert rule.n_classes == np.unique(y).size and rule.is_classification
    assert rule.encoded_y.dtype == (np.float64 if kind == "logistic" else np.int64)
    # classes[i] is encoded as i, so decoding gives y back.
    np.testing.assert_array_equal(rule.decode(rule.encoded_y), y)
    assert set(np.unique(rule.encoded_y).tolist()) == set(range(rule.n_classes))


def test_plus_minus_one_labels_map_to_zero_one_with_plus_one_as_the_positive_class():
    rule = infer_problem_kind(np.array([1, -1, -1, 1, 1]))
    np.testing.assert_array_equal(rule.classes, [-1, 1])
    np.testing.assert_array_equal(rule.encoded_y, [1.0, 0.0, 0.0, 1.0, 1.0])


def test_whole_number_floats_are_never_silently_classes_or_regression():
    y = (DIGITS % 3).astype(np.float64)               # 0., 1., 2.: class ids or targets?
    with pytest.raises(ValueError, match=r"whole numbers \(3 distinct: 0, 1, 2\).*"
                                         r"loss='softmax'.*loss='least_squares'"):
        infer_problem_kind(y)
    with pytest.raises(ValueError, match=r"whole numbers \(2 distinct: 3, 7\)"):
        infer_problem_kind(np.where(DIGITS % 2 == 0, 3.0, 7.0))
    # A loader's task, or an explicit loss, settles it.
    assert infer_problem_kind(y, task="multiclass_classification").kind == "softmax"
    assert infer_problem_kind(y, task="regression").kind == "least_squares"
    assert infer_problem_kind(y, "softmax").kind == "softmax"
    ls = infer_problem_kind(y, "least_squares")
    assert ls.kind == "least_squares" and ls.classes is None
    np.testing.assert_array_equal(ls.encoded_y, y)
    # Integer dtype: class ids (as scikit-learn's classifiers read them); say so for counts.
    assert infer_problem_kind(DIGITS % 3).kind == "softmax"
    assert infer_problem_kind(DIGITS % 3, "least_squares").kind == "least_squares"


def test_loss_overrides_and_tasks():
    two = DIGITS % 2
    assert infer_problem_kind(two, "softmax").kind == "softmax"    # k = 2 softmax is allowed
    assert infer_problem_kind(two, "ridge").kind == "ridge"
    assert infer_problem_kind(two, "auto").kind == "logistic"
    assert infer_problem_kind(DIGITS, task="classification").kind == "softmax"
    assert infer_problem_kind(DIGITS, task="regression").kind == "least_squares"
    with pytest.raises(ValueError, match="Only binary classification is supported.*has 10: "
                                         "0, 1, 2, 3, 4, 5 ...*loss='softmax'"):
        infer_problem_kind(DIGITS, "logistic")
    with pytest.raises(ValueError, match="Unknown label type: continuous.*loss='least_squares'"):
        infer_problem_kind(DIGITS + 0.25, "softmax")
    with pytest.raises(ValueError, match="classification task but y has continuous values "
                                         rf"\(e.g. {DIGITS[0] + 0.25}\)"):
        infer_problem_kind(DIGITS + 0.25, task="binary_classification")
    with pytest.raises(ValueError, match=r"loss='least_squares' needs numeric targets.*'a'"):
        infer_problem_kind(np.array(["a", "b"]), "least_squares")
    assert set(LOSSES) == {"auto", "least_squares", "ridge", "logistic", "softmax"}


@pytest.mark.parametrize("kwargs,match", [
    (dict(y=np.ones(4)), r"whole numbers \(1 distinct: 1\)"),
    (dict(y=np.ones(4, dtype=int)), r"one class only \(1\)"),
    (dict(y=np.zeros(4, dtype=int), loss="softmax"), r"one class only \(0\)"),
    (dict(y=np.array([1 + 2j, 0j])), "complex.*y.real"),
    (dict(y=np.array([0.5, np.nan, 1.0])), r"1 non-finite value\(s\) \(NaN/Inf\), first at y\[1\]"),
    (dict(y=np.ones((3, 2))), r"1d array.*shape \(3, 2\)"),
    (dict(y=np.array([])), "y is empty"),
    (dict(y=None), "requires y to be passed, but the target y is None"),
    (dict(y=DIGITS, loss="hinge"), "loss='hinge' is unknown; choose one of: auto"),
    (dict(y=DIGITS, task="ranking"), "task='ranking' is unknown"),
    (dict(y=np.array([0.5, np.inf]), name="y_train"), r"first at y_train\[1\]"),
])
def test_bad_targets_are_refused_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        infer_problem_kind(**kwargs)


def test_a_column_vector_is_flattened_with_scikit_learns_warning():
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        rule = infer_problem_kind((DIGITS % 2)[:, None])
    assert rule.kind == "logistic" and rule.encoded_y.shape == (200,)


def test_numbers_in_an_object_array_are_regression_targets_when_asked():
    y = np.array([0.5, 1.5, 2.0], dtype=object)
    rule = infer_problem_kind(y, "least_squares")
    np.testing.assert_array_equal(rule.encoded_y, [0.5, 1.5, 2.0])
    with pytest.raises(ValueError, match="has a classes to decode|no classes to decode"):
        rule.decode([0])


def test_messages_use_the_callers_name_for_loss():
    with pytest.raises(ValueError, match="supported with model='logistic'.*Use model='softmax'"):
        infer_problem_kind(DIGITS, "logistic", loss_name="model")
    with pytest.raises(ValueError, match="model='softmax' or 'logistic'.*model='least_squares'"):
        infer_problem_kind((DIGITS % 3).astype(float), loss_name="model")
    with pytest.raises(ValueError, match="model='mlp' is unknown"):
        infer_problem_kind(DIGITS, "mlp", loss_name="model")
