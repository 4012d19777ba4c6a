"""Host arrays that JAX's CPU client can use in place.

``jax.device_put`` of a NumPy array on the CPU platform shares the array's memory
(no copy) when the array is C-contiguous, already of the target dtype and its data
starts on a 64-byte boundary (measured on jax 0.10.2: offsets 0, 64, 128 are shared,
16, 32, 48 are copied). NumPy's own allocator only guarantees 16 bytes, so the data
sets' generators and loaders allocate their outputs here; the engine then places them
on the CPU device without a second copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ALIGNMENT = 64
_ROW_BLOCK_BYTES = 64 * 2**20   # chunk of a casting copy: bounds its temporaries


def is_aligned(array: np.ndarray) -> bool:
    """True when ``array`` is C-contiguous and its data starts on a 64-byte boundary."""
    return bool(array.flags.c_contiguous) and array.ctypes.data % ALIGNMENT == 0


def empty_aligned(shape: Any, dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in np.atleast_1d(shape)) if not isinstance(shape, tuple) else shape
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(n_bytes + ALIGNMENT, dtype=np.uint8)
    offset = (-buffer.ctypes.data) % ALIGNMENT
    return buffer[offset:offset + n_bytes].view(dtype).reshape(shape)


def aligned_copy(array: Any, dtype: Any = None) -> np.ndarray:
    """A 64-byte aligned C-contiguous copy of ``array`` in ``dtype`` (default: its own).

    The cast runs in blocks of rows, so the only full-size allocation is the result.
    """
    source = np.asarray(array)
    out = empty_aligned(source.shape, source.dtype if dtype is None else dtype)
    if source.ndim == 0 or source.size == 0:
        out[...] = source
        return out
    row_bytes = max(1, (source.size // source.shape[0]) * max(source.itemsize, out.itemsize))
    step = max(1, _ROW_BLOCK_BYTES // row_bytes)
    for start in range(0, source.shape[0], step):
        out[start:start + step] = source[start:start + step]
    return out


def as_aligned(array: Any, dtype: Any = None) -> np.ndarray:
    """``array`` itself when it is aligned, C-contiguous and of ``dtype``; else an aligned copy."""
    source = np.asarray(array)
    target = source.dtype if dtype is None else np.dtype(dtype)
    if source.dtype == target and is_aligned(source):
        return source
    return aligned_copy(source, target)
