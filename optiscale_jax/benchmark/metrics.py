"""Pure functions for the test-set numbers and curve storage of a benchmark record.

The training numbers (suboptimality ``f(w) - f*``, relative suboptimality
``(f(w) - f*) / max(|f*|, 1e-30)``, epochs to 1e-2/1e-4/1e-6, status) come
from the training engine's ``RunResult`` (``optiscale_jax.training``), one
definition for the whole project. Test metrics: accuracy and error rate
(``1 - accuracy``) for classification, mean squared error for regression.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "classification_accuracy",
    "downsample_indices",
    "mean_squared_error",
]


def classification_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of correct labels. ``predicted``: P(y=1) of shape (n,) for binary
    problems (threshold 0.5) or class probabilities of shape (n, k)."""
    predicted = np.asarray(predicted)
    labels = np.asarray(labels)
    if predicted.ndim == 2:
        classes = np.argmax(predicted, axis=1)
    else:
        classes = (predicted >= 0.5).astype(labels.dtype)
    if classes.shape != labels.shape:
        raise ValueError(f"predictions of shape {classes.shape} do not match labels "
                         f"of shape {labels.shape}")
    return float(np.mean(classes == labels))


def mean_squared_error(predicted: np.ndarray, targets: np.ndarray) -> float:
    """``mean((predicted - targets)^2)`` in float64."""
    predicted = np.asarray(predicted, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if predicted.shape != targets.shape:
        raise ValueError(f"predictions of shape {predicted.shape} do not match targets "
                         f"of shape {targets.shape}")
    return float(np.mean((predicted - targets) ** 2))


def downsample_indices(n_points: int, max_points: int = 400) -> np.ndarray:
    """At most ``max_points`` indices into a curve of ``n_points``: log-spaced,
    always with the first and the last, so log-scale plots keep their shape."""
    if n_points <= 0:
        return np.zeros(0, dtype=np.int64)
    if n_points <= max_points:
        return np.arange(n_points)
    idx = np.unique(np.round(np.geomspace(1, n_points, max_points)).astype(np.int64) - 1)
    return np.unique(np.concatenate([[0], idx, [n_points - 1]]))
