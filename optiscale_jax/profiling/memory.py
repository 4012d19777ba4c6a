"""MemoryTracker: bytes held by arrays, by an optimizer's state, and by a whole training run.

Three jobs, each from real data structures, never from a table of multipliers:

* ``array_bytes``: the bytes an array occupies. NumPy and CuPy: ``nbytes``.
  JAX: the sum over its addressable shards (a replicated array on 8 devices
  occupies 8 copies; a sharded one the sum of its pieces), per device.
* ``estimate_optimizer_memory``: parameters, optimizer state and gradients for
  ``n_params`` parameters, the state measured by ``jax.eval_shape`` of the
  optimizer's own ``init`` (shapes only, nothing allocated). Adam's state is
  two parameter-sized moments plus an int32 step count, so its state is 2x the
  parameters plus 4 bytes; counting the weights too gives the "3x" of the spec.
* ``estimate_training_memory``: the host and device memory of one
  ``optiscale_jax.training.run`` of a Problem, built from the engine's own data
  layout and the XLA memory analysis of its compiled program (see that
  function for the model and what it leaves out).

Sizes are bytes; ``*_mb`` values are MiB (2**20 bytes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optiscale_jax.problems import ProblemLike
from optiscale_jax.profiling import _sync
from optiscale_jax.training import TrainData, batch_plan, build_program
from optiscale_jax.training.engine import precision, resolve_optimizer
from optiscale_jax.training.objectives import data_layout, prepare

MIB = float(2**20)


# ---------------------------------------------------------------------------- arrays
class ArrayRecord(NamedTuple):
    """What one tracked array occupies.

    Attributes:
      name, library ("numpy" | "jax" | "cupy"), shape, dtype.
      logical_bytes: ``size * itemsize`` of the global array.
      resident_bytes: bytes actually held (JAX: summed over addressable shards,
        so replicas count once per device).
      n_shards: number of addressable shards (1 for NumPy / CuPy).
      bytes_by_device: resident bytes per device name.
    """

    name: str
    library: str
    shape: tuple[int, ...]
    dtype: str
    logical_bytes: int
    resident_bytes: int
    n_shards: int
    bytes_by_device: dict[str, int]


def array_record(name: str, array: Any) -> ArrayRecord:
    """Measure ``array`` (NumPy, JAX or CuPy); TypeError for anything else."""
    if isinstance(array, jax.Array):
        by_device: dict[str, int] = {}
        shards = array.addressable_shards
        for shard in shards:
            key = str(shard.device)
            by_device[key] = by_device.get(key, 0) + int(shard.data.nbytes)
        return ArrayRecord(name, "jax", tuple(array.shape), str(array.dtype),
                           int(array.size) * array.dtype.itemsize, sum(by_device.values()),
                           len(shards), by_device)
    if _sync.is_cupy_array(array):
        device = f"cuda:{array.device.id}"
        return ArrayRecord(name, "cupy", tuple(array.shape), str(array.dtype), int(array.nbytes),
                           int(array.nbytes), 1, {device: int(array.nbytes)})
    if isinstance(array, np.ndarray):
        return ArrayRecord(name, "numpy", tuple(array.shape), str(array.dtype), int(array.nbytes),
                           int(array.nbytes), 1, {"host": int(array.nbytes)})
    raise TypeError(
        f"track_array({name!r}, ...): expected a NumPy, JAX or CuPy array, got "
        f"{type(array).__name__}; convert it first, e.g. np.asarray(value)")


def tree_bytes(tree: Any) -> int:
    """Bytes of every array-like leaf of a pytree (arrays or ``jax.ShapeDtypeStruct``)."""
    return sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
               for leaf in jax.tree_util.tree_leaves(tree))


# ---------------------------------------------------------------------------- optimizer
def _check_dtype(dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(jnp.dtype(dtype))
    except TypeError as error:
        raise ValueError(f"dtype={dtype!r} is not a NumPy dtype; use e.g. 'float32', "
                         "'float64' or 'bfloat16'") from error
    if not np.issubdtype(resolved, np.floating) and resolved.name != "bfloat16":
        raise ValueError(f"dtype={dtype!r}: parameters must be floating point "
                         "(e.g. 'float32' or 'float64')")
    return resolved


def _x64_if(dtype: np.dtype):
    """64-bit JAX inside the block when ``dtype`` needs it (global config untouched)."""
    return jax.enable_x64(True) if dtype.itemsize == 8 else contextlib.nullcontext()


def optimizer_state_shapes(params: Any, optimizer_type: str, **hyperparams: Any) -> Any:
    """``jax.eval_shape`` of the optimizer's ``init``: the state as ShapeDtypeStructs."""
    from optiscale_jax.optimizers import get_optimizer  # noqa: PLC0415

    transform = get_optimizer(optimizer_type, **hyperparams)
    return jax.eval_shape(transform.init, params)


def estimate_optimizer_memory(n_params: int, optimizer_type: str, dtype: Any = "float32",
                              **hyperparams: Any) -> dict[str, Any]:
    """Bytes of parameters, optimizer state and gradients for ``n_params`` parameters.

    The state is the optimizer's real ``init`` evaluated abstractly
    (``jax.eval_shape``), so scalar leaves such as Adam's int32 ``count`` are
    counted at their true size.

    Returns:
      A dict with ``params_bytes`` (n_params * itemsize), ``state_bytes``,
      ``gradient_bytes`` (= params_bytes), ``total_bytes`` (the three summed),
      their ``*_mb`` values (``total_memory_mb`` for the total),
      ``multiplier`` = state_bytes / params_bytes (0 for SGD, 1 for momentum,
      2 + 4/params_bytes for Adam), ``resident_multiplier`` =
      (params + state) / params (the common "1x / 2x / 3x" rule of thumb), and
      ``state_leaves``: (path, shape, dtype, bytes) of every state leaf.
    """
    if isinstance(n_params, bool) or not isinstance(n_params, (int, np.integer)) or n_params < 1:
        raise ValueError(f"n_params={n_params!r}: must be a positive integer")
    resolved = _check_dtype(dtype)
    params = jax.ShapeDtypeStruct((int(n_params),), resolved)
    with _x64_if(resolved):
        state = optimizer_state_shapes(params, optimizer_type, **hyperparams)
    leaves = jax.tree_util.tree_leaves_with_path(state)
    state_leaves = [(jax.tree_util.keystr(path), tuple(leaf.shape), str(leaf.dtype),
                     tree_bytes(leaf)) for path, leaf in leaves]
    params_bytes = tree_bytes(params)
    state_bytes = sum(entry[3] for entry in state_leaves)
    total = 2 * params_bytes + state_bytes
    return {
        "optimizer": optimizer_type.lower(),
        "dtype": resolved.name,
        "n_params": int(n_params),
        "params_bytes": params_bytes,
        "state_bytes": state_bytes,
        "gradient_bytes": params_bytes,
        "total_bytes": total,
        "params_mb": params_bytes / MIB,
        "state_mb": state_bytes / MIB,
        "gradient_mb": params_bytes / MIB,
        "total_memory_mb": total / MIB,
        "multiplier": state_bytes / params_bytes,
        "resident_multiplier": (params_bytes + state_bytes) / params_bytes,
        "state_leaves": state_leaves,
        "method": "jax.eval_shape(optimizer.init)",
    }


# ---------------------------------------------------------------------------- whole run
def engine_device_arrays(problem: ProblemLike, kernel: str, dtype: str, *,
                         full_batch: bool = True) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of the arrays ``training.objectives.prepare`` puts on the device, as
    ``training.objectives.data_layout`` describes them (the engine's own account)."""
    return dict(data_layout(problem, dtype, kernel, full_batch=full_batch).device)


def _engine_objective(problem: ProblemLike, kernel: str, dtype: str) -> Any:
    """The engine's Objective for ``problem``, built by ``prepare`` on a few rows.

    The objective functions depend on the problem's kind and L2 only (the data
    are arguments), so a row subset (a view) gives the same functions without
    copying the data: 8 rows, or 2d for the quadratic kernel (its precondition).
    """
    rows = 2 * problem.X.shape[1] + 2 if kernel == "quadratic" else 8
    rows = min(rows, problem.X.shape[0])
    stand_in = dataclasses.replace(problem, X=problem.X[:rows], y=problem.y[:rows])
    return prepare(stand_in, dtype, kernel).objective


# Over 60 lines: the docstring states the model term by term and the result lists every term.
def estimate_training_memory(problem: ProblemLike, optimizer_type: Any = "adam", *,
                             epochs: int = 100, dtype: str = "float32",
                             batch_size: int | None = None, kernel: str = "auto",
                             hyperparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """Memory of ``training.run(problem, optimizer_type, epochs=..., dtype=..., ...)``.

    ``optimizer_type`` is a name (with ``hyperparams``) or an optax
    GradientTransformation, as ``training.run`` takes.

    Model (bytes; every term computed from shapes, none measured):

    * host data: the Problem's own ``X`` and ``y`` (held by the caller);
    * the copies the engine makes, from ``training.objectives.data_layout``: every device
      array that does not share the Problem's memory (``new_bytes``; on a CPU device an
      aligned X of the training dtype is shared, so a generic run makes no copy of X) and
      the host temporaries of the set-up (``host_temp_bytes``);
    * setup peak: host data + new bytes + host temporaries;
    * run peak: host data + the compiled program's ``argument + output - alias + temp``
      bytes from ``jit(program).lower(...).compile().memory_analysis()`` less the device
      arrays that are the host data itself (its arguments are the device data and
      parameters; its temporaries hold the optimizer state, gradients and every
      intermediate);
    * peak = max(setup peak, run peak) on a CPU device (one memory); on an
      accelerator the host peak is host data + temporaries and the device peak
      is the program's bytes.

    Left out: the XLA compiler's own working memory while compiling (measured
    at 30-60 MiB on CPU, independent of the data size) and allocator slack.

    Returns:
      A dict of the terms above (``*_bytes`` and ``total_memory_mb``), the optimizer
      breakdown (``params_bytes``, ``state_bytes``, ``gradient_bytes``), the
      kernel, and ``host_bytes`` / ``device_bytes`` / ``total_bytes``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs={epochs!r}: must be a positive integer")
    resolved = _check_dtype(dtype)
    _, _, factory = resolve_optimizer(optimizer_type, hyperparams)
    plan = batch_plan(problem.n_samples, batch_size)
    layout = data_layout(problem, resolved.name, kernel, full_batch=plan.full_batch)
    chosen = layout.kernel
    device_arrays = dict(layout.device)
    device_data_bytes = tree_bytes(device_arrays)
    shared_bytes = tree_bytes([device_arrays[name] for name in layout.shared])
    host_data_bytes = int(problem.X.nbytes + problem.y.nbytes)

    with precision(resolved.name):
        objective = _engine_objective(problem, chosen, resolved.name)
        program = build_program(objective, lambda hyper: factory(), epochs=int(epochs),
                                plan=plan, divergence_factor=1e6)
        params = jax.ShapeDtypeStruct(tuple(problem.param_shape), resolved)
        extra_keys = [key for key in device_arrays if key not in ("X", "y")]
        if chosen == "fused":
            extra: Any = device_arrays["X^T"]
        elif chosen in ("quadratic", "fused_nonzero"):
            extra = {key: device_arrays[key] for key in extra_keys}
        else:
            extra = ()
        data = TrainData(device_arrays["X"], device_arrays["y"], extra)
        seed = jax.ShapeDtypeStruct((), jnp.uint32)
        analysis = jax.jit(program).lower(params, data, seed, ()).compile().memory_analysis()
        state = jax.eval_shape(factory().init, params)

    program_bytes = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                     - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)
    setup_host = host_data_bytes + layout.host_temp_bytes
    setup_peak = setup_host + layout.new_bytes
    run_peak = host_data_bytes + program_bytes - shared_bytes
    on_cpu = jax.devices()[0].platform == "cpu"
    if on_cpu:
        host_bytes, device_bytes = max(setup_peak, run_peak), 0
        total = host_bytes
    else:
        host_bytes, device_bytes = setup_host, max(program_bytes, device_data_bytes)
        total = host_bytes + device_bytes
    params_bytes = tree_bytes(params)
    return {
        "kernel": chosen,
        "dtype": resolved.name,
        "n_samples": problem.n_samples,
        "n_features": problem.n_features,
        "host_data_bytes": host_data_bytes,
        "new_bytes": int(layout.new_bytes),
        "host_temp_bytes": int(layout.host_temp_bytes),
        "shared_arrays": list(layout.shared),
        "device_data_bytes": device_data_bytes,
        "device_arrays": {key: (tuple(v.shape), str(v.dtype)) for key, v in device_arrays.items()},
        "params_bytes": params_bytes,
        "state_bytes": tree_bytes(state),
        "gradient_bytes": params_bytes,
        "xla_argument_bytes": int(analysis.argument_size_in_bytes),
        "xla_output_bytes": int(analysis.output_size_in_bytes),
        "xla_alias_bytes": int(analysis.alias_size_in_bytes),
        "xla_temp_bytes": int(analysis.temp_size_in_bytes),
        "program_bytes": int(program_bytes),
        "setup_peak_bytes": setup_peak,
        "run_peak_bytes": run_peak,
        "peak_phase": "setup" if setup_peak >= run_peak else "run",
        "host_bytes": host_bytes,
        "device_bytes": device_bytes,
        "total_bytes": total,
        "total_memory_mb": total / MIB,
    }


# ---------------------------------------------------------------------------- tracker
class MemoryTracker:
    """Registry of named arrays plus the two estimates.

    Example::

        tracker = MemoryTracker()
        tracker.track_array("X_train", X_train)
        tracker.get_summary()["total_mb"]
        tracker.estimate_optimizer_memory(n_params=10_000, optimizer_type="adam")
    """

    def __init__(self) -> None:
        self._records: dict[str, ArrayRecord] = {}

    def track_array(self, name: str, array: Any) -> ArrayRecord:
        """Record ``array`` under ``name`` (a later call with the same name replaces it)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name={name!r}: give each tracked array a non-empty string name")
        record = array_record(name, array)
        self._records[name] = record
        return record

    def untrack(self, name: str) -> None:
        """Forget ``name``; KeyError naming the tracked names if it is unknown."""
        if name not in self._records:
            raise KeyError(f"{name!r} is not tracked; tracked: {sorted(self._records)}")
        del self._records[name]

    def get_summary(self) -> dict[str, Any]:
        """Totals over the tracked arrays.

        Keys: ``tracked_arrays`` (count), ``total_bytes`` / ``total_mb``
        (resident bytes), ``logical_bytes``, ``by_device`` (bytes per device),
        ``by_library`` (bytes per library), ``arrays`` (name -> record dict with
        ``mb``), ``largest`` (name of the largest array or None).
        """
        by_device: dict[str, int] = {}
        by_library: dict[str, int] = {}
        for record in self._records.values():
            by_library[record.library] = by_library.get(record.library, 0) + record.resident_bytes
            for device, nbytes in record.bytes_by_device.items():
                by_device[device] = by_device.get(device, 0) + nbytes
        total = sum(record.resident_bytes for record in self._records.values())
        largest = max(self._records.values(), key=lambda r: r.resident_bytes, default=None)
        return {
            "tracked_arrays": len(self._records),
            "total_bytes": total,
            "total_memory_mb": total / MIB,
            "logical_bytes": sum(record.logical_bytes for record in self._records.values()),
            "by_device": by_device,
            "by_library": by_library,
            "arrays": {name: {**record._asdict(), "mb": record.resident_bytes / MIB}
                       for name, record in self._records.items()},
            "largest": None if largest is None else largest.name,
        }

    @staticmethod
    def estimate_optimizer_memory(n_params: int, optimizer_type: str, dtype: Any = "float32",
                                  **hyperparams: Any) -> dict[str, Any]:
        """See :func:`estimate_optimizer_memory`."""
        return estimate_optimizer_memory(n_params, optimizer_type, dtype, **hyperparams)

    @staticmethod
    def estimate_training_memory(problem: ProblemLike, optimizer_type: str = "adam",
                                 **options: Any) -> dict[str, Any]:
        """See :func:`estimate_training_memory`."""
        return estimate_training_memory(problem, optimizer_type, **options)
