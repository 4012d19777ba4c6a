"""Seeded, stratified subsampling and train/test splits (scikit-learn's splitter)."""

from __future__ import annotations

import numpy as np
import sklearn.model_selection


def stratified_subsample(labels: np.ndarray, n_keep: int, seed: int, name: str) -> np.ndarray:
    """Sorted indices of ``n_keep`` rows drawn with the class proportions of ``labels``."""
    n_classes = np.unique(labels).size
    if n_keep < n_classes:
        raise ValueError(f"{name}={n_keep} is too small to keep all {n_classes} classes in a "
                         f"stratified subsample; use {name} >= {n_classes}")
    keep, _ = sklearn.model_selection.train_test_split(
        np.arange(labels.shape[0]), train_size=n_keep, stratify=labels, random_state=seed)
    return np.sort(keep)


def train_test_split(labels: np.ndarray | None, test_size: float, seed: int,
                     n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): a seeded shuffle split, stratified by ``labels`` if given.

    ``test_size = 0`` keeps every row, in order, in the training set.
    """
    n = labels.shape[0] if labels is not None else int(n_rows)
    if test_size == 0.0:
        return np.arange(n), np.arange(0)
    n_test = int(np.ceil(test_size * n))
    if n_test >= n:
        raise ValueError(f"test_size={test_size} leaves no training rows out of {n}; "
                         "use a smaller test_size or more rows")
    if labels is not None:
        n_classes = np.unique(labels).size
        if min(n_test, n - n_test) < n_classes:
            raise ValueError(
                f"test_size={test_size} of {n} rows gives {n_test} test / {n - n_test} train "
                f"rows, too few to hold each of the {n_classes} classes; use more rows or a "
                "test_size nearer 0.5 (or test_size=0)")
    train, test = sklearn.model_selection.train_test_split(
        np.arange(n), test_size=n_test, stratify=labels, random_state=seed)
    return train, test
