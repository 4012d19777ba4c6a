"""Problem -> engine Objective: the loss-and-gradient kernels the engine runs.

Every kernel computes exactly the Problem's objective and gradient (the
formulas of `optiscale_jax.problems`); they differ only in data layout and
precomputation, chosen for speed:

- "generic": `problem.loss` and `problem.grad` traced together (XLA shares X w).
- "fused" (logistic, softmax): one pass z = X w, then the gradient as X^T r with
  X^T stored once in row-major layout (a contiguous matrix-vector product; XLA's
  CPU `X.T @ r` on the original layout can be several times slower).
- "fused_nonzero" (logistic, softmax; "auto" picks it when some column of X is zero
  in every row, e.g. MNIST's 116 blank pixels): the same two passes over only the
  nonzero columns, X_nz = X[:, nz]: z = X_nz w[nz], grad[nz] = r^T X_nz / n, and
  grad = l2 w on the zero columns (their data gradient is exactly 0). Fewer bytes read
  per epoch, same function.
- "quadratic" (least squares, ridge, when d <= n/2): with H = X^T X / n,
  w_ref = a float64 point near the optimum (Cholesky solve of (H + s I) w = X^T y / n on the
  d x d matrix, s = max(l2, 1e-10 tr(H)/d): the exact optimum for ridge), g_ref = grad f_data(w_ref)
  and f_ref = f_data(w_ref), all computed once on the host in float64,
      f(w)      = f_ref + g_ref . (w - w_ref) + (w - w_ref)^T H (w - w_ref) / 2 + (l2/2)||w||^2
      grad f(w) = g_ref + H (w - w_ref) + l2 w
  which is the same quadratic (Taylor expansion is exact), costs O(d^2) instead
  of O(n d) per evaluation, and is centred at w_ref so float32 keeps its digits.
Mini-batch steps always use the Problem's own loss/gradient on the gathered rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import psutil
import scipy.linalg

from optiscale_jax.datasets import as_aligned, empty_aligned, is_aligned
from optiscale_jax.problems import ProblemLike
from optiscale_jax.training.engine import Objective, TrainData, default_device

KERNELS: tuple[str, ...] = ("auto", "generic", "fused", "fused_nonzero", "quadratic")
QUADRATIC_MAX_FEATURES = 4096


class PreparedObjective(NamedTuple):
    """An Objective, the device data it reads, the kernel chosen and its host setup time."""
    objective: Objective
    data: TrainData
    kernel: str
    setup_time_s: float


def _generic(problem: ProblemLike) -> Objective:
    def value_and_grad(w: jax.Array, X: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return problem.loss(w, X, y, xp=jnp), problem.grad(w, X, y, xp=jnp)

    def full(w: jax.Array, data: TrainData) -> tuple[jax.Array, jax.Array]:
        return value_and_grad(w, data.X, data.y)

    return Objective(value_and_grad, full)


def _l2_terms(w: jax.Array, l2: float) -> tuple[jax.Array, jax.Array]:
    if not l2:
        return jnp.zeros((), w.dtype), jnp.zeros_like(w)
    return 0.5 * l2 * jnp.sum(w * w), l2 * w


def _logistic_pieces(z: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean logistic loss of the margins z = X w and the residual sigmoid(z) - y."""
    y = labels.astype(z.dtype)
    loss = jnp.mean(jnp.logaddexp(0.0, z) - y * z)
    return loss, 0.5 * (1.0 + jnp.tanh(0.5 * z)) - y


def _softmax_pieces(z: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy of the logits z = X W (n, k) and the residual softmax(z) - onehot(y)."""
    log_p = jax.nn.log_softmax(z, axis=1)
    onehot = jax.nn.one_hot(labels, z.shape[1], dtype=z.dtype)
    return -jnp.sum(onehot * log_p) / z.shape[0], jnp.exp(log_p) - onehot


def _pieces(problem: ProblemLike) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    return _logistic_pieces if problem.kind == "logistic" else _softmax_pieces


def _fused(problem: ProblemLike) -> Objective:
    """Loss from one pass z = X w; gradient X^T r / n with X^T stored once (`data.extra`)."""
    pieces = _pieces(problem)

    def full(w: jax.Array, data: TrainData) -> tuple[jax.Array, jax.Array]:
        loss, residual = pieces(data.X @ w, data.y)
        grad = (data.extra @ residual) / data.X.shape[0]
        l2_loss, l2_grad = _l2_terms(w, problem.l2)
        return loss + l2_loss, grad + l2_grad

    return Objective(_generic(problem).batch_value_and_grad, full)


def _fused_nonzero(problem: ProblemLike) -> Objective:
    """As `_fused` over the columns of X that are not all zero; the others' data gradient is 0."""
    pieces = _pieces(problem)

    def full(w: jax.Array, data: TrainData) -> tuple[jax.Array, jax.Array]:
        columns, X_nonzero = data.extra["columns"], data.extra["X_nonzero"]
        loss, residual = pieces(X_nonzero @ w[columns], data.y)
        # r @ X for a vector residual (no transpose materialised); X^T R for a matrix one.
        data_grad = residual @ X_nonzero if residual.ndim == 1 else X_nonzero.T @ residual
        grad = jnp.zeros_like(w).at[columns].set(data_grad / data.X.shape[0])
        l2_loss, l2_grad = _l2_terms(w, problem.l2)
        return loss + l2_loss, grad + l2_grad

    return Objective(_generic(problem).batch_value_and_grad, full)


def nonzero_columns(X: np.ndarray) -> np.ndarray:
    """Indices (int32) of the columns of X with at least one nonzero entry."""
    return np.flatnonzero(np.any(np.asarray(X) != 0, axis=0)).astype(np.int32)


def quadratic_centre(hessian: np.ndarray, b: np.ndarray, l2: float) -> np.ndarray:
    """A float64 point near argmin of w^T H w / 2 - b^T w + (l2/2)||w||^2: Cholesky of H + s I.

    s = max(l2, 1e-10 tr(H)/d), so for ridge (l2 > 0) the point is the exact optimum and for
    least squares a minimiser up to a 1e-10 relative shift (H may be singular). O(d^3/3) on
    the d x d matrix already formed, instead of an O(n d^2) SVD least-squares solve of X.
    Any centre gives the same quadratic exactly; a near-optimal one keeps float32's digits.
    """
    d = hessian.shape[0]
    scale = max(float(np.trace(hessian)) / max(d, 1), np.finfo(np.float64).tiny)
    for relative in (1e-10, 1e-6, 1e-2):
        try:
            factor = scipy.linalg.cho_factor(hessian + max(l2, relative * scale) * np.eye(d))
        except np.linalg.LinAlgError:
            continue
        return scipy.linalg.cho_solve(factor, b)
    return np.zeros(d)


_BLOCK_VALUES = 1 << 22   # entries of X per block of the host passes (32 MiB in float64)


def _row_blocks(X: np.ndarray, y: np.ndarray):
    """(X rows, y rows) in float64, blocks of ~_BLOCK_VALUES entries: float32 data never
    needs a float64 copy of the whole X."""
    step = max(1, _BLOCK_VALUES // max(X.shape[1], 1))
    for start in range(0, X.shape[0], step):
        yield (np.asarray(X[start:start + step], np.float64),
               np.asarray(y[start:start + step], np.float64))


def _quadratic_extra(problem: ProblemLike) -> dict[str, np.ndarray]:
    """H = X^T X / n, the centre w_ref, g_ref = grad f_data(w_ref), f_ref = f_data(w_ref),
    in float64 from two blocked passes over X."""
    n, d = problem.X.shape
    gram, xty = np.zeros((d, d)), np.zeros(d)
    for block, y_block in _row_blocks(problem.X, problem.y):
        gram += block.T @ block
        xty += y_block @ block
    hessian = gram / n
    w_ref = quadratic_centre(hessian, xty / n, float(problem.l2))
    g_sum, r_squares = np.zeros(d), 0.0
    for block, y_block in _row_blocks(problem.X, problem.y):
        residual = block @ w_ref - y_block
        g_sum += residual @ block
        r_squares += float(np.sum(residual * residual))
    return {"hessian": hessian, "w_ref": w_ref, "g_ref": g_sum / n,
            "f_ref": np.asarray(0.5 * r_squares / n)}


def _quadratic(problem: ProblemLike) -> Objective:
    def full(w: jax.Array, data: TrainData) -> tuple[jax.Array, jax.Array]:
        q = data.extra
        delta = w - q["w_ref"]
        h_delta = q["hessian"] @ delta
        loss = q["f_ref"] + q["g_ref"] @ delta + 0.5 * (delta @ h_delta)
        l2_loss, l2_grad = _l2_terms(w, problem.l2)
        return loss + l2_loss, q["g_ref"] + h_delta + l2_grad

    return Objective(_generic(problem).batch_value_and_grad, full)


MEMORY_MARGIN_BYTES = 256 * 2**20   # kept free beyond the arrays a run places
MEMORY_MARGIN_FRACTION = 0.9         # of the available memory, at most


def available_bytes() -> int:
    """Memory a run may still allocate: the host's available memory on a CPU device; on an
    accelerator its free memory when the runtime reports it, else the host's."""
    device = default_device()
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return int(psutil.virtual_memory().available)


def _fits(n_bytes: int) -> bool:
    return n_bytes + MEMORY_MARGIN_BYTES <= MEMORY_MARGIN_FRACTION * available_bytes()


def choose_kernel(problem: ProblemLike, kernel: str = "auto", dtype: str = "float32") -> str:
    """The kernel `kernel` resolves to for `problem` (ValueError if it does not apply).

    "auto": "quadratic" for least squares / ridge with d <= n/2 (and d <= 4096); for
    logistic / softmax "fused" (the fastest: 2.28 vs 2.76 ms/epoch for "fused_nonzero" on
    MNIST-10k here) when its second copy of X (X^T, n d values in `dtype`) fits in memory,
    else "fused_nonzero" when X has all-zero columns and its smaller copy fits, else
    "generic" (no second copy); "generic" for everything else.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r} is unknown; choose one of: {', '.join(KERNELS)}")
    n, d = problem.X.shape
    quadratic_ok = problem.kind in ("least_squares", "ridge") and \
        d <= n // 2 and d <= QUADRATIC_MAX_FEATURES
    fused_ok = problem.kind in ("logistic", "softmax")
    if kernel == "auto":
        if quadratic_ok:
            return "quadratic"
        if fused_ok:
            itemsize = np.dtype(dtype).itemsize
            if _fits(n * d * itemsize):
                return "fused"
            d_nonzero = int(nonzero_columns(problem.X).size)
            if d_nonzero < d and _fits(n * d_nonzero * itemsize):
                return "fused_nonzero"
        return "generic"
    if kernel == "quadratic" and not quadratic_ok:
        raise ValueError(
            f"kernel='quadratic' needs a least_squares/ridge problem with d <= n/2 and "
            f"d <= {QUADRATIC_MAX_FEATURES} (got kind={problem.kind!r}, n={n}, d={d}); "
            "use kernel='auto' or 'generic'")
    if kernel in ("fused", "fused_nonzero") and not fused_ok:
        raise ValueError(f"kernel={kernel!r} is for logistic/softmax problems (got "
                         f"{problem.kind!r}); use kernel='auto' or 'generic'")
    return kernel


def check_memory(layout: DataLayout, extra_bytes: int = 0) -> None:
    """MemoryError before any allocation when the copies `layout` makes (plus `extra_bytes`,
    e.g. the program's own temporaries) would not fit with the margin."""
    needed = layout.new_bytes + layout.host_temp_bytes + int(extra_bytes)
    available = available_bytes()
    if needed + MEMORY_MARGIN_BYTES <= MEMORY_MARGIN_FRACTION * available:
        return
    gib = 2.0**30
    parts = ", ".join(f"{name} {_nbytes(spec) / gib:.2f} GiB" for name, spec in
                      layout.device.items() if name not in layout.shared and _nbytes(spec) > 2**20)
    raise MemoryError(
        f"this run needs {needed / gib:.2f} GiB of new memory ({parts or 'small arrays'}; "
        f"host temporaries {layout.host_temp_bytes / gib:.2f} GiB; program "
        f"{int(extra_bytes) / gib:.2f} GiB) but only {available / gib:.2f} GiB is available "
        f"(keeping {MEMORY_MARGIN_BYTES / 2**20:.0f} MiB and {1 - MEMORY_MARGIN_FRACTION:.0%} "
        f"free); kernel {layout.kernel!r}. Fix: pass X as an aligned C-contiguous array of the "
        "training dtype (optiscale_jax.datasets.as_aligned(X, 'float32')) so the CPU device "
        "shares it, use kernel='generic' (no second copy of X), dtype='float32', or fewer rows")


class DataLayout(NamedTuple):
    """The arrays `prepare` places for a kernel and the memory they take, from shapes only.

    device: name -> ShapeDtypeStruct of every array the program reads ("X", "y", then the
      kernel's extras: "X^T"; "columns", "X_nonzero"; "hessian", "w_ref", "g_ref", "f_ref").
      In a full-batch quadratic run X is not read and is a (0, d) placeholder.
    shared: names of device arrays that use the Problem's own host memory (CPU device,
      C-contiguous, 64-byte aligned, already of the training dtype): no copy is made.
    new_bytes: bytes of every array `prepare` allocates and keeps (device arrays that are
      not shared; on a CPU device these are host memory).
    host_temp_bytes: peak bytes of host temporaries that `prepare` frees before returning
      (the float64 blocks of the quadratic set-up, a cast staging copy on an accelerator).
    """
    kernel: str
    device: dict[str, jax.ShapeDtypeStruct]
    shared: tuple[str, ...]
    new_bytes: int
    host_temp_bytes: int


def _on_cpu() -> bool:
    return default_device().platform == "cpu"


def _shares(array: np.ndarray, dtype: np.dtype) -> bool:
    """Whether `jax.device_put` will use `array`'s memory (see `datasets.is_aligned`)."""
    return _on_cpu() and array.dtype == dtype and is_aligned(array)


def _label_dtype(problem: ProblemLike, float_dtype: np.dtype) -> np.dtype:
    if problem.kind == "softmax":
        return np.dtype(np.int64 if float_dtype.itemsize == 8 else np.int32)
    return float_dtype


def data_layout(problem: ProblemLike, dtype: str, kernel: str = "auto", *,
                full_batch: bool = True) -> DataLayout:
    """What `prepare(problem, dtype, kernel, full_batch=...)` places, without placing it.

    profiling's memory model reads this; a test checks it against `prepare`'s real arrays.
    """
    chosen = choose_kernel(problem, kernel, dtype)
    n, d = problem.X.shape
    float_dtype = np.dtype(dtype)
    skip_X = chosen == "quadratic" and full_batch
    device = {"X": jax.ShapeDtypeStruct((0, d) if skip_X else (n, d), float_dtype),
              "y": jax.ShapeDtypeStruct((n,), _label_dtype(problem, float_dtype))}
    temp = 0
    if chosen == "fused":
        device["X^T"] = jax.ShapeDtypeStruct((d, n), float_dtype)
    elif chosen == "fused_nonzero":
        d_nonzero = int(nonzero_columns(problem.X).size)
        device["columns"] = jax.ShapeDtypeStruct((d_nonzero,), np.dtype(np.int32))
        device["X_nonzero"] = jax.ShapeDtypeStruct((n, d_nonzero), float_dtype)
    elif chosen == "quadratic":
        device.update({"hessian": jax.ShapeDtypeStruct((d, d), float_dtype),
                       "w_ref": jax.ShapeDtypeStruct((d,), float_dtype),
                       "g_ref": jax.ShapeDtypeStruct((d,), float_dtype),
                       "f_ref": jax.ShapeDtypeStruct((), float_dtype)})
        block_rows = min(n, max(1, _BLOCK_VALUES // max(d, 1)))
        temp = 8 * (2 * d * d + block_rows * (d + 2))    # float64 gram + hessian, one block
    shared = ("X",) if not skip_X and _shares(np.asarray(problem.X), float_dtype) else ()
    new_bytes = sum(_nbytes(v) for k, v in device.items() if k not in shared)
    if not _on_cpu() and not skip_X and np.asarray(problem.X).dtype != float_dtype:
        temp = max(temp, n * d * float_dtype.itemsize)    # cast staging copy before the transfer
    return DataLayout(chosen, device, shared, new_bytes, temp)


def _nbytes(spec: jax.ShapeDtypeStruct) -> int:
    return int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize


def place(array: Any, dtype: Any) -> jax.Array:
    """`array` on the default device in `dtype`, with at most one copy.

    An aligned C-contiguous host array already of `dtype` is handed to `jax.device_put`
    as is (on a CPU device JAX then uses its memory: no copy at all); otherwise one aligned
    host copy is made in `dtype` (cast in row blocks) and placed (on a CPU device the copy
    becomes the device array; on an accelerator it is freed after the transfer).
    """
    host = np.asarray(array)
    target = np.dtype(dtype)
    if target == np.float64 and not jax.config.jax_enable_x64:
        raise ValueError("placing float64 data needs 64-bit JAX: call inside "
                         "engine.precision('float64')")
    return jax.device_put(as_aligned(host, target), default_device())


def prepare(problem: ProblemLike, dtype: str, kernel: str = "auto", *,
            full_batch: bool = True) -> PreparedObjective:
    """The Objective for `problem` and its data on the default device, cast to `dtype`.

    One copy of X at most (see `place` and `data_layout`); X is not placed at all when the
    kernel does not read it (full-batch quadratic). Call inside `engine.precision(dtype)`
    for float64.
    """
    layout = data_layout(problem, dtype, kernel, full_batch=full_batch)
    chosen = layout.kernel
    start = time.perf_counter()
    X = np.asarray(problem.X)
    y = np.asarray(problem.y)
    y = y.astype(np.dtype(layout.device["y"].dtype))
    extra: Any = ()
    if chosen == "quadratic":
        extra = {key: place(value, dtype) for key, value in _quadratic_extra(problem).items()}
        objective = _quadratic(problem)
    elif chosen == "fused":
        transposed = empty_aligned((X.shape[1], X.shape[0]), dtype)
        transposed[...] = X.T                          # one copy, already cast
        extra = place(transposed, dtype)
        del transposed
        objective = _fused(problem)
    elif chosen == "fused_nonzero":
        columns = nonzero_columns(X)
        X_nonzero = empty_aligned((X.shape[0], columns.size), dtype)
        step = max(1, _BLOCK_VALUES // max(X.shape[1], 1))
        for row in range(0, X.shape[0], step):            # gather and cast in row blocks
            X_nonzero[row:row + step] = X[row:row + step][:, columns]
        extra = {"columns": place(columns, np.int32), "X_nonzero": place(X_nonzero, dtype)}
        objective = _fused_nonzero(problem)
    else:
        objective = _generic(problem)
    device_X = place(X if layout.device["X"].shape[0] else np.empty((0, X.shape[1])), dtype)
    data = jax.block_until_ready(TrainData(device_X, place(y, y.dtype), extra))
    return PreparedObjective(objective, data, chosen, time.perf_counter() - start)
