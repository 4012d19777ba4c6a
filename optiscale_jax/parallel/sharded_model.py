"""A model placed on a mesh: its sharded loss, where each parameter leaf is stored, and the
conversions between the parameters' own shapes and the stored (padded, sharded) ones.

    sm = sharded_model(model, layout)
    stored = sm.place(params_host)          # NamedSharding leaves, zero-padded where fsdp needs it
    loss = sm.loss(stored, X, y)            # the global mean objective, exact
    sm.gather(stored)                       # host arrays in the parameters' own shapes

Models: an ``optiscale_jax.problems.Problem`` (a linear model, ``w`` of shape (d,) or
(d, k)) or an ``MLPSpec``. Strategies give each leaf its model spec; fsdp adds the data
split (``sharding.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optiscale_jax.parallel.distributed import replicated
from optiscale_jax.parallel.linear_parallel import linear_plan, make_linear_loss
from optiscale_jax.parallel.mesh import STAGE, MeshLayout
from optiscale_jax.parallel.mlp import MLPParams, MLPSpec, init_mlp_params, mlp_shapes
from optiscale_jax.parallel.mlp_parallel import make_mlp_loss, tensor_parallel_plan
from optiscale_jax.parallel.pipeline import make_pipeline_loss, pipeline_specs
from optiscale_jax.parallel.sharding import pad_to, plan_params, shardings_of


@dataclasses.dataclass(frozen=True)
class ShardedModel:
    """A model on a mesh.

    Attributes:
      loss: ``(stored params, X, y) -> scalar``, the model's mean objective.
      plan: pytree of ``LeafLayout`` (stored spec and shape of each leaf).
      true_shapes: pytree of the parameters' own shapes (tuples as leaves).
      shardings: pytree of ``NamedSharding`` of the stored parameters.
      layout: the mesh.
      fingerprint: what identifies the model in a checkpoint (kind, sizes, L2).
    """

    loss: Callable
    plan: Any
    true_shapes: Any
    shardings: Any
    layout: MeshLayout
    fingerprint: dict

    def stored_shapes(self, dtype: Any = jnp.float32) -> Any:
        """``jax.ShapeDtypeStruct``s (with shardings) of the stored parameters."""
        return jax.tree.map(lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, dtype,
                                                                        sharding=sharding),
                            self.plan, self.shardings)

    def place(self, params: Any) -> Any:
        """Host parameters (own shapes, the same in every process) -> stored, sharded arrays."""
        host = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
        return self.to_stored(replicated(host, self.layout))

    def to_stored(self, params: Any) -> Any:
        """Device parameters in their own shapes -> stored shapes and shardings (jitted)."""
        shapes = jax.tree.map(lambda leaf: leaf.shape, self.plan,
                              is_leaf=lambda x: hasattr(x, "spec"))
        return jax.jit(lambda p: jax.tree.map(pad_to, p, shapes, is_leaf=_is_shape),
                       out_shardings=self.shardings)(params)

    def to_true(self, stored: Any) -> Any:
        """Stored parameters -> the parameters' own shapes, replicated (jitted)."""
        out = jax.tree.map(lambda _: NamedSharding(self.layout.mesh, P()), self.true_shapes,
                           is_leaf=_is_shape)
        return jax.jit(lambda p: jax.tree.map(lambda x, s: pad_to(x, s), p, self.true_shapes,
                                              is_leaf=_is_shape),
                       out_shardings=out)(stored)

    def gather(self, stored: Any) -> Any:
        """The parameters as host NumPy arrays in their own shapes (a gather to every process)."""
        return jax.tree.map(np.asarray, self.to_true(stored))


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(s, int) for s in x)


def mlp_fingerprint(spec: MLPSpec) -> dict:
    return {"model": "mlp", "n_features": int(spec.n_features), "width": int(spec.width),
            "n_blocks": int(spec.n_blocks), "l2": float(spec.l2)}


def sharded_model(model: Any, layout: MeshLayout, *, n_microbatches: int | None = None,
                  label_dtype: Any = jnp.float32) -> ShardedModel:
    """``model`` (a Problem or an MLPSpec) with its loss and parameter layout on ``layout``."""
    if isinstance(model, MLPSpec):
        shapes = mlp_shapes(model)
        if layout.second_axis == STAGE:
            plan = plan_params(pipeline_specs(), shapes, layout, fsdp=False)
            loss = make_pipeline_loss(model, layout, n_microbatches)
        else:
            plan = tensor_parallel_plan(model, layout)
            loss = make_mlp_loss(model, layout)
        fingerprint = mlp_fingerprint(model)
    else:
        shapes = tuple(int(s) for s in model.param_shape)
        plan = linear_plan(shapes, layout)
        loss = make_linear_loss(model.loss, shapes, layout, label_dtype)
        fingerprint = {"model": str(model.kind), "param_shape": list(shapes),
                       "l2": float(model.l2)}
    return ShardedModel(loss=loss, plan=plan, true_shapes=shapes,
                        shardings=shardings_of(plan, layout), layout=layout,
                        fingerprint=fingerprint)


def initial_params(model: Any, seed: int) -> Any:
    """Default initial parameters: zeros for a linear model, ``init_mlp_params`` for an MLP."""
    if isinstance(model, MLPSpec):
        return jax.tree.map(np.asarray, init_mlp_params(model, seed))
    return model.init_params(dtype=np.float32, xp=np)


def init_stored_mlp(sm: ShardedModel, spec: MLPSpec, seed: int) -> MLPParams:
    """``init_mlp_params`` computed directly in the stored layout (each device makes its own
    pieces; no host copy of the full parameters): for models too big to pass through the host."""
    shapes = jax.tree.map(lambda leaf: leaf.shape, sm.plan, is_leaf=lambda x: hasattr(x, "spec"))

    def init():
        return jax.tree.map(pad_to, init_mlp_params(spec, seed), shapes, is_leaf=_is_shape)

    return jax.jit(init, out_shardings=sm.shardings)()
