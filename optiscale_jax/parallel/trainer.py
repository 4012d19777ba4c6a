"""ParallelTrainer: train a linear model or an MLP with sharded parameters and optimizer state.

A strategy decides two things: the loss's ``shard_map`` (which collectives run) and
where each parameter leaf is stored (``sharded_model.py``); the optimizer state is
sharded like the parameters and both stay sharded between steps (``loop.py``):

    sm = sharded_model(model, layout)               # loss + stored layout of every leaf
    state = TrainState(sm.place(params0), init_opt_state(transform, ...))
    segment = build_segment(sm.loss, transform, ...)   # epochs as one jitted lax.scan

Example:
    >>> trainer = ParallelTrainer(n_devices=8, strategy="fsdp", optimizer="adam",
    ...                           hyperparams={"learning_rate": 1e-2})
    >>> trainer.fit(X_train, y_train).coef_
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optiscale_jax.parallel.checkpoint import latest_epoch, restore_checkpoint, save_checkpoint
from optiscale_jax.parallel.distributed import global_rows, replicated
from optiscale_jax.parallel.linear_parallel import linear_padded_shape, make_linear_loss
from optiscale_jax.parallel.loop import (
    CompiledSegment,
    TrainState,
    build_segment,
    compile_segment,
    init_opt_state,
    run_segment,
)
from optiscale_jax.parallel.mesh import STAGE, MeshLayout, check_strategy, make_layout
from optiscale_jax.parallel.mlp import MLPSpec, mlp_logits
from optiscale_jax.parallel.mlp_parallel import check_tensor_parallel, make_mlp_loss
from optiscale_jax.parallel.pipeline import (
    bubble_fraction,
    check_pipeline,
    default_microbatches,
    make_pipeline_loss,
)
from optiscale_jax.parallel.sharded_model import ShardedModel, initial_params, sharded_model
from optiscale_jax.problems import make_problem
from optiscale_jax.problems.labels import infer_problem_kind
from optiscale_jax.training import RunResult, batch_plan
from optiscale_jax.training.engine import DIVERGENCE_FLOOR, resolve_optimizer
from optiscale_jax.training.result import jsonable, make_result

LINEAR_KINDS = ("least_squares", "ridge", "logistic", "softmax")


def check_model(model: Any, layout_or_strategy: MeshLayout | str) -> None:
    """Raise ``ValueError`` when the strategy cannot shard this model."""
    strategy = getattr(layout_or_strategy, "strategy", layout_or_strategy)
    model = "auto" if model is None else model
    if isinstance(model, MLPSpec):
        model.validate()
        return
    kind = getattr(model, "kind", model)
    if not isinstance(kind, str) or kind not in LINEAR_KINDS + ("auto",):
        raise ValueError(f"model={model!r} is invalid; pass one of {', '.join(LINEAR_KINDS)}, 'auto', "
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


def _label_dtype(y: Any) -> Any:  # int labels for softmax, float otherwise
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


def _checked_data(model: Any, X: Any, y: Any) -> tuple[Any, Any]:
    """(X, y) for ``model``, checked before any work starts."""
    if isinstance(model, MLPSpec):
        if X is None or y is None:
            raise ValueError("an MLPSpec model needs X and y")
        if np.ndim(X) != 2 or np.shape(X)[1] != model.n_features:
            raise ValueError(f"X has shape {np.shape(X)}; the MLPSpec expects (n, {model.n_features})")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or Inf; pass finite features")
        labels = np.unique(np.asarray(y))
        if not np.all(np.isin(labels, (0, 1))):
            raise ValueError(
                f"the MLP is a binary classifier; y must hold 0 / 1 labels, got values "
                f"{labels[:10].tolist()}; for more classes use model='softmax' (a linear "
                "softmax classifier)")
    else:
        X = model.X if X is None else X
        y = model.y if y is None else y
    if np.shape(X)[0] != np.shape(y)[0]:
        raise ValueError(f"X has {np.shape(X)[0]} rows but y has {np.shape(y)[0]}; pass one label per row")
    return X, y


class ShardedRun(NamedTuple):
    """A finished run: the engine-style ``RunResult`` (host parameters in their own shapes),
    the final ``TrainState`` (sharded arrays, still on the devices), the model's layout,
    and the compiled segment (for ``memory_analysis`` / the HLO's collectives)."""

    result: RunResult
    state: TrainState
    model: ShardedModel
    compiled: CompiledSegment


def _run_meta(model: ShardedModel, name: str, hyper: dict, opt_state: Any, seed: int,
              batch_size: int | None) -> dict:
    return {"model": model.fingerprint, "optimizer": {"name": name, "hyperparams": jsonable(hyper)},
            "opt_state_structure": str(jax.tree.structure(opt_state)), "seed": int(seed),
            "batch_size": batch_size}


def fit_sharded(model: Any, optimizer: Any, layout: MeshLayout, X: Any = None, y: Any = None, *,
                epochs: int, batch_size: int | None = None, hyperparams: dict | None = None,
                params0: Any = None, seed: int = 0, n_microbatches: int | None = None,
                f_star: float | None = None, divergence_factor: float = 1e6,
                checkpoint_dir: Any = None, checkpoint_every: int | None = None,
                gather_params: bool = True) -> ShardedRun:
    """Train ``model`` on ``layout`` with sharded parameters and optimizer state.

    Args:
      model: a Problem (X, y default to its data) or an MLPSpec (X, y required).
      optimizer: an optax ``GradientTransformation`` or a name with ``hyperparams``.
      layout: the mesh (``make_layout``); its strategy decides the parameter layout.
      X, y: this process's rows (the whole data in a single process).
      params0: initial parameters in their own shapes, the same in every process
        (default: the Problem's zeros, or ``init_mlp_params(spec, seed)``); or stored,
        sharded arrays (e.g. ``init_stored_mlp``).
      checkpoint_dir: save the state (Orbax) every ``checkpoint_every`` epochs and at the
        end; when it already holds a checkpoint of this run, resume from the newest one.
      gather_params: copy the final parameters to the host into ``result.params``
        (False: ``result.params`` is None; the sharded parameters are in ``state``).
      Others: as ``optiscale_jax.training.run_objective`` (float32 throughout).
    """
    check_model(model, layout)
    X, y = _checked_data(model, X, y)
    if epochs < 1:
        raise ValueError(f"epochs={epochs!r} is invalid; run at least 1 epoch")
    if checkpoint_every is not None and (checkpoint_dir is None or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every={checkpoint_every!r} needs a checkpoint_dir and must be >= 1")
    start = time.perf_counter()
    name, hyper, factory = resolve_optimizer(optimizer, hyperparams)
    transform = factory()
    label_dtype = jnp.float32 if isinstance(model, MLPSpec) else _label_dtype(y)
    sm = sharded_model(model, layout, n_microbatches=n_microbatches, label_dtype=label_dtype)
    X_global, y_global = _place_data(model, layout, X, y, label_dtype)
    state = _initial_state(sm, transform, initial_params(model, seed) if params0 is None else params0)
    meta = _run_meta(sm, name, hyper, state.opt_state, seed, batch_size)
    progress = _Progress()
    if checkpoint_dir is not None and latest_epoch(checkpoint_dir) is not None:
        state, progress = _resume(checkpoint_dir, sm, state, meta)
    jax.block_until_ready(state)
    setup_time_s = time.perf_counter() - start
    state, compiled = _run_segments(sm, transform, state, X_global, y_global, progress, epochs=epochs,
                                    plan=batch_plan(int(X_global.shape[0]), batch_size), seed=seed,
                                    divergence_factor=divergence_factor, checkpoint_dir=checkpoint_dir,
                                    checkpoint_every=checkpoint_every, meta=meta)
    result = make_result(
        params=sm.gather(state.params) if gather_params else None,
        initial_loss=progress.initial[0], initial_grad_norm=progress.initial[1],
        train_loss=np.asarray(progress.losses), grad_norm=np.asarray(progress.grad_norms),
        diverged_epoch=state.diverged_epoch or None, f_star=f_star, tol=1e-6, grad_tol=None,
        compile_time_s=sum(c.compile_time_s for c in compiled.values()),
        run_time_s=progress.run_time_s, backend="jax", device=_device_label(layout), dtype="float32",
        optimizer=name, hyperparams=hyper, batch_size=batch_size, seed=seed)
    result = dataclasses.replace(result, setup_time_s=setup_time_s)
    return ShardedRun(result, state, sm, compiled[max(compiled)] if compiled else None)


@dataclasses.dataclass
class _Progress:
    """What a run has recorded so far (kept in a checkpoint's meta to resume it)."""

    threshold: float = -1.0         # divergence bound, fixed by the first segment
    initial: list | None = None     # [f(w_0), ||grad f(w_0)||]
    losses: list = dataclasses.field(default_factory=list)
    grad_norms: list = dataclasses.field(default_factory=list)
    run_time_s: float = 0.0

    def add(self, record: Any, seconds: float, divergence_factor: float) -> None:
        losses, gnorms = (np.asarray(r, np.float64) for r in record)
        if self.initial is None:
            self.initial = [float(losses[0]), float(gnorms[0])]
            self.threshold = divergence_factor * max(abs(self.initial[0]), DIVERGENCE_FLOOR)
        self.losses += losses[1:].tolist()
        self.grad_norms += gnorms[1:].tolist()
        self.run_time_s += seconds

    def meta(self, state: TrainState) -> dict:
        return {"diverged_epoch": state.diverged_epoch, "threshold": self.threshold,
                "initial": self.initial, "history": {"losses": self.losses, "grad_norms": self.grad_norms},
                "stored_shapes": [list(a.shape) for a in jax.tree.leaves(
                    {"params": state.params, "opt_state": state.opt_state})]}


def _run_segments(sm: ShardedModel, transform: Any, state: TrainState, X: jax.Array, y: jax.Array,
                  progress: _Progress, *, epochs: int, plan: Any, seed: int, divergence_factor: float,
                  checkpoint_dir: Any, checkpoint_every: int | None, meta: dict) -> tuple:
    """Run from ``state.epoch`` to ``epochs`` in segments of ``checkpoint_every`` epochs (one
    segment without checkpoints), saving after each; returns (state, compiled segments)."""
    compiled: dict[int, CompiledSegment] = {}
    segment_length = min(checkpoint_every or epochs, epochs)
    while state.epoch < epochs:
        n = min(segment_length, epochs - state.epoch)
        if n not in compiled:
            program = build_segment(sm.loss, transform, plan, n, divergence_factor)
            compiled[n] = compile_segment(program, state, X, y, sm.shardings,
                                          jax.tree.map(lambda a: a.sharding, state.opt_state),
                                          sm.layout.mesh)
        state, record, seconds = run_segment(compiled[n], state, X, y, seed=seed,
                                             threshold=progress.threshold)
        progress.add(record, seconds, divergence_factor)
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, state.epoch, state.params, state.opt_state,
                            {**meta, **progress.meta(state)})
    return state, compiled


def _place_data(model: Any, layout: MeshLayout, X: Any, y: Any, label_dtype: Any) -> tuple:
    """X (with a linear model's zero feature columns added once, not per step) and y as
    global arrays, rows over ``data``."""
    X_host = np.asarray(X, np.float32)
    if not isinstance(model, MLPSpec):
        d_stored = linear_padded_shape(model.param_shape, layout)[0]
        X_host = np.pad(X_host, ((0, 0), (0, d_stored - X_host.shape[1])))
    return place_rows(X_host, layout, np.float32), place_rows(y, layout, label_dtype)


def _initial_state(sm: ShardedModel, transform: Any, params0: Any) -> TrainState:
    """Parameters in their stored layout (placed from the host unless they already are)
    and the optimizer state built on the devices, sharded like them."""
    leaves = jax.tree.leaves(params0)
    targets = jax.tree.leaves(sm.stored_shapes())
    already = len(leaves) == len(targets) and all(
        isinstance(p, jax.Array) and p.shape == t.shape for p, t in zip(leaves, targets))
    stored = params0 if already else sm.place(params0)
    return TrainState(stored, init_opt_state(transform, stored, sm.shardings, sm.layout.mesh))


def _resume(directory: Any, sm: ShardedModel, state: TrainState, meta: dict) -> tuple:
    """The newest checkpoint of this run, restored into this run's layout."""
    target = {"params": sm.stored_shapes(), "opt_state": jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state.opt_state)}
    restored = restore_checkpoint(directory, target, meta)
    saved = restored.meta
    progress = _Progress(threshold=saved["threshold"], initial=saved["initial"],
                         losses=saved["history"]["losses"], grad_norms=saved["history"]["grad_norms"])
    return (TrainState(restored.params, restored.opt_state, saved["epoch"], saved["diverged_epoch"]),
            progress)


def _device_label(layout: MeshLayout) -> str:
    device = layout.mesh.devices.flat[0]
    mesh = ", ".join(f"{k}={v}" for k, v in layout.mesh.shape.items())
    return f"{device.platform}:{device.id} x{layout.n_devices} {layout.strategy} mesh({mesh})"


def train(model: Any, optimizer: Any, layout: MeshLayout, X: Any = None, y: Any = None, *,
          epochs: int, batch_size: int | None = None, hyperparams: dict | None = None,
          params0: Any = None, seed: int = 0, n_microbatches: int | None = None,
          f_star: float | None = None, divergence_factor: float = 1e6,
          checkpoint_dir: Any = None, checkpoint_every: int | None = None) -> RunResult:
    """``fit_sharded(...).result``: the ``RunResult`` whose ``params`` are host arrays
    (a linear model's ``w``, or an ``MLPParams``)."""
    return fit_sharded(model, optimizer, layout, X, y, epochs=epochs, batch_size=batch_size,
                       hyperparams=hyperparams, params0=params0, seed=seed,
                       n_microbatches=n_microbatches, f_star=f_star,
                       divergence_factor=divergence_factor, checkpoint_dir=checkpoint_dir,
                       checkpoint_every=checkpoint_every).result


class ParallelTrainer:
    """Train a linear model or an MLP with sharded parameters and optimizer state.

    Args:
      n_devices: devices to use (None: all of ``jax.devices()``, every process's).
      strategy: one of ``STRATEGIES``: 'data_parallel' (rows split, parameters
        replicated), 'fsdp' (rows split, parameters and optimizer state split over the
        same devices, ZeRO-3), 'model_parallel' (features of a linear model / hidden
        units of an MLP split, with their state), 'pipeline_parallel' (an MLP's hidden
        layers as GPipe stages, each stage storing its own layers), and the 2-d
        'data_model_parallel', 'data_pipeline_parallel', 'fsdp_model_parallel'
        (see ``mesh_shape``).
      optimizer: name from ``optiscale_jax.optimizers`` (with ``hyperparams``) or an
        optax ``GradientTransformation``.
      model: 'logistic' (default), 'least_squares', 'ridge', 'softmax', 'auto' or None (the kind
        read off ``y`` by ``optiscale_jax.problems.labels.infer_problem_kind``, the rule the
        estimators use), or an ``MLPSpec`` (a binary classifier, 0 / 1 labels).
      l2: L2 coefficient of a linear model (an MLPSpec carries its own).
      epochs, batch_size, seed: as the engine (batch_size None = full batch).
      mesh_shape: (n_data, n_model_or_stage) for the 2-d strategies.
      n_microbatches: pipeline microbatches per data shard (default 4 per stage).
      devices: the devices to draw from (default ``jax.devices()``).
      checkpoint_dir, checkpoint_every: Orbax checkpoints of the sharded state; a
        directory holding one of this run resumes it (``fit_sharded``).

    After ``fit``: ``params_`` (host arrays in their own shapes; ``coef_`` for a linear
    model), ``history_`` (loss per epoch), ``result_`` (a ``RunResult``), ``state_``
    (the final ``TrainState``, sharded arrays on the devices), ``sharded_model_``
    (where each leaf is stored), ``layout_``, ``compiled_`` (the compiled program), and
    for pipelines ``bubble_fraction_`` (idle share of stage-ticks, (S-1)/(M+S-1)).
    """

    def __init__(self, n_devices: int | None = None, strategy: str = "data_parallel",
                 optimizer: Any = "sgd", *, hyperparams: dict | None = None,
                 model: Any = "logistic", l2: float = 0.0, epochs: int = 100,
                 batch_size: int | None = None, seed: int = 0,
                 mesh_shape: tuple[int, int] | None = None,
                 n_microbatches: int | None = None, devices: Any = None,
                 checkpoint_dir: Any = None, checkpoint_every: int | None = None):
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
                sharded_model(model, self.layout)  # fsdp's split of every leaf, checked now
        self.strategy = strategy
        self.optimizer = optimizer
        self.hyperparams = hyperparams
        self.model = model
        self.l2 = float(l2)
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.n_microbatches = n_microbatches
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def _model_for(self, X: Any, y: Any) -> tuple[Any, Any]:
        """(the model to train, y encoded for it). A named linear model reads its labels with
        the package's one label rule (``problems.labels.infer_problem_kind``): 'auto' infers
        the kind; class labels of any type are encoded 0..k-1 and decoded by ``predict``."""
        if self.model is not None and not isinstance(self.model, str):  # MLPSpec or Problem
            self.label_rule_ = None
            return self.model, y
        rule = infer_problem_kind(y, loss=None if self.model in (None, "auto") else self.model,
                                  loss_name="model")
        self.label_rule_ = rule
        self.classes_ = rule.classes
        encoded = rule.encoded_y.astype(np.int32 if rule.kind == "softmax" else np.float32)
        return make_problem(rule.kind, X, encoded, self.l2), encoded

    def fit(self, X: Any, y: Any) -> ParallelTrainer:
        """Train on ``X`` (n, d), ``y`` (n,): the whole data in one process, this
        process's rows in a multi-process run. Returns ``self``."""
        model, y = self._model_for(X, y)
        run = fit_sharded(model, self.optimizer, self.layout, X, y, epochs=self.epochs,
                          batch_size=self.batch_size, hyperparams=self.hyperparams,
                          seed=self.seed, n_microbatches=self.n_microbatches,
                          checkpoint_dir=self.checkpoint_dir, checkpoint_every=self.checkpoint_every)
        self.result_ = run.result
        self.params_ = run.result.params
        self.history_ = np.asarray(run.result.train_loss)
        self.state_ = run.state
        self.sharded_model_ = run.model
        self.compiled_ = run.compiled
        self.layout_ = self.layout
        self.fitted_model_ = model
        if not isinstance(model, MLPSpec):
            self.coef_ = np.asarray(run.result.params)
        if self.layout.second_axis == STAGE:
            n_micro = (default_microbatches(self.layout.n_second)
                       if self.n_microbatches is None else self.n_microbatches)
            self.bubble_fraction_ = bubble_fraction(n_micro, self.layout.n_second)
        return self

    def _kind(self) -> str:
        return "logistic" if isinstance(self.fitted_model_, MLPSpec) else str(self.fitted_model_.kind)

    def decision_function(self, X: Any) -> np.ndarray:
        """Regression values or logits (float64, host): ``X w`` or the MLP's logits."""
        if not hasattr(self, "params_"):
            raise RuntimeError("this ParallelTrainer is not fitted yet; call fit(X, y) first")
        X = np.asarray(X, np.float64)
        model = self.fitted_model_
        d = model.n_features if isinstance(model, MLPSpec) else model.param_shape[0]
        if X.ndim != 2 or X.shape[1] != d:
            raise ValueError(f"X has shape {X.shape}; this trainer was fitted with {d} features")
        if isinstance(model, MLPSpec):
            logits = mlp_logits(jax.tree.map(jnp.asarray, self.params_), jnp.asarray(X, jnp.float32))
            return np.asarray(logits, np.float64)
        return X @ np.asarray(self.params_, np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (0 / 1; argmax for softmax) or regression values."""
        scores = self.decision_function(X)
        kind = self._kind()
        if kind not in ("logistic", "softmax"):
            return scores
        indices = (scores >= 0).astype(np.int64) if kind == "logistic" else np.argmax(scores, axis=1)
        return indices if self.label_rule_ is None else self.label_rule_.decode(indices)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy for a classifier, R^2 (coefficient of determination) for a regressor."""
        prediction = self.predict(X)
        y = np.asarray(y)
        if y.shape[0] != prediction.shape[0]:
            raise ValueError(f"y has {y.shape[0]} rows but X has {prediction.shape[0]}")
        if self._kind() in ("logistic", "softmax"):
            return float(np.mean(prediction == y))
        y = y.astype(np.float64)
        return float(1.0 - np.sum((y - prediction) ** 2) / np.sum((y - y.mean()) ** 2))
