"""The engine: a whole training run as one jit-compiled program.

The program is a `lax.scan` over epochs. A full-batch epoch is one optimizer
step on the gradient of the full objective. A mini-batch epoch is an inner
`lax.scan` over the full batches of a seeded per-epoch permutation, then one
final smaller step on the `n % batch_size` remaining samples (see
`batching.py`). After every epoch the program evaluates the full objective
f(w_t) and its gradient (one fused pass; in full-batch mode the same
evaluation also gives the next step's gradient, so an epoch costs one
loss-and-gradient evaluation), and records f(w_t) and ||grad f(w_t)||_2.

Divergence: an epoch whose end point has a non-finite loss, parameter or
gradient (checked at once through the scalar loss + ||g||^2 + sum(params)),
or a loss above `divergence_factor * max(|f(w_0)|, 1e-12)`, is
rejected: parameters, optimizer state, loss and gradient stay those of the
last accepted epoch for the rest of the run (`jnp.where`, so a vmapped sweep
keeps going for the other configurations), and the epoch is reported. Nothing
is raised.

Entry points: `run_objective` (any loss-and-gradient function and parameter
pytree, e.g. ParallelTrainer's sharded gradient) and `build_program` /
`execute` underneath it; `run` (in `run.py`) adapts a Problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optiscale_jax.datasets import as_aligned
from optiscale_jax.optimizers import OptimizerSpec, default_hyperparams, eval_params, get_optimizer
from optiscale_jax.training import events
from optiscale_jax.training.batching import BatchPlan, batch_plan, permutation_in_program, seed_key
from optiscale_jax.training.result import RunResult, logged_epochs, make_result

Params = Any
ValueAndGrad = Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, Params]]
FullValueAndGrad = Callable[[Params, "TrainData"], tuple[jax.Array, Params]]
MakeTransform = Callable[[Any], optax.GradientTransformation]

DIVERGENCE_FLOOR = 1e-12
DTYPES: dict[str, Any] = {"float32": np.float32, "float64": np.float64}


class TrainData(NamedTuple):
    """The arrays a program reads: samples X (n, d), targets y (n,), and `extra`,
    a pytree of precomputed arrays used by a fast full-objective kernel."""
    X: jax.Array
    y: jax.Array
    extra: Any = ()


class Objective(NamedTuple):
    """What the engine differentiates.

    batch_value_and_grad(params, X_batch, y_batch) -> (mean loss, gradient pytree).
    full_value_and_grad(params, data: TrainData) -> (f(params), grad f(params)) of the
      full objective; it must be the same function as batch_value_and_grad on all rows.
    """
    batch_value_and_grad: ValueAndGrad
    full_value_and_grad: FullValueAndGrad


class ProgramOutput(NamedTuple):
    """Raw outputs of one compiled run (device arrays)."""
    params: Params
    initial_loss: jax.Array
    initial_grad_norm: jax.Array
    train_loss: jax.Array          # (epochs,)
    grad_norm: jax.Array           # (epochs,)
    diverged_epoch: jax.Array      # int32, 0 when the run did not diverge
    eval_loss: jax.Array | None    # f(params) when params are not the last iterate (schedule-free x)
    eval_grad_norm: jax.Array | None  # ||grad f(params)|| likewise; both None otherwise


class _Carry(NamedTuple):
    params: Params
    opt_state: Any
    loss: jax.Array
    grad: Params
    grad_norm: jax.Array
    diverged_epoch: jax.Array


def canonical_dtype(dtype: Any) -> str:
    """'float32' or 'float64' from a name or NumPy dtype; ValueError otherwise."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use 'float32' or 'float64'")
    return name


@contextlib.contextmanager
def precision(dtype: str) -> Iterator[None]:
    """Enables 64-bit JAX inside the block when dtype is float64 (global config untouched)."""
    if canonical_dtype(dtype) == "float64":
        with jax.enable_x64(True):
            yield
    else:
        yield


def global_norm(tree: Params) -> jax.Array:
    """sqrt(sum of squares of every leaf)."""
    leaves = jax.tree.leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in leaves))


def _sum_squares(tree: Params) -> jax.Array:
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree))


def _checksum(loss: jax.Array, grad_sq: jax.Array, params: Params) -> jax.Array:
    """loss + ||g||^2 + sum(params): non-finite iff one of them holds a NaN/Inf (or they
    are so large that the sum overflows, itself a blow-up). One scalar instead of a
    finite-test per array keeps the per-epoch bookkeeping to a few small kernels."""
    return loss + grad_sq + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(params))


def _select(keep_old: jax.Array, old: Any, new: Any) -> Any:
    return jax.tree.map(lambda o, n: jnp.where(keep_old, o, n), old, new)


def objective_from_value_and_grad(value_and_grad: ValueAndGrad,
                                  full_value_and_grad: FullValueAndGrad | None = None
                                  ) -> Objective:
    """An Objective whose full evaluation is `value_and_grad(params, data.X, data.y)`
    unless a dedicated `full_value_and_grad(params, data)` is given."""
    if full_value_and_grad is None:
        def full_value_and_grad(params: Params, data: TrainData) -> tuple[jax.Array, Params]:
            return value_and_grad(params, data.X, data.y)
    return Objective(value_and_grad, full_value_and_grad)


# Over 60 lines: one pure program whose inner steps close over the same traced data, seed
# and transform; split out, each would take them all as arguments.
def build_program(objective: Objective, make_transform: MakeTransform, *, epochs: int,
                  plan: BatchPlan, divergence_factor: float, eval_every: int = 1
                  ) -> Callable[[Params, TrainData, jax.Array, Any], ProgramOutput]:
    """The pure function `program(params0, data, seed, hyper) -> ProgramOutput` of a run.

    `make_transform(hyper)` builds the optimizer from `hyper` (traced values such
    as a learning rate to vmap over; `()` when everything is fixed). `eval_every`: the
    full objective is recorded at `result.logged_epochs(epochs, eval_every)` only; in
    mini-batch mode it is also only evaluated (and divergence only checked) there, so
    k - 1 of every k full passes are saved. Full-batch steps need the full gradient every
    epoch anyway: they evaluate every epoch and record the logged ones.
    """
    epochs = check_epochs(epochs)
    eval_every = check_eval_every(eval_every)
    if not divergence_factor > 1:
        raise ValueError(f"divergence_factor={divergence_factor!r} must be > 1 (e.g. 1e6)")

    def program(params0: Params, data: TrainData, seed: jax.Array, hyper: Any) -> ProgramOutput:
        transform = make_transform(hyper)
        loss0, grad0 = objective.full_value_and_grad(params0, data)
        threshold = divergence_factor * jnp.maximum(jnp.abs(loss0), DIVERGENCE_FLOOR)
        key = seed_key(seed)

        def step(params: Params, opt_state: Any, grad: Params) -> tuple[Params, Any]:
            updates, opt_state = transform.update(grad, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        def batch_step(carry: tuple[Params, Any], index: jax.Array) -> tuple[tuple[Params, Any], None]:
            params, opt_state = carry
            x_batch = jnp.take(data.X, index, axis=0)
            y_batch = jnp.take(data.y, index, axis=0)
            _, grad = objective.batch_value_and_grad(params, x_batch, y_batch)
            return step(params, opt_state, grad), None

        def mini_batch_epoch(state: tuple[Params, Any], epoch: jax.Array) -> tuple[tuple[Params, Any], None]:
            order = permutation_in_program(key, epoch, plan.n_samples)
            cut = plan.n_full * plan.batch_size
            full = order[:cut].reshape(plan.n_full, plan.batch_size)
            state, _ = jax.lax.scan(batch_step, state, full)
            if plan.remainder:
                state, _ = batch_step(state, order[cut:])
            return state, None

        def accept(carry: _Carry, params: Params, opt_state: Any, epoch: jax.Array) -> _Carry:
            """Evaluates the end of `epoch` (0-based) and keeps it unless it diverged."""
            loss, grad = objective.full_value_and_grad(params, data)
            grad_sq = _sum_squares(grad)
            bad = ~(jnp.isfinite(_checksum(loss, grad_sq, params)) & (loss <= threshold))
            reject = bad | (carry.diverged_epoch > 0)
            new = _Carry(params, opt_state, loss, grad, jnp.sqrt(grad_sq), carry.diverged_epoch)
            kept = _select(reject, carry, new)
            diverged_epoch = jnp.where(bad & (carry.diverged_epoch == 0),
                                       (epoch + 1).astype(jnp.int32), carry.diverged_epoch)
            return kept._replace(diverged_epoch=diverged_epoch)

        def full_batch_epoch(carry: _Carry, epoch: jax.Array) -> tuple[_Carry, tuple[jax.Array, jax.Array]]:
            params, opt_state = step(carry.params, carry.opt_state, carry.grad)
            kept = accept(carry, params, opt_state, epoch)
            return kept, (kept.loss, kept.grad_norm)

        def chunk(length: int) -> Callable[[_Carry, jax.Array], tuple[_Carry, Any]]:
            def body(carry: _Carry, first: jax.Array) -> tuple[_Carry, tuple[jax.Array, jax.Array]]:
                (params, opt_state), _ = jax.lax.scan(
                    mini_batch_epoch, (carry.params, carry.opt_state),
                    first + jnp.arange(length, dtype=jnp.int32))
                kept = accept(carry, params, opt_state, first + length - 1)
                return kept, (kept.loss, kept.grad_norm)
            return body

        def evaluation_point(params: Params, opt_state: Any) -> tuple[Params, Any, Any]:
            """(parameters to report, f and ||grad f|| there or None when they are `params`).

            Schedule-free transforms (their state holds an `optax.contrib.ScheduleFreeState`)
            train at y and evaluate at x (`optimizers.eval_params`); any other reports `params`.
            """
            at = eval_params(None, opt_state, params)
            if at is params:  # decided at trace time from the state's structure
                return params, None, None
            loss, grad = objective.full_value_and_grad(at, data)
            return at, loss, global_norm(grad)

        init = _Carry(params0, transform.init(params0), loss0, grad0, global_norm(grad0),
                      jnp.zeros((), jnp.int32))
        if plan.full_batch:
            final, (losses, grad_norms) = jax.lax.scan(
                full_batch_epoch, init, jnp.arange(epochs, dtype=jnp.int32))
            if eval_every > 1:
                index = jnp.asarray(logged_epochs(epochs, eval_every) - 1)
                losses, grad_norms = losses[index], grad_norms[index]
        else:
            n_chunks, remainder = divmod(epochs, eval_every)
            final, pieces = init, []
            if n_chunks:
                final, piece = jax.lax.scan(
                    chunk(eval_every), final,
                    jnp.arange(n_chunks, dtype=jnp.int32) * eval_every)
                pieces.append(piece)
            if remainder:
                final, (loss, norm) = chunk(remainder)(final, jnp.int32(n_chunks * eval_every))
                pieces.append((loss[None], norm[None]))
            losses = jnp.concatenate([p[0] for p in pieces])
            grad_norms = jnp.concatenate([p[1] for p in pieces])
        params, eval_loss, eval_grad_norm = evaluation_point(final.params, final.opt_state)
        return ProgramOutput(params, loss0, init.grad_norm, losses, grad_norms,
                             final.diverged_epoch, eval_loss, eval_grad_norm)

    return program


def check_epochs(epochs: Any) -> int:
    """`epochs` as a positive int; ValueError naming the value otherwise."""
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} is invalid; pass an integer >= 1")
    return int(epochs)


def check_eval_every(eval_every: Any) -> int:
    """`eval_every` as a positive int; ValueError naming the value otherwise."""
    if isinstance(eval_every, bool) or not isinstance(eval_every, (int, np.integer)) or \
            eval_every < 1:
        raise ValueError(f"eval_every={eval_every!r} is invalid; pass an integer >= 1 (1 = "
                         "record the full objective after every epoch)")
    return int(eval_every)


class Timed(NamedTuple):
    """Outputs of a compiled program with its compile and run times (seconds)."""
    output: Any
    compile_time_s: float
    run_time_s: float


class Compiled(NamedTuple):
    """An ahead-of-time compiled program, its (device) arguments and its compile time."""
    executable: Any
    args: tuple[Any, ...]
    compile_time_s: float


def compile_program(function: Callable[..., Any], *args: Any) -> Compiled:
    """`jit(function).lower(*args).compile()`, timed; emits ("compile", seconds)."""
    args = jax.block_until_ready(args)
    start = time.perf_counter()
    executable = jax.jit(function).lower(*args).compile()
    compile_time = time.perf_counter() - start
    events.emit("compile", compile_time)
    return Compiled(executable, args, compile_time)


def time_runs(compiled: Compiled, *, epochs: int, repeats: int = 1) -> Timed:
    """Runs a compiled program `repeats` times, blocking each time; run_time_s is the median.

    Emits ("epochs", epochs, seconds) per run.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} is invalid; pass an integer >= 1")
    times, output = [], None
    for _ in range(int(repeats)):
        start = time.perf_counter()
        output = jax.block_until_ready(compiled.executable(*compiled.args))
        times.append(time.perf_counter() - start)
        events.emit("epochs", epochs, times[-1])
    return Timed(output, compiled.compile_time_s, float(np.median(times)))


def execute(function: Callable[..., Any], *args: Any, epochs: int, repeats: int = 1) -> Timed:
    """Compiles `function(*args)` ahead of time and runs it `repeats` times (see above)."""
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} is invalid; pass an integer >= 1")
    return time_runs(compile_program(function, *args), epochs=epochs, repeats=repeats)


def cast_tree(tree: Params, dtype: str) -> Params:
    """Every floating leaf as a JAX array of `dtype` (other leaves as JAX arrays, unchanged).

    A host leaf is placed with `jax.device_put` after at most one aligned cast copy
    (`datasets.as_aligned`), so on a CPU device an aligned leaf of `dtype` is used in place.
    """
    def cast(leaf: Any) -> jax.Array:
        if isinstance(leaf, (np.ndarray, np.generic, float)) and \
                np.issubdtype(np.asarray(leaf).dtype, np.floating):
            return jax.device_put(as_aligned(np.asarray(leaf), dtype))
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.dtype != np.dtype(dtype):
            return leaf.astype(dtype)
        return leaf
    return jax.tree.map(cast, tree)


def resolve_optimizer(optimizer: Any, hyperparams: dict[str, Any] | None
                      ) -> tuple[str, dict[str, Any], Callable[..., optax.GradientTransformation]]:
    """(name, full hyperparameters, factory(**overrides)) for a name, an OptimizerSpec or a transform.

    A name: one of `optiscale_jax.optimizers.OPTIMIZER_NAMES`, `hyperparams` over its
    defaults. An `OptimizerSpec` (`optimizers.resolve_optimizer("optax:lion", ...)`):
    `hyperparams` over `spec.full_hyperparams()`, built by `spec.build(**hyperparams,
    **overrides)` (a traced `learning_rate` override when `spec.accepts_learning_rate`).
    A GradientTransformation: as it is (no hyperparams, overrides ignored).
    """
    if isinstance(optimizer, str):
        given = dict(hyperparams or {})
        get_optimizer(optimizer, **given)  # validates name and values now, with clear errors
        name = optimizer.lower()
        full = {**default_hyperparams(name), **given}
        return name, full, lambda **over: get_optimizer(name, **{**given, **over})
    if isinstance(optimizer, OptimizerSpec):
        given = dict(hyperparams or {})
        try:  # checks the keywords and values now, before any tracing
            transform = optimizer.build(**given)
        except Exception as error:
            raise ValueError(f"optimizer {optimizer.name!r} ({optimizer.spec}) with hyperparams={given!r} "
                             f"raised {type(error).__name__}: {error}; pass hyperparameters its factory "
                             f"takes: {', '.join(sorted(optimizer.full_hyperparams())) or '(none)'}"
                             ) from error
        if not isinstance(transform, optax.GradientTransformation):
            raise ValueError(f"optimizer {optimizer.name!r} ({optimizer.spec}) with hyperparams={given!r} "
                             f"returned a {type(transform).__name__}, not an optax.GradientTransformation")
        return (optimizer.name, {**optimizer.full_hyperparams(), **given},
                lambda **over: optimizer.build(**{**given, **over}))
    if isinstance(optimizer, optax.GradientTransformation):
        if hyperparams:
            raise ValueError(
                "hyperparams= is only for an optimizer given by name or OptimizerSpec; a "
                f"GradientTransformation already carries its hyperparameters (got {sorted(hyperparams)})")
        return getattr(optimizer, "__name__", "custom"), {}, lambda **over: optimizer
    raise ValueError(
        f"optimizer={optimizer!r} is invalid; pass an optimizer name such as 'adam' "
        "(with hyperparams={...}), an optiscale_jax.optimizers.OptimizerSpec "
        "(optimizers.resolve_optimizer('optax:lion', {'learning_rate': 1e-4})) or an "
        "optax.GradientTransformation")


def learning_rate_factory(optimizer: Any, factory: Callable[..., optax.GradientTransformation]
                          ) -> Callable[[Any], optax.GradientTransformation]:
    """`rate -> factory(learning_rate=rate)` for a learning-rate sweep of `optimizer`.

    ValueError for a GradientTransformation (its rate is fixed inside it) and for an
    OptimizerSpec whose factory takes no `learning_rate`: nothing to sweep.
    """
    if isinstance(optimizer, optax.GradientTransformation):
        raise ValueError("a learning-rate sweep cannot vary the rate inside a built "
                         "optax.GradientTransformation; pass the optimizer by name ('adam') or as "
                         "an OptimizerSpec (optimizers.resolve_optimizer('optax:lion', {...}))")
    if isinstance(optimizer, OptimizerSpec) and not optimizer.accepts_learning_rate:
        raise ValueError(f"optimizer {optimizer.name!r} ({optimizer.import_path}) takes no learning_rate, "
                         "so a learning-rate sweep cannot vary it; sweep an optimizer whose factory "
                         "has a learning_rate parameter, or use training.run for this one")
    return lambda rate: factory(learning_rate=rate)


def default_device() -> Any:
    """The device JAX places new arrays on: `jax.default_device(...)`'s if set, else the first."""
    chosen = jax.config.jax_default_device
    if chosen is None:
        return jax.devices()[0]
    if isinstance(chosen, str):                       # a platform name, e.g. "cpu"
        return jax.devices(chosen)[0]
    return chosen


def device_description(placed: Any = None) -> str:
    """The device a run's arrays live on, e.g. 'jax:cpu:cpu' ('jax:cpu:cpu x8' when sharded).

    `placed`: any pytree holding the run's device arrays (its first JAX array is read);
    without one, the device JAX places new arrays on (`default_device()`).
    """
    arrays = [leaf for leaf in jax.tree.leaves(placed) if isinstance(leaf, jax.Array)]
    devices = sorted(arrays[0].devices(), key=lambda d: d.id) if arrays else [default_device()]
    device = devices[0]
    label = f"jax:{device.platform}:{getattr(device, 'device_kind', device)}"
    return label if len(devices) == 1 else f"{label} x{len(devices)}"


def to_result(output: ProgramOutput, timed: Timed, *, f_star: float | None, tol: float,
              grad_tol: float | None, dtype: str, optimizer: str,
              hyperparams: dict[str, Any], batch_size: int | None, seed: int,
              device: str | None = None, epochs: int | None = None,
              eval_every: int = 1) -> RunResult:
    """A RunResult from one program's outputs (host copies).

    `device`: the description of where the run's data lived; None reads it from
    `output`'s arrays (`device_description(output)`).
    """
    diverged_epoch = int(output.diverged_epoch)
    evaluated = output.eval_loss is not None
    return make_result(
        params=output.params, initial_loss=float(output.initial_loss),
        initial_grad_norm=float(output.initial_grad_norm),
        train_loss=np.asarray(output.train_loss), grad_norm=np.asarray(output.grad_norm),
        diverged_epoch=diverged_epoch or None, f_star=f_star, tol=tol, grad_tol=grad_tol,
        compile_time_s=timed.compile_time_s, run_time_s=timed.run_time_s, backend="jax",
        device=device if device is not None else device_description(output),
        dtype=dtype, optimizer=optimizer,
        hyperparams=hyperparams, batch_size=batch_size, seed=seed, epochs=epochs,
        eval_every=eval_every,
        eval_loss=float(output.eval_loss) if evaluated else None,
        eval_grad_norm=float(output.eval_grad_norm) if evaluated else None)


def run_objective(value_and_grad: ValueAndGrad, params0: Params, optimizer: Any,
                  X: Any, y: Any, *, epochs: int, batch_size: int | None = None,
                  seed: int = 0, dtype: str | None = "float32",
                  f_star: float | None = None, divergence_factor: float = 1e6,
                  hyperparams: dict[str, Any] | None = None, tol: float = 1e-6,
                  grad_tol: float | None = None,
                  full_value_and_grad: FullValueAndGrad | None = None,
                  extra: Any = (), eval_every: int = 1) -> RunResult:
    """Trains `params0` on any mean loss: the engine without a Problem.

    Args:
      value_and_grad: (params, X_rows, y_rows) -> (mean loss, gradient pytree); called on
        all rows for full batch, on gathered rows for mini-batches. May be a
        shard_mapped function (ParallelTrainer).
      params0: initial parameter pytree.
      optimizer: optimizer name or OptimizerSpec (with `hyperparams`) or an optax
        GradientTransformation (see `resolve_optimizer`).
      X, y: data with samples along axis 0 (kept as given when already of `dtype`, so
        a sharded array keeps its sharding).
      dtype: "float32", "float64", or None to keep the arrays' dtypes.
      full_value_and_grad: optional faster (params, TrainData(X, y, extra)) -> (loss, grad)
        of the same full objective.
      Others: as `run`.
    Returns:
      RunResult (params as the pytree of host arrays; an array for a single array).
    """
    start = time.perf_counter()
    name, full_hyper, factory = resolve_optimizer(optimizer, hyperparams)
    n_samples = int(jax.tree.leaves(X)[0].shape[0]) if not hasattr(X, "shape") else int(X.shape[0])
    plan = batch_plan(n_samples, batch_size)
    dtype_name = canonical_dtype(dtype) if dtype is not None else canonical_dtype(
        jax.tree.leaves(params0)[0].dtype)
    with precision(dtype_name):
        cast = (lambda tree: cast_tree(tree, dtype_name)) if dtype is not None else (
            lambda tree: jax.tree.map(jnp.asarray, tree))
        data = TrainData(cast(X), cast(y), cast(extra))
        params = cast(params0)
        program = build_program(
            objective_from_value_and_grad(value_and_grad, full_value_and_grad),
            lambda hyper: factory(), epochs=epochs, plan=plan,
            divergence_factor=divergence_factor, eval_every=eval_every)
        seed_array = jnp.asarray(seed, jnp.uint32)
        data, params = jax.block_until_ready((data, params))
        setup_time_s = time.perf_counter() - start
        events.emit("setup", setup_time_s)
        timed = execute(program, params, data, seed_array, (), epochs=epochs)
        result = to_result(timed.output, timed, f_star=f_star, tol=tol, grad_tol=grad_tol,
                           dtype=dtype_name, optimizer=name, hyperparams=full_hyper,
                           batch_size=batch_size, seed=seed, epochs=epochs,
                           eval_every=eval_every)
    return dataclasses.replace(result, setup_time_s=setup_time_s)
