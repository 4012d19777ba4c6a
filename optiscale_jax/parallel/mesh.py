"""Device meshes for the parallel strategies, with the input checks they need.

Every strategy runs on a 2-d mesh so that one code path serves single
strategies and their combinations: ``(data, model)`` for data / fsdp / model
(tensor) parallelism and ``(data, stage)`` for pipeline parallelism. The fsdp
strategies split rows *and* parameters (with their optimizer state) over ``data``. An axis a strategy
does not use has size 1 (``data_parallel`` on 8 devices is the mesh ``(8, 1)``).
Axes are *Auto* (as with ``jax.sharding.Mesh``), so inputs need not carry the
sharding that ``shard_map``'s ``in_specs`` name; XLA reshards them under jit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

DATA = "data"
MODEL = "model"
STAGE = "stage"

SINGLE_AXIS_STRATEGIES = ("data_parallel", "fsdp", "model_parallel", "pipeline_parallel")
STRATEGIES = SINGLE_AXIS_STRATEGIES + ("data_model_parallel", "data_pipeline_parallel",
                                       "fsdp_model_parallel")
# The second axis of each 2-d strategy, for the error that points at the combination.
_COMBINATION = {"data_parallel": "data_model_parallel", "model_parallel": "data_model_parallel",
                "pipeline_parallel": "data_pipeline_parallel", "fsdp": "fsdp_model_parallel"}


class MeshLayout(NamedTuple):
    """A strategy's mesh: ``mesh.shape`` is ``{DATA: n_data, second: n_second}``."""

    strategy: str
    mesh: Mesh
    second_axis: str  # MODEL or STAGE

    @property
    def n_data(self) -> int:
        return int(self.mesh.shape[DATA])

    @property
    def n_second(self) -> int:
        return int(self.mesh.shape[self.second_axis])

    @property
    def n_devices(self) -> int:
        return self.n_data * self.n_second

    @property
    def fsdp(self) -> bool:
        """True when parameters and optimizer state are split over ``data`` (ZeRO-3)."""
        return self.strategy.startswith("fsdp")


def check_strategy(strategy: str) -> str:
    """Return ``strategy`` or raise ``ValueError`` naming the choices."""
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    return strategy


def select_devices(n_devices: int | None = None,
                   devices: Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """The first ``n_devices`` of ``devices`` (default: all of ``jax.devices()``).

    Raises ``ValueError`` when more devices are asked for than exist.
    """
    available = list(jax.devices() if devices is None else devices)
    if n_devices is None:
        return available
    if isinstance(n_devices, bool) or not isinstance(n_devices, (int, np.integer)) or n_devices < 1:
        raise ValueError(f"n_devices must be a positive int or None (all devices); got {n_devices!r}")
    if n_devices > len(available):
        platform = available[0].platform if available else "none"
        hint = (" On CPU, set XLA_FLAGS=--xla_force_host_platform_device_count="
                f"{n_devices} before JAX starts to get virtual devices."
                if platform == "cpu" else "")
        raise ValueError(
            f"n_devices={n_devices} but only {len(available)} {platform} device(s) are "
            f"visible; use n_devices<={len(available)} or n_devices=None.{hint}")
    return available[:int(n_devices)]


def default_mesh_shape(strategy: str, n_devices: int) -> tuple[int, int]:
    """The ``(n_data, n_second)`` split a strategy uses when none is given.

    Combinations put the largest divisor of ``n_devices`` not above its square
    root on the model / stage axis and the rest on the data axis (8 -> (4, 2)).
    """
    check_strategy(strategy)
    if strategy in ("data_parallel", "fsdp"):
        return (n_devices, 1)
    if strategy in ("model_parallel", "pipeline_parallel"):
        return (1, n_devices)
    second = max(k for k in range(1, math.isqrt(n_devices) + 1) if n_devices % k == 0)
    return (n_devices // second, second)


def make_layout(strategy: str, n_devices: int | None = None,
                mesh_shape: tuple[int, int] | None = None,
                devices: Sequence[jax.Device] | None = None) -> MeshLayout:
    """Build the 2-d mesh for ``strategy`` over ``n_devices`` devices.

    Args:
      strategy: one of ``STRATEGIES``.
      n_devices: how many devices to use (``None``: all visible ones, or the
        product of ``mesh_shape`` when that is given).
      mesh_shape: ``(n_data, n_model_or_stage)``; only the combinations
        accept a shape with both entries above 1.
      devices: the devices to draw from (default ``jax.devices()``, which in a
        multi-process run is every process's devices).
    """
    check_strategy(strategy)
    if mesh_shape is not None:
        if (len(tuple(mesh_shape)) != 2
                or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in mesh_shape)):
            raise ValueError(f"mesh_shape must be two positive ints (n_data, n_second); got {mesh_shape!r}")
        mesh_shape = (int(mesh_shape[0]), int(mesh_shape[1]))
        if n_devices is None:
            n_devices = mesh_shape[0] * mesh_shape[1]
    chosen = select_devices(n_devices, devices)
    n = len(chosen)
    if mesh_shape is None:
        mesh_shape = default_mesh_shape(strategy, n)
    if mesh_shape[0] * mesh_shape[1] != n:
        raise ValueError(f"mesh_shape={mesh_shape} has {mesh_shape[0] * mesh_shape[1]} "
                         f"devices but n_devices={n}; make their product equal n_devices")
    single = default_mesh_shape(strategy, n)
    if strategy in SINGLE_AXIS_STRATEGIES and mesh_shape != single:
        combo = _COMBINATION[strategy]
        raise ValueError(f"strategy {strategy!r} uses the mesh {single}, not {mesh_shape}; "
                         f"for a 2-d split use strategy={combo!r}")
    processes = {d.process_index for d in chosen}
    if jax.process_count() > 1 and len(processes) != jax.process_count():
        raise ValueError(
            f"n_devices={n} takes devices of processes {sorted(processes)} only, but all "
            f"{jax.process_count()} processes run this program; use n_devices=None (every "
            "process's devices) or a device count that spans every process")
    second = STAGE if "pipeline" in strategy else MODEL
    mesh = jax.make_mesh(mesh_shape, (DATA, second), axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=chosen)
    return MeshLayout(strategy=strategy, mesh=mesh, second_axis=second)
