"""Accelerator memory as JAX's allocator reports it (``jax.Device.memory_stats()``).

CPU devices return None. GPU devices report ``bytes_in_use``,
``peak_bytes_in_use`` (a process-wide high-water mark that cannot be reset)
and ``bytes_limit`` (the allocator pool). Sizes are in bytes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

SOURCE_DEVICE_STATS = "device memory_stats"


class DeviceMemory(NamedTuple):
    """One device's allocator reading, bytes.

    Attributes:
      device: ``str(device)``, e.g. ``"cuda:0"``.
      bytes_in_use: live buffers now.
      peak_bytes_in_use: high-water mark since the process started.
      bytes_limit: size of the allocator's pool (0 when not reported).
    """

    device: str
    bytes_in_use: int
    peak_bytes_in_use: int
    bytes_limit: int


def device_memory(devices: list[jax.Device] | None = None) -> list[DeviceMemory]:
    """Readings of every local device that reports memory statistics.

    Args:
      devices: devices to read; default ``jax.local_devices()``.

    Returns:
      One ``DeviceMemory`` per device with statistics; empty on CPU-only hosts.
    """
    readings = []
    for device in jax.local_devices() if devices is None else devices:
        stats = device.memory_stats()
        if not stats or "bytes_in_use" not in stats:
            continue
        readings.append(DeviceMemory(
            device=str(device),
            bytes_in_use=int(stats["bytes_in_use"]),
            peak_bytes_in_use=int(stats.get("peak_bytes_in_use", stats["bytes_in_use"])),
            bytes_limit=int(stats.get("bytes_limit", 0)),
        ))
    return readings


def first_gpu() -> tuple[jax.Device | None, str]:
    """(the first GPU JAX sees, "") or (None, why there is none)."""
    try:
        devices = jax.devices("gpu")
    except RuntimeError as error:
        return None, str(error)
    if not devices:
        return None, "jax.devices('gpu') is empty"
    return devices[0], ""
