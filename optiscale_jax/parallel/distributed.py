"""Multi-process (multi-host) start-up and global arrays built from local data.

JAX runs one process per host (or per GPU); each process sees its local
devices, ``jax.devices()`` lists every process's devices, and a mesh built
from them spans hosts. ``initialize_distributed`` must run in every process
before any other JAX call; then each process passes *its own rows* to
``global_rows`` (or ``ParallelTrainer.fit``), which assembles the global
``jax.Array`` with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optiscale_jax.parallel.mesh import DATA, MeshLayout


class DistributedInfo(NamedTuple):
    """Where this process stands after start-up."""

    process_id: int
    process_count: int
    local_device_count: int
    global_device_count: int


def _check_address(address: str, name: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{name}={address!r} must be 'host:port' with a port in 1..65535, "
                         "e.g. '10.0.0.1:1234'")


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, *,
                           local_device_ids: int | Sequence[int] | None = None,
                           cluster_detection_method: str | None = None,
                           coordinator_bind_address: str | None = None,
                           initialization_timeout_s: int = 300,
                           heartbeat_timeout_s: int = 100) -> DistributedInfo:
    """Start this process's part of a multi-process JAX run (``jax.distributed.initialize``).

    Either give all three of ``coordinator_address`` ('host:port' of process 0),
    ``num_processes`` and ``process_id``, or none of them and let JAX detect the
    cluster (Slurm, Open MPI, Cloud TPU, Kubernetes; ``cluster_detection_method``
    picks one). A process that loses its peers aborts after ``heartbeat_timeout_s``.

    Returns:
      DistributedInfo of this process. Calling again in an initialised process
      returns the same info without re-initialising.
    """
    if jax.distributed.is_initialized():
        return distributed_info()
    explicit = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in explicit) and any(v is None for v in explicit):
        raise ValueError(
            "give all of coordinator_address, num_processes and process_id (got "
            f"coordinator_address={coordinator_address!r}, num_processes={num_processes!r}, "
            f"process_id={process_id!r}), or none of them for cluster auto-detection")
    if coordinator_address is not None:
        _check_address(coordinator_address, "coordinator_address")
        if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
            raise ValueError(f"num_processes must be a positive int; got {num_processes!r}")
        if (isinstance(process_id, bool) or not isinstance(process_id, int)
                or not 0 <= process_id < num_processes):
            raise ValueError(f"process_id must be an int in [0, {num_processes}); got {process_id!r}")
    if coordinator_bind_address is not None:
        _check_address(coordinator_bind_address, "coordinator_bind_address")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes,
        process_id=process_id, local_device_ids=local_device_ids,
        cluster_detection_method=cluster_detection_method,
        coordinator_bind_address=coordinator_bind_address,
        initialization_timeout=int(initialization_timeout_s),
        heartbeat_timeout_seconds=int(heartbeat_timeout_s))
    return distributed_info()


def shutdown_distributed() -> None:
    """Leave the multi-process run (``jax.distributed.shutdown``); a no-op if not started."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def distributed_info() -> DistributedInfo:
    """This process's id and the process / device counts."""
    return DistributedInfo(jax.process_index(), jax.process_count(),
                           jax.local_device_count(), jax.device_count())


def local_data_shards(layout: MeshLayout) -> int:
    """How many data-axis shards have a device in this process."""
    me = jax.process_index()
    return sum(any(d.process_index == me for d in row) for row in layout.mesh.devices)


def global_rows(local: Any, layout: MeshLayout) -> jax.Array:
    """A global array, rows sharded over ``data``, from this process's rows.

    In a single process ``local`` is the whole array. In a multi-process run it
    is this process's block of rows (processes in ``process_id`` order), the same
    number of rows in every process and divisible by its data shards.
    """
    local = np.asarray(local)
    sharding = NamedSharding(layout.mesh, P(DATA))
    local_shards = local_data_shards(layout)
    if local.shape[0] % local_shards:
        raise ValueError(
            f"this process holds {local.shape[0]} rows but {local_shards} data shard(s) of the "
            "mesh; pass a number of rows divisible by that in every process (drop or "
            "duplicate rows), or use fewer data shards")
    return jax.make_array_from_process_local_data(sharding, local)


def replicated(tree: Any, layout: MeshLayout) -> Any:
    """Every leaf of ``tree`` (the same value in every process) copied to all mesh devices."""
    sharding = NamedSharding(layout.mesh, P())

    def put(leaf: Any) -> jax.Array:
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)
