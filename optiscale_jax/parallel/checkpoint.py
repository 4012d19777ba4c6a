"""Checkpoint and resume of sharded training state with Orbax.

A checkpoint (one Orbax step directory per saved epoch, under ``directory``) holds

- ``state``: the stored parameters and the optimizer state as sharded arrays
  (each process writes its own shards; nothing is gathered to one host), and
- ``meta`` (JSON): the epoch, the data-order seed, the batch size, the model's
  fingerprint (kind and sizes), the optimizer (name and hyperparameters, and the
  structure of its state), the stored shapes, the divergence record and the loss
  history so far.

``restore_checkpoint`` first reads ``meta`` and refuses a checkpoint whose model,
optimizer, seed or batch size differ from the run asking for it, naming the
difference. It then restores every array straight into the *target* layout: a
different device count or mesh reshards on restore. Stored shapes differ only by
fsdp's zero padding (which depends on the data-axis size); such leaves are read
with the saved shape and re-padded on the devices.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optiscale_jax.parallel.sharding import pad_to

FORMAT = "optiscale_jax.parallel checkpoint v1"
# Meta entries a resumed run must match exactly, and what to tell the user for each.
MATCHED = {
    "format": "a checkpoint written by this version of optiscale_jax.parallel",
    "model": "the same model (kind and sizes)",
    "optimizer": "the same optimizer and hyperparameters",
    "opt_state_structure": "the same optimizer",
    "seed": "the same seed (the data order depends on it)",
    "batch_size": "the same batch_size",
}


class Restored(NamedTuple):
    """What ``restore_checkpoint`` hands back: parameters and optimizer state in the
    target layout, and the saved meta."""

    params: Any
    opt_state: Any
    meta: dict


def _manager(directory: str | pathlib.Path, max_to_keep: int | None = 2) -> ocp.CheckpointManager:
    path = pathlib.Path(directory).resolve()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(path, options=options)


def latest_epoch(directory: str | pathlib.Path) -> int | None:
    """The epoch of the newest finished checkpoint in ``directory`` (None: none there)."""
    if not pathlib.Path(directory).is_dir():
        return None
    with _manager(directory) as manager:
        return manager.latest_step()


def save_checkpoint(directory: str | pathlib.Path, epoch: int, params: Any, opt_state: Any,
                    meta: dict, max_to_keep: int | None = 2) -> None:
    """Write the state after ``epoch`` epochs (blocks until the files are complete)."""
    meta = {**meta, "format": FORMAT, "epoch": int(epoch)}
    with _manager(directory, max_to_keep) as manager:
        manager.save(int(epoch), args=ocp.args.Composite(
            state=ocp.args.StandardSave({"params": params, "opt_state": opt_state}),
            meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()


def check_meta(saved: dict, expected: dict, directory: Any) -> None:
    """Raise ``ValueError`` naming every matched entry that differs."""
    problems = [f"{key}: checkpoint has {saved.get(key)!r}, this run has {expected.get(key)!r} "
                f"(resume with {why})"
                for key, why in MATCHED.items() if saved.get(key) != expected.get(key)]
    if problems:
        raise ValueError(f"the checkpoint in {directory} was written by a different run and is not "
                         "loaded: " + "; ".join(problems) + ". Use another checkpoint_dir to "
                         "start afresh.")


def _readable(target: jax.ShapeDtypeStruct, saved_shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    """The target's sharding for the saved shape (a dimension that no longer divides is
    read replicated and re-padded afterwards)."""
    sharding = target.sharding
    spec = tuple(sharding.spec) + (None,) * (len(saved_shape) - len(tuple(sharding.spec)))
    mesh_shape = sharding.mesh.shape
    entries = []
    for size, entry in zip(saved_shape, spec):
        axes = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
        split = int(np.prod([mesh_shape[a] for a in axes])) if axes else 1
        entries.append(entry if size % split == 0 else None)
    return jax.ShapeDtypeStruct(saved_shape, target.dtype,
                                sharding=NamedSharding(sharding.mesh, P(*entries)))


def restore_checkpoint(directory: str | pathlib.Path, target: dict, expected_meta: dict,
                       epoch: int | None = None) -> Restored:
    """Restore ``{"params", "opt_state"}`` into the layout of ``target``.

    Args:
      directory: the checkpoint directory given to ``save_checkpoint``.
      target: ``{"params": ..., "opt_state": ...}`` of ``jax.ShapeDtypeStruct`` with
        the shardings of this run (its mesh may differ from the saving run's).
      expected_meta: this run's meta; ``MATCHED`` entries must equal the saved ones.
      epoch: which checkpoint (default: the newest).
    Raises:
      FileNotFoundError when there is none; ValueError when it belongs to another run.
    """
    with _manager(directory) as manager:
        epoch = manager.latest_step() if epoch is None else int(epoch)
        if epoch is None:
            raise FileNotFoundError(f"no checkpoint in {directory}")
        meta = manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        expected = json.loads(json.dumps({**expected_meta, "format": FORMAT}))  # as saved: JSON types
        check_meta(meta, expected, directory)
        saved_shapes = meta["stored_shapes"]
        target_leaves, treedef = jax.tree.flatten(target)
        if len(saved_shapes) != len(target_leaves):
            raise ValueError(f"the checkpoint in {directory} holds {len(saved_shapes)} arrays but this "
                             f"run has {len(target_leaves)}; use another checkpoint_dir")
        readable = treedef.unflatten([_readable(t, tuple(s))
                                      for t, s in zip(target_leaves, saved_shapes)])
        state = manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(readable)))["state"]
    shardings = jax.tree.map(lambda t: t.sharding, target)
    shapes = [tuple(t.shape) for t in target_leaves]
    repad = jax.jit(lambda tree: treedef.unflatten(
        [pad_to(x, s) for x, s in zip(treedef.flatten_up_to(tree), shapes)]), out_shardings=shardings)
    state = repad(state)
    return Restored(state["params"], state["opt_state"], meta)
