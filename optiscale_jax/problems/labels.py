"""The one rule that turns targets ``y`` into a problem kind: classes or regression.

Used by the estimators, the benchmark suite and ``ParallelTrainer``, so one set of
labels always gives one kind of model. :func:`infer_problem_kind` reads ``y`` with
scikit-learn's ``type_of_target`` and decides:

=====================================================  ==================================
``y`` (``loss=None`` or ``"auto"``)                    kind
=====================================================  ==================================
continuous floats (some value not a whole number)      ``least_squares``
integer, bool or string labels, 2 classes              ``logistic`` (``classes[1]`` -> 1)
integer, bool or string labels, more than 2 classes    ``softmax`` (encoded 0..k-1)
floats with 2 values {0, 1} or {-1, +1}                ``logistic``
other whole-number floats (e.g. 0., 1., 2.)            refused: say ``loss=`` or ``task=``
=====================================================  ==================================

Whole-number floats are ambiguous (class ids stored as floats, or regression
targets that happen to be integral), so they are never turned into classes, nor
fitted by least squares, silently: a loader's ``task`` ("regression",
"binary_classification", "multiclass_classification") or an explicit ``loss``
settles it. The binary float encodings {0, 1} and {-1, +1} are taken as classes
(MNIST's binary loader gives float 0/1 labels).

``loss`` overrides the rule: ``"least_squares"`` / ``"ridge"`` fit any real targets;
``"logistic"`` needs exactly two classes, ``"softmax"`` at least two (any labels,
encoded in sorted order, kept in ``classes``). Complex or non-finite targets, and a
single class, are refused.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import type_of_target

REGRESSION_LOSSES: tuple[str, ...] = ("least_squares", "ridge")
CLASSIFICATION_LOSSES: tuple[str, ...] = ("logistic", "softmax")
LOSSES: tuple[str, ...] = ("auto", *REGRESSION_LOSSES, *CLASSIFICATION_LOSSES)
TASKS: tuple[str, ...] = ("regression", "classification", "binary_classification",
                          "multiclass_classification")
BINARY_FLOAT_ENCODINGS: tuple[frozenset[float], ...] = (frozenset({0.0, 1.0}), frozenset({-1.0, 1.0}))


class LabelRule(NamedTuple):
    """What ``y`` means, and ``y`` encoded for that problem kind.

    Attributes:
      kind: ``"least_squares"``, ``"ridge"`` (only when asked for with ``loss``),
        ``"logistic"`` or ``"softmax"``.
      classes: the distinct labels in sorted order (``classes[i]`` is encoded as ``i``);
        None for regression.
      encoded_y: float64 targets (regression), float64 0/1 (logistic) or int64
        0..k-1 (softmax); shape (n,).
      target_type: scikit-learn's ``type_of_target(y)`` ("continuous", "binary", ...).
    """

    kind: str
    classes: np.ndarray | None
    encoded_y: np.ndarray
    target_type: str

    @property
    def is_classification(self) -> bool:
        """True for logistic and softmax."""
        return self.kind in CLASSIFICATION_LOSSES

    @property
    def n_classes(self) -> int | None:
        """k, the number of classes; None for regression."""
        return None if self.classes is None else int(self.classes.size)

    def decode(self, indices: Any) -> np.ndarray:
        """Class labels for encoded class indices (0..k-1): ``classes[indices]``."""
        if self.classes is None:
            raise ValueError(f"a {self.kind} problem has no classes to decode")
        return self.classes[np.asarray(indices, dtype=np.int64)]


def infer_problem_kind(y: Any, loss: str | None = None, *, task: str | None = None,
                       name: str = "y", loss_name: str = "loss") -> LabelRule:
    """The problem kind for targets ``y`` and ``y`` encoded for it (see the module docstring).

    Args:
      y: targets, shape (n,) or (n, 1) (a column gives a DataConversionWarning, as in
        scikit-learn); numbers, bools or strings.
      loss: None / "auto" (infer), or "least_squares", "ridge", "logistic", "softmax".
      task: what a loader says the data set is (its metadata's "task"): "regression",
        "classification", "binary_classification" or "multiclass_classification";
        None when unknown.
      name: the targets' name in error messages.
      loss_name: the name under which the caller takes ``loss`` (e.g. "model" for
        ``ParallelTrainer``), used in error messages.

    Raises:
      ValueError: naming the bad value and the fix (unknown loss or task, complex,
        non-finite or empty targets, one class, continuous targets for a classifier,
        ambiguous whole-number floats, two classes asked for with more present).
    """
    loss = _check_loss(loss, loss_name)
    task = _check_task(task)
    values = _as_targets(y, name)
    target_type = _target_type(values, name)
    if loss in REGRESSION_LOSSES:
        return LabelRule(loss, None, _as_float(values, name, loss, loss_name), target_type)
    if loss == "auto":
        loss = _auto_kind(values, target_type, task, name, loss_name)
        if loss == "least_squares":
            return LabelRule(loss, None, _as_float(values, name, loss, loss_name), target_type)
    return _encode_classes(values, target_type, loss, name, loss_name)


def _check_loss(loss: Any, arg: str) -> str:
    if loss is None:
        return "auto"
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"{arg}={loss!r} is unknown; choose one of: {', '.join(LOSSES)} "
                         "(or None for auto)")
    return loss


def _check_task(task: Any) -> str | None:
    if task is None or task == "":
        return None
    if not isinstance(task, str) or task.lower() not in TASKS:
        raise ValueError(f"task={task!r} is unknown; choose one of: {', '.join(TASKS)} "
                         "(or None when the data set does not say)")
    return "regression" if task.lower() == "regression" else "classification"


def _as_targets(y: Any, name: str) -> np.ndarray:
    """y as a non-empty 1-D array (an (n, 1) column is flattened with a warning)."""
    if y is None:
        raise ValueError(f"this estimator requires y to be passed, but the target {name} is None; "
                         f"pass the labels or targets, e.g. fit(X, {name})")
    values = np.asarray(y)
    if values.ndim == 2 and values.shape[1] == 1:
        warnings.warn(f"A column-vector {name} was passed when a 1d array was expected; it is "
                      f"flattened. Pass {name}.ravel() to silence this warning.",
                      DataConversionWarning, stacklevel=3)
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"{name} should be a 1d array (one target per sample), got an array of "
                         f"shape {values.shape}; multi-output targets are not supported")
    if values.size == 0:
        raise ValueError(f"{name} is empty; pass one target per sample")
    if np.iscomplexobj(values):
        raise ValueError(f"{name} is complex (dtype {values.dtype}); complex targets are not "
                         f"supported: pass real targets, e.g. {name}.real")
    if values.dtype.kind in "fiub":
        bad = ~np.isfinite(values.astype(np.float64))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name} contains {int(bad.sum())} non-finite value(s) (NaN/Inf), "
                             f"first at {name}[{i}] = {values[i]}; drop or impute those entries")
    return values


def _target_type(values: np.ndarray, name: str) -> str:
    try:
        return type_of_target(values, input_name=name)
    except ValueError as error:
        raise ValueError(f"{name} is not a usable target ({error}); pass numbers or class "
                         "labels, one per sample") from None


def _as_float(values: np.ndarray, name: str, loss: str, arg: str) -> np.ndarray:
    """Real targets as float64; numbers held in an object array are converted, text is not."""
    refused = ValueError(f"{arg}={loss!r} needs numeric targets, but {name} has dtype "
                         f"{values.dtype} (e.g. {values[0]!r}); use {arg}='softmax' or "
                         "'logistic' (or None) for class labels")
    if values.dtype.kind in "fiub":
        return np.array(values, dtype=np.float64)
    if values.dtype.kind != "O" or any(isinstance(v, (str, bytes)) for v in values):
        raise refused
    try:
        converted = values.astype(np.float64)
    except (TypeError, ValueError):
        raise refused from None
    return _as_targets(converted, name)       # the finite check, on the numbers


def _auto_kind(values: np.ndarray, target_type: str, task: str | None, name: str,
               arg: str) -> str:
    """least_squares, logistic or softmax for loss='auto' (see the module docstring)."""
    if target_type == "continuous":
        if task == "classification":
            raise ValueError(f"the data set is a classification task but {name} has continuous "
                             f"values (e.g. {_first_fractional(values)}); pass integer class labels")
        return "least_squares"
    if task == "regression":
        return "least_squares"
    distinct = np.unique(values)
    if task is None and values.dtype.kind == "f":
        if distinct.size == 2 and frozenset(distinct.tolist()) in BINARY_FLOAT_ENCODINGS:
            return "logistic"
        shown = ", ".join(f"{v:g}" for v in distinct[:5]) + (", ..." if distinct.size > 5 else "")
        raise ValueError(
            f"{name} holds floats that are all whole numbers ({distinct.size} distinct: {shown}); "
            f"say whether they are class ids or regression targets: {arg}='softmax' or "
            f"'logistic' (or integer labels, {name}.astype(int)) for classes, "
            f"{arg}='least_squares' for regression")
    return "logistic" if distinct.size == 2 else "softmax"


def _first_fractional(values: np.ndarray) -> float:
    as_float = values.astype(np.float64)
    return float(as_float[as_float != np.round(as_float)][0])


def _encode_classes(values: np.ndarray, target_type: str, loss: str, name: str,
                    arg: str) -> LabelRule:
    if target_type == "continuous":
        raise ValueError(
            f"Unknown label type: continuous. {arg}={loss!r} fits a classifier, which needs "
            f"discrete class labels, but {name} has continuous values (e.g. "
            f"{_first_fractional(values)}); use {arg}='least_squares' for regression")
    classes, encoded = np.unique(values, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"{name} holds one class only ({classes.tolist()[0]!r}); a classifier needs at "
                         "least 2 classes in the training data")
    if loss == "logistic" and classes.size != 2:
        shown = ", ".join(repr(c) for c in classes[:6].tolist())
        raise ValueError(f"Only binary classification is supported with {arg}='logistic': it "
                         f"needs labels of exactly 2 classes (e.g. {{0, 1}}); "
                         f"{name} has {classes.size}: {shown}{' ...' if classes.size > 6 else ''}. "
                         f"Use {arg}='softmax' (or None) for several classes")
    encoded_y = encoded.astype(np.float64 if loss == "logistic" else np.int64)
    return LabelRule(loss, classes, encoded_y, target_type)
