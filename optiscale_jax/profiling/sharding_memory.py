"""Bytes per device of sharded training state, measured from the arrays themselves.

For a pytree of ``jax.Array``s, device ``k`` holds ``sum(shard.data.nbytes)`` over
the shards in ``leaf.addressable_shards`` that live on ``k``: a replicated leaf
counts in full on every device, a sharded one only its piece (padding included).
This works on every backend. Where the device reports allocator statistics
(GPUs: ``jax.Device.memory_stats()``; CPU devices report none) the readings
``bytes_in_use`` / ``peak_bytes_in_use`` come along. Sizes are bytes.

    report = sharded_memory(params=state.params, opt_state=state.opt_state, grads=grads)
    report.max_per_device("params")       # the largest per-device share
    report.total("opt_state")             # all devices together
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

import jax

from optiscale_jax.profiling._device_memory import DeviceMemory, device_memory
from optiscale_jax.profiling._host_memory import HostPeak, current_rss_bytes, host_peak, reset_host_peak

# The host side of a sharded run's memory (virtual CPU devices share the host's RAM, so the
# host peak shows whether sharding saved memory): re-exported for the parallel package.
__all__ = ["DeviceMemory", "HostPeak", "ShardedMemory", "current_rss_bytes", "device_memory",
           "host_peak", "logical_bytes", "per_device_bytes", "reset_host_peak", "sharded_memory"]


def per_device_bytes(tree: Any) -> dict[str, int]:
    """``{str(device): bytes}`` held by the ``jax.Array`` leaves of ``tree`` on each of
    this process's devices (other leaves, e.g. NumPy arrays on the host, are skipped)."""
    out: dict[str, int] = defaultdict(int)
    for leaf in jax.tree.leaves(tree):
        if not isinstance(leaf, jax.Array):
            continue
        for shard in leaf.addressable_shards:
            out[str(shard.device)] += int(shard.data.nbytes)
    return dict(out)


def logical_bytes(tree: Any) -> int:
    """Bytes of one full copy of every leaf (``size x itemsize`` of the global shapes)."""
    return sum(int(leaf.size) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree)
               if hasattr(leaf, "dtype"))


class ShardedMemory(NamedTuple):
    """Per-device bytes of each named part of a training state.

    Attributes:
      parts: ``{part: {device: bytes}}``, e.g. ``{"params": {"TFRT_CPU_0": 4200, ...}}``.
      logical: ``{part: bytes of one unsharded copy}``.
      device_stats: ``memory_stats()`` readings of the devices (empty on CPU).
    """

    parts: dict[str, dict[str, int]]
    logical: dict[str, int]
    device_stats: list[DeviceMemory]

    def max_per_device(self, *names: str) -> int:
        """The largest per-device sum of the named parts (all parts if none named)."""
        names = names or tuple(self.parts)
        devices = {d for name in names for d in self.parts[name]}
        return max((sum(self.parts[name].get(d, 0) for name in names) for d in devices), default=0)

    def total(self, *names: str) -> int:
        """Bytes of the named parts over all (addressable) devices."""
        names = names or tuple(self.parts)
        return sum(sum(self.parts[name].values()) for name in names)

    def replicated_bytes(self, *names: str) -> int:
        """Bytes one device would hold with the named parts replicated (unsharded)."""
        names = names or tuple(self.parts)
        return sum(self.logical[name] for name in names)


def sharded_memory(**parts: Any) -> ShardedMemory:
    """Measure each named pytree (``params=...``, ``opt_state=...``, ``grads=...``, ``data=...``)."""
    devices = sorted({shard.device for tree in parts.values() for leaf in jax.tree.leaves(tree)
                      if isinstance(leaf, jax.Array) for shard in leaf.addressable_shards},
                     key=lambda d: d.id)
    return ShardedMemory(parts={name: per_device_bytes(tree) for name, tree in parts.items()},
                         logical={name: logical_bytes(tree) for name, tree in parts.items()},
                         device_stats=device_memory(devices) if devices else [])
