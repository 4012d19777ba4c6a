"""ParallelTrainer: train a linear model or an MLP on a device mesh with the shared engine.

The strategies only change the loss-and-gradient function handed to the one
engine (``optiscale_jax.training.run_objective``, a jitted ``lax.scan`` over
epochs) and where the arrays live:

    loss = make_loss(model, layout)           # shard_map over the mesh
    value_and_grad = jax.value_and_grad(loss) # taken outside shard_map: exact sums
    run_objective(value_and_grad, params0, optimizer, X_global, y_global, ...)

Example:
    >>> trainer = ParallelTrainer(n_devices=4, strategy="data_parallel",
    ...                           optimizer="sgd", hyperparams={"learning_rate": 0.5})
    >>> trainer.fit(X_train, y_train).coef_
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from optiscale_jax.parallel.distributed import global_rows, replicated
from optiscale_jax.parallel.linear_parallel import make_linear_loss
from optiscale_jax.parallel.mesh import STAGE, MeshLayout, check_strategy, make_layout
from optiscale_jax.parallel.mlp import MLPSpec, init_mlp_params
from optiscale_jax.parallel.mlp_parallel import check_tensor_parallel, make_mlp_loss
from optiscale_jax.parallel.pipeline import (
    bubble_fraction,
    check_pipeline,
    default_microbatches,
    make_pipeline_loss,
)
from optiscale_jax.training import run_objective

LINEAR_KINDS = ("least_squares", "ridge", "logistic", "softmax")


def check_model(model: Any, layout_or_strategy: MeshLayout | str) -> None:
    """Raise ``ValueError`` when the strategy cannot shard this model."""
    strategy = getattr(layout_or_strategy, "strategy", layout_or_strategy)
    if isinstance(model, MLPSpec):
        model.validate()
        return
    kind = getattr(model, "kind", model)
    if not isinstance(kind, str) or kind not in LINEAR_KINDS:
        raise ValueError(f"model={model!r} is invalid; pass one of {', '.join(LINEAR_KINDS)}, "
                         "an optiscale_jax.problems.Problem, or an MLPSpec")
    if "pipeline" in strategy:
        raise ValueError(
            f"strategy {strategy!r} splits a model's layers into pipeline stages, but the linear "
            f"{kind!r} model has a single layer; use 'data_parallel', 'model_parallel' or "
            "'data_model_parallel', or an MLPSpec model (e.g. MLPSpec(n_features=784, width=64, "
            "n_blocks=8))")


def make_loss(model: Any, layout: MeshLayout, *, n_microbatches: int | None = None,
              label_dtype: Any = jnp.float32) -> Callable:
    """The sharded objective ``loss(params, X, y)`` of ``model`` on ``layout``.

    Args:
      model: an ``optiscale_jax.problems.Problem`` (linear model; its ``loss`` is
        the objective) or an ``MLPSpec``.
      layout: the mesh, from ``make_layout``.
      n_microbatches: pipeline microbatches per data shard (default 4 per stage).
      label_dtype: dtype of ``y`` (linear models).
    """
    check_model(model, layout)
    if isinstance(model, MLPSpec):
        if layout.second_axis == STAGE:
            return make_pipeline_loss(model, layout, n_microbatches)
        return make_mlp_loss(model, layout)
    return make_linear_loss(model.loss, tuple(model.param_shape), layout, label_dtype)


def _label_dtype(y: Any) -> Any:
    return jnp.int32 if np.issubdtype(np.asarray(y).dtype, np.integer) else jnp.float32


def place_rows(a: Any, layout: MeshLayout, dtype: Any) -> jax.Array:
    """``a`` (this process's rows) as a global array with rows split over ``data``.

    In one process, rows that do not divide over the data axis are left
    replicated; the loss pads them (weight 0) inside the program.
    """
    host = np.asarray(a).astype(dtype)
    if jax.process_count() == 1 and host.shape[0] % layout.n_data:
        return replicated(host, layout)
    return global_rows(host, layout)


def train(model: Any, optimizer: Any, layout: MeshLayout, X: Any = None, y: Any = None, *,
          epochs: int, batch_size: int | None = None, hyperparams: dict | None = None,
          params0: Any = None, seed: int = 0, n_microbatches: int | None = None,
          f_star: float | None = None, divergence_factor: float = 1e6):
    """Train ``model`` on ``layout`` with the shared engine; the lower-level API.

    Args:
      model: a Problem (X, y default to its data) or an MLPSpec (X, y required).
      optimizer: an optax ``GradientTransformation`` or a name with ``hyperparams``.
      layout: the mesh (``make_layout``).
      X, y: this process's rows (the whole data in a single process).
      params0: initial parameters (default: the Problem's zeros, or
        ``init_mlp_params(spec, seed)``), the same in every process.
      Others: as ``optiscale_jax.training.run_objective`` (float32 throughout).
    Returns:
      The engine's ``RunResult``; ``params`` is a host array (linear) or an
      ``MLPParams`` of host arrays.
    """
    check_model(model, layout)
    if isinstance(model, MLPSpec):
        if X is None or y is None:
            raise ValueError("an MLPSpec model needs X and y")
        if np.ndim(X) != 2 or np.shape(X)[1] != model.n_features:
            raise ValueError(f"X has shape {np.shape(X)}; the MLPSpec expects (n, {model.n_features})")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or Inf; pass finite features")
        labels = np.unique(np.asarray(y))
        if not np.all(np.isin(labels, (0, 1))):
            raise ValueError(f"the MLP is a binary classifier; y must hold 0 / 1 labels, got "
                             f"values {labels[:10].tolist()}")
        if params0 is None:
            params0 = init_mlp_params(model, seed)
    else:
        X = model.X if X is None else X
        y = model.y if y is None else y
        if params0 is None:
            params0 = model.init_params(dtype=np.float32, xp=np)
    if np.shape(X)[0] != np.shape(y)[0]:
        raise ValueError(f"X has {np.shape(X)[0]} rows but y has {np.shape(y)[0]}; pass one label per row")
    label_dtype = jnp.float32 if isinstance(model, MLPSpec) else _label_dtype(y)
    loss = make_loss(model, layout, n_microbatches=n_microbatches, label_dtype=label_dtype)
    X_global = place_rows(X, layout, np.float32)
    y_global = place_rows(y, layout, label_dtype)
    # The engine's RunResult holds one parameter array, so a pytree (the MLP) travels
    # through it as one flat vector and is unflattened inside the loss.
    flat0, unflatten = ravel_pytree(jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params0))
    flat_loss = lambda flat, X_rows, y_rows: loss(unflatten(flat), X_rows, y_rows)
    result = run_objective(jax.value_and_grad(flat_loss), replicated(np.asarray(flat0), layout),
                           optimizer, X_global, y_global, epochs=epochs, batch_size=batch_size,
                           seed=seed, dtype="float32", hyperparams=hyperparams, f_star=f_star,
                           divergence_factor=divergence_factor)
    params = jax.tree.map(np.asarray, unflatten(jnp.asarray(result.params)))
    mesh = f"mesh({', '.join(f'{k}={v}' for k, v in layout.mesh.shape.items())})"
    return dataclasses.replace(result, params=params, device=f"{result.device} {layout.strategy} {mesh}")


class ParallelTrainer:
    """Train a linear model or an MLP with data / model / pipeline parallelism.

    Args:
      n_devices: devices to use (None: all of ``jax.devices()``, every process's).
      strategy: one of ``STRATEGIES``: 'data_parallel' (rows split), 'model_parallel'
        (features of a linear model / hidden units of an MLP split), 'pipeline_parallel'
        (an MLP's hidden layers as GPipe stages), 'data_model_parallel',
        'data_pipeline_parallel' (2-d meshes; see ``mesh_shape``).
      optimizer: name from ``optiscale_jax.optimizers`` (with ``hyperparams``) or an
        optax ``GradientTransformation``.
      model: 'logistic' (default), 'least_squares', 'ridge', 'softmax', or an ``MLPSpec``.
      l2: L2 coefficient of a linear model (an MLPSpec carries its own).
      epochs, batch_size, seed: as the engine (batch_size None = full batch).
      mesh_shape: (n_data, n_model_or_stage) for the 2-d strategies.
      n_microbatches: pipeline microbatches per data shard (default 4 per stage).
      devices: the devices to draw from (default ``jax.devices()``).

    After ``fit``: ``params_`` (``coef_`` for a linear model), ``history_`` (loss per
    epoch), ``result_`` (the engine's RunResult), ``layout_``, and for pipelines
    ``bubble_fraction_`` (idle share of stage-ticks, (S-1)/(M+S-1)).
    """

    def __init__(self, n_devices: int | None = None, strategy: str = "data_parallel",
                 optimizer: Any = "sgd", *, hyperparams: dict | None = None,
                 model: Any = "logistic", l2: float = 0.0, epochs: int = 100,
                 batch_size: int | None = None, seed: int = 0,
                 mesh_shape: tuple[int, int] | None = None,
                 n_microbatches: int | None = None, devices: Any = None):
        check_strategy(strategy)
        check_model(model, strategy)
        self.layout = make_layout(strategy, n_devices, mesh_shape, devices)
        if isinstance(model, MLPSpec):
            if self.layout.second_axis == STAGE:
                check_pipeline(model, self.layout.n_second,
                               default_microbatches(self.layout.n_second)
                               if n_microbatches is None else n_microbatches)
            else:
                check_tensor_parallel(model, self.layout.n_second)
        self.strategy = strategy
        self.optimizer = optimizer
        self.hyperparams = hyperparams
        self.model = model
        self.l2 = float(l2)
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.n_microbatches = n_microbatches

    def _model_for(self, X: Any, y: Any) -> Any:
        if not isinstance(self.model, str):  # an MLPSpec, or a Problem to train on X, y
            return self.model
        from optiscale_jax.problems import make_problem
        return make_problem(self.model, X, y, self.l2)

    def fit(self, X: Any, y: Any) -> ParallelTrainer:
        """Train on ``X`` (n, d), ``y`` (n,): the whole data in one process, this
        process's rows in a multi-process run. Returns ``self``."""
        model = self._model_for(X, y)
        result = train(model, self.optimizer, self.layout, X, y, epochs=self.epochs,
                       batch_size=self.batch_size, hyperparams=self.hyperparams,
                       seed=self.seed, n_microbatches=self.n_microbatches)
        self.result_ = result
        self.params_ = result.params
        self.history_ = np.asarray(result.train_loss)
        self.layout_ = self.layout
        if not isinstance(model, MLPSpec):
            self.coef_ = np.asarray(result.params)
        if self.layout.second_axis == STAGE:
            n_micro = (default_microbatches(self.layout.n_second)
                       if self.n_microbatches is None else self.n_microbatches)
            self.bubble_fraction_ = bubble_fraction(n_micro, self.layout.n_second)
        return self
