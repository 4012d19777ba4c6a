"""On-disk cache of exact optima, keyed by a SHA-256 of the data and problem settings.

One ``.npz`` file per optimum, written to a temporary file and renamed into
place, so an interrupted write never leaves a partial entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from typing import Any

import numpy as np

from optiscale_jax.datasets import resolve_cache_dir

# Bump when the solver or the objective conventions change: old entries are then ignored.
CACHE_FORMAT_VERSION = 1


def problem_key(kind: str, X: np.ndarray, y: np.ndarray, l2: float,
                n_classes: int | None) -> str:
    """Hex SHA-256 of the problem settings and the float64 bytes of X and y."""
    h = hashlib.sha256()
    settings = {"version": CACHE_FORMAT_VERSION, "kind": kind, "l2": repr(float(l2)),
                "n_classes": n_classes, "X_shape": list(X.shape), "y_shape": list(y.shape),
                "y_dtype": str(y.dtype)}
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).data)
    h.update(np.ascontiguousarray(y).data)
    return h.hexdigest()


def optimum_path(key: str, cache_dir: str | os.PathLike | None) -> pathlib.Path:
    """Path of the cache entry for ``key`` under ``cache_dir`` (or the default cache)."""
    return resolve_cache_dir(cache_dir, "optima") / f"{key}.npz"


def load(path: pathlib.Path) -> dict[str, Any] | None:
    """The stored entry, or None when absent or unreadable (a bad entry is recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {"w_star": np.array(data["w_star"]), "f_star": float(data["f_star"]),
                    "method": str(data["method"]), "grad_norm": float(data["grad_norm"])}
    except (OSError, ValueError, KeyError):
        return None


def store(path: pathlib.Path, w_star: np.ndarray, f_star: float, method: str,
          grad_norm: float) -> None:
    """Write an entry atomically (temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, w_star=w_star, f_star=np.float64(f_star), method=np.str_(method),
                     grad_norm=np.float64(grad_norm))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
