"""The metadata every loader returns: sizes, spectral figures, task, dtype, source.

The singular values of a loaded training matrix are cached on disk
(``<cache>/spectra/<sha256 of X>.npy``), so repeated loads of the same rows skip
the SVD; a cache entry is keyed by the exact bytes, shape and dtype of X.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

import numpy as np

from optiscale_jax.datasets._paths import resolve_cache_dir
from optiscale_jax.datasets._spectral import metadata_from_singular_values, singular_values


def spectrum_key(X: np.ndarray) -> str:
    """The spectra cache's key of X: SHA-256 of its shape, dtype and bytes (hex)."""
    X = np.ascontiguousarray(X)
    digest = hashlib.sha256(f"{X.shape}|{X.dtype}".encode())
    digest.update(X.data)
    return digest.hexdigest()


def spectral_metadata(X: Any, cache: bool = True) -> dict[str, Any]:
    """Spectral metadata of a data matrix X (n, d) from its singular values (float64 SVD),
    read from / written to the spectra cache unless ``cache=False`` (one SVD per matrix
    per cache). Definitions: ``optiscale_jax.datasets._spectral``'s docstring."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    s = cached_singular_values(X) if cache and X.size else singular_values(X)
    return metadata_from_singular_values(s, X.shape[0], X.shape[1])


def cached_singular_values(X: np.ndarray, key: str | None = None,
                           cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Singular values of X (float64 SVD), read from or written to the spectra cache.

    ``key``: the cache key of X when the caller already has one (e.g. a Problem's
    fingerprint, hashed once); default: SHA-256 of X's shape, dtype and bytes.
    ``cache_dir``: cache root (default ``$OPTISCALE_CACHE_DIR`` or the user cache).
    """
    if key is None:
        key = spectrum_key(X)
    path = resolve_cache_dir(cache_dir, "spectra") / f"{key}.npy"
    if path.is_file():
        try:
            s = np.load(path, allow_pickle=False)
            if s.shape == (min(X.shape),):
                return s
        except (OSError, ValueError):
            pass  # unreadable entry: recompute and overwrite
    s = singular_values(X)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp.npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, s)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return s


def build_metadata(X_train: np.ndarray, *, n_test: int, task: str, dtype: Any, source: str,
                   sigma: np.ndarray | None = None, cache: bool = True) -> dict[str, Any]:
    """Metadata of a training matrix.

    Keys: ``n_train``, ``n_test``, ``n_features``, the spectral keys of
    :func:`~optiscale_jax.datasets.spectral_metadata` (``condition_number`` of
    X^T X / n, inf when singular; ``condition_number_nonzero``, ``rank``, ``L``,
    ``mu``, ...), ``task``, ``dtype`` and ``source``. ``sigma`` (the singular
    values of ``X_train``, when already known from a construction) skips the SVD;
    ``cache`` reads / writes measured singular values in the spectra cache.
    """
    n, d = X_train.shape
    if n == 0:
        raise ValueError("the training set is empty; use more rows or a smaller test_size")
    if sigma is not None:
        s = np.asarray(sigma, dtype=np.float64)
    else:
        s = cached_singular_values(X_train) if cache else singular_values(X_train)
    meta: dict[str, Any] = {"n_train": int(n), "n_test": int(n_test), "n_features": int(d)}
    meta.update(metadata_from_singular_values(s, n, d))
    meta.update({"task": task, "dtype": str(np.dtype(dtype)), "source": source})
    return meta
