"""Mini-batch order: one seeded permutation per epoch, shared by every backend.

Epoch `e` (0-based) of a run with seed `s` visits the samples in the order of a
seeded bijection computed by integer arithmetic (no sort, no random-number
generator state): with `k` the bits of the smallest power of two >= n, each index
i < 2^k is split into a high half L (k // 2 bits) and a low half R, and four
unbalanced Feistel rounds alternate `R ^= F(L ^ key_r) mod 2^|R|` and
`L ^= F(R ^ key_r) mod 2^|L|` (each round is a bijection of [0, 2^k)); F is a
32-bit multiply-xorshift mixer and the round keys mix (s, e, r). Position i of the
epoch's order holds the image of i, walked along the bijection until it falls below
n (cycle walking: a bijection of [0, n) because the bijection's cycles through
[0, n) skip the values >= n). Fewer than half the values of [0, 2^k) lie above n,
so a walk is short (at n = 1e6, 4.6% of the positions take a second step). No sort
and no random-number generator state: a few integer operations per sample, the
same integers in NumPy (`epoch_permutation`) and inside a compiled program
(`permutation_in_program`), for traced seeds too.

The order is split into `n // batch_size` full batches of `batch_size`, then,
when `n % batch_size != 0`, one final smaller batch of the remaining samples.
Every sample is used exactly once per epoch; no padding, no masking.
"""

from __future__ import annotations

from typing import Any, NamedTuple

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


_MIX_1 = 0x85EBCA6B
_MIX_2 = 0xC2B2AE35
_GOLDEN = 0x9E3779B1
ROUNDS = 4


def _mix(h: Any, xp: Any) -> Any:
    """32-bit finaliser (xorshift-multiply, MurmurHash3's): a bijection of uint32."""
    h = h ^ (h >> xp.uint32(16))
    h = h * xp.uint32(_MIX_1)
    h = h ^ (h >> xp.uint32(13))
    h = h * xp.uint32(_MIX_2)
    return h ^ (h >> xp.uint32(16))


def round_keys(seed: Any, epoch: Any, xp: Any) -> list[Any]:
    """The ROUNDS uint32 keys of epoch `epoch` of seed `seed` (scalars of namespace xp)."""
    base = _mix(xp.asarray(seed, dtype=xp.uint32) * xp.uint32(_GOLDEN) + xp.uint32(1), xp)
    epoch_hash = _mix(xp.asarray(epoch, dtype=xp.uint32) + xp.uint32(_GOLDEN), xp)
    return [_mix(base ^ (epoch_hash * xp.uint32(2 * r + 1)) ^ xp.uint32(r), xp)
            for r in range(ROUNDS)]


def feistel(indices: Any, keys: list[Any], n_bits: int, xp: Any) -> Any:
    """The seeded bijection of [0, 2^n_bits) applied to uint32 `indices` (see module doc)."""
    low_bits = n_bits - n_bits // 2
    low_mask = xp.uint32((1 << low_bits) - 1)
    high_mask = xp.uint32((1 << (n_bits // 2)) - 1)
    high = indices >> xp.uint32(low_bits)
    low = indices & low_mask
    for r, key in enumerate(keys):
        if r % 2 == 0:
            low = low ^ (_mix(high ^ key, xp) & low_mask)
        else:
            high = high ^ (_mix(low ^ key, xp) & high_mask)
    return (high << xp.uint32(low_bits)) | low


def domain_bits(n_samples: int) -> int:
    """k with 2^(k-1) < n <= 2^k (0 for n = 1)."""
    return max(0, int(n_samples - 1).bit_length())


def permutation_in_program(key: jax.Array, epoch: jax.Array, n_samples: int) -> jax.Array:
    """Sample order of `epoch` (traceable; `key` from `seed_key`): int32, shape (n,)."""
    bits = domain_bits(n_samples)
    keys = round_keys(key, epoch, jnp)
    limit = jnp.uint32(n_samples)

    def walk(images: jax.Array) -> jax.Array:
        return jnp.where(images >= limit, feistel(images, keys, bits, jnp), images)

    images = feistel(jnp.arange(n_samples, dtype=jnp.uint32), keys, bits, jnp)
    images = jax.lax.while_loop(lambda v: jnp.any(v >= limit), walk, images)
    return images.astype(jnp.int32)


def seed_key(seed: jax.Array | int) -> jax.Array:
    """The run's shuffle key from an integer seed: the seed as uint32 (traceable, vmappable)."""
    return jnp.asarray(seed, jnp.uint32)


def epoch_permutation(seed: int, epoch: int, n_samples: int) -> np.ndarray:
    """Sample order of `epoch` as host integers (int64), computed in NumPy: the same
    integers as `permutation_in_program` in the engine."""
    bits = domain_bits(n_samples)
    with np.errstate(over="ignore"):
        keys = round_keys(np.uint32(seed), np.uint32(epoch), np)
        images = feistel(np.arange(n_samples, dtype=np.uint32), keys, bits, np)
        outside = np.flatnonzero(images >= n_samples)
        while outside.size:
            images[outside] = feistel(images[outside], keys, bits, np)
            outside = outside[images[outside] >= n_samples]
    return images.astype(np.int64)


def batches(order: np.ndarray, plan: BatchPlan) -> list[np.ndarray]:
    """The index arrays of one epoch's batches, in order (full ones, then the remainder)."""
    cut = plan.n_full * plan.batch_size
    out = [order[i:i + plan.batch_size] for i in range(0, cut, plan.batch_size)]
    if plan.remainder:
        out.append(order[cut:])
    return out
