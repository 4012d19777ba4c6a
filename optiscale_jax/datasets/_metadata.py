"""The metadata every loader returns: sizes, spectral figures, task, dtype, source."""

from __future__ import annotations

from typing import Any

import numpy as np

from optiscale_jax.datasets._spectral import metadata_from_singular_values, singular_values


def build_metadata(X_train: np.ndarray, *, n_test: int, task: str, dtype: Any, source: str,
                   sigma: np.ndarray | None = None) -> dict[str, Any]:
    """Metadata of a training matrix.

    Keys: ``n_train``, ``n_test``, ``n_features``, the spectral keys of
    :func:`~optiscale_jax.datasets.spectral_metadata` (``condition_number`` of
    X^T X / n, inf when singular; ``condition_number_nonzero``, ``rank``, ``L``,
    ``mu``, ...), ``task``, ``dtype`` and ``source``. ``sigma`` (the singular
    values of ``X_train``, when already known from a construction) skips the SVD.
    """
    n, d = X_train.shape
    if n == 0:
        raise ValueError("the training set is empty; use more rows or a smaller test_size")
    s = singular_values(X_train) if sigma is None else np.asarray(sigma, dtype=np.float64)
    meta: dict[str, Any] = {"n_train": int(n), "n_test": int(n_test), "n_features": int(d)}
    meta.update(metadata_from_singular_values(s, n, d))
    meta.update({"task": task, "dtype": str(np.dtype(dtype)), "source": source})
    return meta
