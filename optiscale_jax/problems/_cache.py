"""On-disk cache of certified optima, keyed by the data's fingerprint and the problem settings.

Data fingerprint: with a generation ``recipe`` (the generators' metadata names every
argument and the seed), the recipe plus a cheap check (shape, dtype, 4,096 strided
entries of X and y); without one (user data), SHA-256 of every byte of X and y, which
a Problem computes once. One ``.npz`` file per optimum, written to a temporary file
and renamed into place, so an interrupted write never leaves a partial entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from typing import NamedTuple

import numpy as np

from optiscale_jax.datasets import resolve_cache_dir

# Bump when the solver or the objective conventions change: old entries are then ignored.
CACHE_FORMAT_VERSION = 2
_SAMPLE = 4096


class Entry(NamedTuple):
    """A stored optimum and its certificate (see ``solvers.SolverResult``)."""

    w_star: np.ndarray
    f_star: float
    method: str
    grad_norm: float
    mu: float
    gap_bound: float


def _sample(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    return np.ascontiguousarray(flat[:: max(1, flat.size // _SAMPLE)])


def data_fingerprint(X: np.ndarray, y: np.ndarray, recipe: str | None) -> str:
    """Hex SHA-256 of (recipe, shapes, dtypes, strided samples) or of every byte of X and y."""
    h = hashlib.sha256(json.dumps({"X": [list(X.shape), str(X.dtype)],
                                   "y": [list(y.shape), str(y.dtype)],
                                   "recipe": recipe}, sort_keys=True).encode())
    if recipe is not None:
        h.update(_sample(X).data)
        h.update(_sample(y).data)
    else:
        h.update(np.ascontiguousarray(X).data)
        h.update(np.ascontiguousarray(y).data)
    return h.hexdigest()


def problem_key(kind: str, fingerprint: str, shape: tuple[int, ...], l2: float,
                n_classes: int | None) -> str:
    """Hex SHA-256 of the problem settings and the data fingerprint."""
    settings = {"version": CACHE_FORMAT_VERSION, "kind": kind, "l2": repr(float(l2)),
                "n_classes": n_classes, "X_shape": list(shape), "data": fingerprint}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def optimum_path(key: str, cache_dir: str | os.PathLike | None) -> pathlib.Path:
    """Path of the cache entry for ``key`` under ``cache_dir`` (or the default cache)."""
    return resolve_cache_dir(cache_dir, "optima") / f"{key}.npz"


def load(path: pathlib.Path) -> Entry | None:
    """The stored entry, or None when absent or unreadable (a bad entry is recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return Entry(np.array(data["w_star"]), float(data["f_star"]), str(data["method"]),
                         float(data["grad_norm"]), float(data["mu"]), float(data["gap_bound"]))
    except (OSError, ValueError, KeyError):
        return None


def store(path: pathlib.Path, entry: Entry) -> None:
    """Write an entry atomically (temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, w_star=entry.w_star, f_star=np.float64(entry.f_star),
                     method=np.str_(entry.method), grad_norm=np.float64(entry.grad_norm),
                     mu=np.float64(entry.mu), gap_bound=np.float64(entry.gap_bound))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
