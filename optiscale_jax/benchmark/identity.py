"""Run identity: a stable hash of everything that defines one benchmark run.

Two runs with the same identity do the same work and give the same numbers
(up to timing), so a campaign can skip a run whose identity is already stored
(``--resume``). The identity covers the data (a fingerprint of the arrays'
bytes, shapes and dtypes, not only a name), the problem kind and its L2
weight, the optimizer and its hyperparameters, the backend, the dtype, the
seed, the number of epochs and the batch size.

Seeds for the work inside a run are derived by hashing, benchopt style, so
that they never depend on the order in which runs happen to execute.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from optiscale_jax.training import to_json_value  # the one JSON encoder (re-exported)

__all__ = [
    "RunSpec",
    "canonical_json",
    "data_fingerprint",
    "derive_seed",
    "run_identity",
    "to_json_value",
]


def canonical_json(value: Any) -> str:
    """The one JSON spelling of ``value`` that identities are hashed from."""
    return json.dumps(to_json_value(value), sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def _float_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameter numbers as floats, so ``learning_rate=1`` equals ``1.0``."""
    out: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            out[key] = float(value)
        elif isinstance(value, (list, tuple, np.ndarray)):
            out[key] = [float(v) for v in np.asarray(value, dtype=np.float64).ravel()]
        else:
            out[key] = value
    return out


def data_fingerprint(*arrays: Any) -> str:
    """A BLAKE2b hash (32 hex digits) of the arrays' dtypes, shapes and bytes.

    Memory layout does not matter (arrays are hashed as C-contiguous
    copies); the same values in another dtype or shape give another
    fingerprint.
    """
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        arr = np.ascontiguousarray(np.asarray(array))
        digest.update(f"{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()


class RunSpec(NamedTuple):
    """Everything that defines one run; its :func:`run_identity` is the key."""

    data: str                          # data fingerprint (see data_fingerprint)
    problem: str                       # "least_squares", "ridge", "logistic", "softmax"
    l2: float                          # L2 weight of the objective
    optimizer: str                     # optimizer name, e.g. "adam"
    hyperparameters: Mapping[str, Any]  # e.g. {"learning_rate": 1e-3}
    backend: str                       # "jax", "numpy", "cupy"
    dtype: str                         # "float32" or "float64"
    seed: int                          # the user's seed for the campaign
    epochs: int                        # maximum number of epochs
    batch_size: int | None             # None: full batch


def run_identity(spec: RunSpec) -> str:
    """The run's identity: SHA-256 (hex, 64 digits) of its canonical JSON."""
    if not isinstance(spec, RunSpec):
        raise TypeError(f"run_identity expects a RunSpec, got {type(spec).__name__}")
    fields = spec._asdict()
    fields["l2"] = float(spec.l2)
    fields["hyperparameters"] = _float_hyperparameters(spec.hyperparameters)
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def derive_seed(*parts: Any) -> int:
    """A seed in ``[0, 2**31 - 1]`` derived from ``parts`` by hashing.

    The benchmark seeds a run's mini-batch order with
    ``derive_seed(seed, data_fingerprint, optimizer)``: independent of the
    learning rate (so a learning-rate comparison sees the same batches, common
    random numbers) and of the order in which runs execute.
    """
    digest = hashlib.blake2b(canonical_json(list(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
