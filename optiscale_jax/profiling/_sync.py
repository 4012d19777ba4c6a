"""Wait for asynchronous device work before a clock is read.

JAX dispatches work asynchronously (on CPU too) and CuPy queues kernels on a
CUDA stream, so a timer read right after a call measures the dispatch, not the
compute. ``block`` waits for every array in a result (any pytree of NumPy,
JAX or CuPy arrays) and says how many JAX arrays were still pending when it
was called: a positive count is direct evidence that an unblocked timing
would have been wrong.
"""

from __future__ import annotations

from typing import Any

import jax


def is_cupy_array(value: Any) -> bool:
    """True for a ``cupy.ndarray`` (checked by module name, so CuPy is never imported)."""
    return type(value).__module__.split(".")[0] == "cupy" and hasattr(value, "device")


def synchronize_cupy() -> None:
    """Wait for all work queued on CuPy's current CUDA stream."""
    import cupy  # noqa: PLC0415  (only reached when a CuPy array exists)

    cupy.cuda.get_current_stream().synchronize()


def block(result: Any) -> int:
    """Block until every array in ``result`` is computed.

    Args:
      result: None, an array, or any pytree of NumPy / JAX / CuPy arrays.

    Returns:
      The number of JAX arrays in ``result`` that were not yet ready on entry.
    """
    if result is None:
        return 0
    leaves = jax.tree_util.tree_leaves(result)
    jax_leaves = [leaf for leaf in leaves if isinstance(leaf, jax.Array)]
    pending = sum(1 for leaf in jax_leaves if not leaf.is_ready())
    if jax_leaves:
        jax.block_until_ready(jax_leaves)
    if any(is_cupy_array(leaf) for leaf in leaves):
        synchronize_cupy()
    return pending
