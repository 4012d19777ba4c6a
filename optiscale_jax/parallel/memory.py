"""Memory per device of a strategy, estimated before running and measured after.

The estimate needs no devices: it builds the strategy's parameter layout on an
abstract mesh of ``mesh_shape`` (``sharding.plan_params``), and counts, per device,

    params    = sum over leaves of prod(stored shape / mesh axes splitting it) x 4 bytes
    opt_state = the same over the leaves of ``jax.eval_shape(transform.init, params)``
                (parameter-shaped sub-trees split like the parameters, the rest whole)
    grads     = params (gradients come back split like the parameters)
    data      = this device's rows of X and y (float32), when ``n_rows`` is given (all rows
                when they do not divide over the data axis: they are then replicated)

The replicated ``data_parallel`` figure for comparison is
``n_devices x (params + grads + opt_state)`` of the unsharded model. ``measure``
reads the same parts off a trained ``ParallelTrainer`` from the arrays' shards
(``optiscale_jax.profiling.sharding_memory``). Bytes throughout.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from optiscale_jax.parallel.linear_parallel import linear_padded_shape, linear_plan
from optiscale_jax.parallel.mesh import DATA, MODEL, STAGE, MeshLayout, check_strategy, default_mesh_shape
from optiscale_jax.parallel.mlp import MLPSpec, mlp_shapes
from optiscale_jax.parallel.mlp_parallel import tensor_parallel_plan
from optiscale_jax.parallel.pipeline import pipeline_specs
from optiscale_jax.parallel.sharding import is_leaf_layout, plan_params, state_shardings
from optiscale_jax.parallel.trainer import place_rows
from optiscale_jax.profiling.sharding_memory import ShardedMemory, sharded_memory
from optiscale_jax.training.engine import resolve_optimizer

FLOAT_BYTES = 4  # float32 parameters, state and data


class MemoryEstimate(NamedTuple):
    """Bytes on the most loaded device, per part, and the replicated reference."""

    params: int
    opt_state: int
    grads: int
    data: int
    replicated_params: int
    replicated_opt_state: int
    n_devices: int

    @property
    def state(self) -> int:
        """Parameters + optimizer state per device (what stays between steps)."""
        return self.params + self.opt_state

    @property
    def total(self) -> int:
        return self.params + self.opt_state + self.grads + self.data

    @property
    def replicated_data_parallel_total(self) -> int:
        """All devices together under replicated data parallelism:
        n_devices x (params + grads + optimizer state)."""
        return self.n_devices * (2 * self.replicated_params + self.replicated_opt_state)


def abstract_layout(strategy: str, mesh_shape: tuple[int, int] | None, n_devices: int) -> MeshLayout:
    """A ``MeshLayout`` on an ``AbstractMesh`` (no devices needed)."""
    check_strategy(strategy)
    shape = tuple(mesh_shape) if mesh_shape is not None else default_mesh_shape(strategy, n_devices)
    second = STAGE if "pipeline" in strategy else MODEL
    return MeshLayout(strategy, AbstractMesh(shape, (DATA, second)), second)


def _local_bytes(shape: tuple[int, ...], spec: P, mesh_shape: dict, itemsize: int) -> int:
    entries = tuple(spec) + (None,) * (len(shape) - len(tuple(spec)))
    count = 1
    for size, entry in zip(shape, entries):
        axes = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
        count *= -(-size // math.prod(mesh_shape[a] for a in axes))
    return count * itemsize


def model_plan(model: Any, layout: MeshLayout) -> Any:
    """The stored layout (``LeafLayout`` pytree) of ``model``'s parameters on ``layout``."""
    if isinstance(model, MLPSpec):
        if layout.second_axis == STAGE:
            return plan_params(pipeline_specs(), mlp_shapes(model), layout, fsdp=False)
        return tensor_parallel_plan(model, layout)
    return linear_plan(tuple(model.param_shape), layout)


def estimate_parallel_memory(model: Any, optimizer: Any, strategy: str,
                             mesh_shape: tuple[int, int] | None = None, *,
                             n_devices: int | None = None, n_rows: int | None = None,
                             hyperparams: dict | None = None) -> MemoryEstimate:
    """Per-device bytes of ``model`` trained with ``optimizer`` under ``strategy``.

    Args:
      model: an ``MLPSpec`` or a linear ``Problem`` (anything with ``param_shape``,
        ``kind``).
      optimizer: an optimizer name (with ``hyperparams``) or an optax transform.
      strategy, mesh_shape: as ``make_layout`` (``mesh_shape`` default: the strategy's
        default over ``n_devices``).
      n_rows: rows of training data (for the data part; 0 when None).
    """
    if mesh_shape is None and n_devices is None:
        raise ValueError("give mesh_shape=(n_data, n_second) or n_devices")
    n = int(np.prod(mesh_shape)) if mesh_shape is not None else int(n_devices)
    layout = abstract_layout(strategy, mesh_shape, n)
    plan = model_plan(model, layout)
    mesh_sizes = dict(layout.mesh.shape)
    leaves = jax.tree.leaves(plan, is_leaf=is_leaf_layout)
    params = sum(_local_bytes(leaf.shape, leaf.spec, mesh_sizes, FLOAT_BYTES) for leaf in leaves)
    stored = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, jnp.float32), plan,
                          is_leaf=is_leaf_layout)
    true = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.true_shape, jnp.float32), plan,
                        is_leaf=is_leaf_layout)
    _, _, factory = resolve_optimizer(optimizer, hyperparams)
    transform = factory()
    state_shapes = jax.eval_shape(transform.init, stored)
    specs = jax.tree.map(lambda leaf: leaf.spec, plan, is_leaf=is_leaf_layout)
    state_specs = state_shardings(state_shapes, stored, specs, P())
    spec_leaves = jax.tree.leaves(state_specs, is_leaf=lambda x: isinstance(x, P))
    opt_state = sum(_local_bytes(tuple(s.shape), spec, mesh_sizes, s.dtype.itemsize)
                    for s, spec in zip(jax.tree.leaves(state_shapes), spec_leaves))
    true_state = jax.eval_shape(transform.init, true)
    data = 0
    if n_rows is not None:
        d = model.n_features if isinstance(model, MLPSpec) else int(model.param_shape[0])
        # As ``place_rows``: rows split over data when they divide, else kept whole.
        rows = int(n_rows) // layout.n_data if int(n_rows) % layout.n_data == 0 else int(n_rows)
        data = rows * (d + 1) * FLOAT_BYTES
    return MemoryEstimate(
        params=params, opt_state=opt_state, grads=params, data=data,
        replicated_params=sum(int(np.prod(t.shape)) * FLOAT_BYTES for t in jax.tree.leaves(true)),
        replicated_opt_state=sum(int(np.prod(t.shape)) * t.dtype.itemsize
                                 for t in jax.tree.leaves(true_state)),
        n_devices=n)


def grads_of(trainer: Any, X: Any, y: Any) -> Any:
    """The gradient of a fitted trainer's loss at its final parameters, as the sharded
    arrays the training step produces (jitted with the parameters' shardings)."""
    sm = trainer.sharded_model_
    fn = jax.jit(jax.grad(sm.loss), out_shardings=sm.shardings)
    return fn(trainer.state_.params, *X_y_for(trainer, X, y))


def X_y_for(trainer: Any, X: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    """``X``, ``y`` placed as ``fit`` places them (rows over ``data``)."""
    layout = trainer.layout_
    X = np.asarray(X, np.float32)
    model = trainer.fitted_model_
    if not isinstance(model, MLPSpec):
        d_stored = linear_padded_shape(model.param_shape, layout)[0]
        X = np.pad(X, ((0, 0), (0, d_stored - X.shape[1])))
    label = np.int32 if np.issubdtype(np.asarray(y).dtype, np.integer) and not isinstance(
        model, MLPSpec) else np.float32
    return place_rows(X, layout, np.float32), place_rows(y, layout, label)


def measure(trainer: Any, X: Any = None, y: Any = None) -> ShardedMemory:
    """Per-device bytes of a fitted trainer's parameters and optimizer state (and of one
    gradient, and the placed data, when ``X`` and ``y`` are given), from the arrays."""
    parts = {"params": trainer.state_.params, "opt_state": trainer.state_.opt_state}
    if X is not None and y is not None:
        parts["grads"] = grads_of(trainer, X, y)
        parts["data"] = X_y_for(trainer, X, y)
    return sharded_memory(**parts)
