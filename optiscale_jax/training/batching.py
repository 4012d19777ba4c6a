"""Mini-batch order: one seeded permutation per epoch, shared by every backend.

Epoch `e` (0-based) of a run with seed `s` visits the samples in the order
`jax.random.permutation(fold_in(PRNGKey(s), e), n)`. The order is split into
`n // batch_size` full batches of `batch_size` samples, then, when
`n % batch_size != 0`, one final smaller batch of the remaining samples. Every
sample is used exactly once per epoch; no padding, no masking. The JAX engine
computes the permutation inside its compiled program; the NumPy / CuPy
reference loops call `epoch_permutation` and get the very same integers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class BatchPlan(NamedTuple):
    """How one epoch is cut: `n_full` batches of `batch_size`, then `remainder` samples."""
    n_samples: int
    batch_size: int
    n_full: int
    remainder: int

    @property
    def full_batch(self) -> bool:
        """True when every step uses all samples (no shuffling needed)."""
        return self.batch_size == self.n_samples

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (full batches plus the final smaller one)."""
        return self.n_full + (1 if self.remainder else 0)


def batch_plan(n_samples: int, batch_size: int | None) -> BatchPlan:
    """The batch layout of an epoch; `batch_size=None` means full batch.

    Raises ValueError for a batch size that is not an integer in [1, n_samples].
    """
    if batch_size is None:
        return BatchPlan(n_samples, n_samples, 1, 0)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(
            f"batch_size={batch_size!r} is invalid; pass an integer in [1, {n_samples}] "
            "or None for full batch")
    if batch_size <= 0 or batch_size > n_samples:
        raise ValueError(
            f"batch_size={batch_size} is invalid for {n_samples} samples; it must be in "
            f"[1, {n_samples}] (or None for full batch)")
    n_full, remainder = divmod(n_samples, int(batch_size))
    return BatchPlan(n_samples, int(batch_size), n_full, remainder)


def permutation_in_program(key: jax.Array, epoch: jax.Array, n_samples: int) -> jax.Array:
    """Sample order of `epoch` (traceable): permutation(fold_in(key, epoch), n)."""
    return jax.random.permutation(
        jax.random.fold_in(key, jnp.asarray(epoch, jnp.uint32)), n_samples)


def seed_key(seed: jax.Array | int) -> jax.Array:
    """The run's PRNG key from an integer seed (traceable, so seeds can be vmapped)."""
    return jax.random.PRNGKey(jnp.asarray(seed, jnp.uint32))


@jax.jit(static_argnames=("n_samples",))
def _epoch_permutation(seed: jax.Array, epoch: jax.Array, n_samples: int) -> jax.Array:
    return permutation_in_program(seed_key(seed), epoch, n_samples)


def epoch_permutation(seed: int, epoch: int, n_samples: int) -> np.ndarray:
    """Sample order of `epoch` as host integers (the same as inside the engine)."""
    return np.asarray(_epoch_permutation(np.uint32(seed), np.uint32(epoch), n_samples))


def batches(order: np.ndarray, plan: BatchPlan) -> list[np.ndarray]:
    """The index arrays of one epoch's batches, in order (full ones, then the remainder)."""
    cut = plan.n_full * plan.batch_size
    out = [order[i:i + plan.batch_size] for i in range(0, cut, plan.batch_size)]
    if plan.remainder:
        out.append(order[cut:])
    return out
