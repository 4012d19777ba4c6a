"""Pure functions for the numbers of a benchmark record: the benchmark's one import point.

Relative suboptimality ``(f - f*) / max(|f*|, 1e-30)`` is the training
engine's definition (``optiscale_jax.training.relative_suboptimality``,
re-exported here, so the benchmark has no second spelling of it); epochs to
1e-2/1e-4/1e-6 and the status come from the engine's ``RunResult``. Test
metrics: accuracy and error rate (``1 - accuracy``) for classification, mean
squared error for regression.
"""

from __future__ import annotations

import numpy as np

from optiscale_jax.training import relative_suboptimality

__all__ = [
    "classification_accuracy",
    "downsample_indices",
    "mean_squared_error",
    "relative_suboptimality",
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
