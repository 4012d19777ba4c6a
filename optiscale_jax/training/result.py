"""The record of one run (`RunResult`) and the pure functions that summarise a curve.

Relative suboptimality of a loss value f is `(f - f*) / max(|f*|, TINY)`.
`epochs_to[level]` is the first epoch count t (0 = the initial point) whose
end-of-epoch loss has relative suboptimality <= level, or None if never.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

LEVELS: tuple[float, ...] = (1e-2, 1e-4, 1e-6)
TINY: float = 1e-30
STATUSES: tuple[str, ...] = ("converged", "max_epochs", "diverged")


def level_key(level: float) -> str:
    """Dictionary key of a level: 1e-2 -> "1e-2"."""
    return f"{level:.0e}".replace("e-0", "e-").replace("e+0", "e+")


def relative_suboptimality(loss: np.ndarray | float, f_star: float) -> np.ndarray:
    """(loss - f*) / max(|f*|, TINY), in float64."""
    return (np.asarray(loss, np.float64) - f_star) / max(abs(f_star), TINY)


def logged_epochs(epochs: int, eval_every: int = 1) -> np.ndarray:
    """The epoch counts whose end-of-epoch objective a run records: every `eval_every`-th
    epoch and always the last one (1..epochs when eval_every = 1)."""
    marks = np.arange(eval_every, epochs + 1, eval_every, dtype=np.int64)
    return marks if marks.size and marks[-1] == epochs else np.append(marks, epochs)


def epochs_to_levels(initial_loss: float, train_loss: np.ndarray, f_star: float | None,
                     levels: tuple[float, ...] = LEVELS,
                     epochs: np.ndarray | None = None) -> dict[str, int | None]:
    """First epoch count reaching each relative-suboptimality level (None if never or f* unknown).

    `epochs`: the epoch count of each entry of `train_loss` (default 1, 2, ...); with a sparse
    curve the answer is the first recorded epoch at the level.
    """
    if f_star is None:
        return {level_key(level): None for level in levels}
    marks = np.arange(1, len(train_loss) + 1) if epochs is None else np.asarray(epochs)
    marks = np.concatenate([[0], marks])
    curve = relative_suboptimality(np.concatenate([[initial_loss], train_loss]), f_star)
    out: dict[str, int | None] = {}
    for level in levels:
        hits = np.flatnonzero(curve <= level)
        out[level_key(level)] = int(marks[hits[0]]) if hits.size else None
    return out


def run_status(diverged: bool, final_loss: float, final_grad_norm: float,
               f_star: float | None, tol: float, grad_tol: float | None) -> str:
    """"diverged" if divergence was detected; "converged" if at the end of the run the
    relative suboptimality is <= tol (f* known) or the gradient norm is <= grad_tol
    (when given); otherwise "max_epochs"."""
    if diverged:
        return "diverged"
    if f_star is not None and float(relative_suboptimality(final_loss, f_star)) <= tol:
        return "converged"
    if grad_tol is not None and final_grad_norm <= grad_tol:
        return "converged"
    return "max_epochs"


def to_json_value(value: Any, *, other: Callable[[Any], Any] | None = None) -> Any:
    """`value` as plain JSON types, with one spelling per value (the project's one encoder).

    Floats keep their shortest round-trip `repr` (so 1e-3 and 0.001 are the same);
    non-finite floats become the strings "NaN", "Infinity", "-Infinity" (strict JSON,
    `json.dumps(..., allow_nan=False)` accepts the result); bools stay bools; NumPy
    scalars and arrays become Python numbers and (nested) lists; paths become strings;
    mappings become dicts with string keys; other sequences become lists. Any other
    object is passed to `other` (e.g. `repr` for a learning-rate schedule); without
    `other` it raises TypeError naming the value.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v, other=other) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return to_json_value(value.item(), other=other)
        return [to_json_value(v, other=other) for v in value.tolist()]
    if isinstance(value, Sequence):
        return [to_json_value(v, other=other) for v in value]
    if other is not None:
        return other(value)
    raise TypeError(
        f"cannot write a value of type {type(value).__name__} ({value!r}) as JSON; "
        "use numbers, strings, booleans, lists or dicts")


def jsonable(value: Any) -> Any:
    """`to_json_value(value)` with any other object (a schedule) as its `repr`: safe for
    `json.dumps` (non-finite floats spelled "NaN", "Infinity", "-Infinity")."""
    return to_json_value(value, other=repr)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """One training run.

    Attributes:
      params: final parameters (np.ndarray, or a pytree of them for `run_objective`; the
        last accepted ones if the run diverged). For a schedule-free transform (its state
        holds an `optax.contrib.ScheduleFreeState`, e.g. `optax.contrib.schedule_free_adamw`)
        these are its evaluation point x = `optimizers.eval_params(spec, state, y)`
        (`optax.contrib.schedule_free_eval_params`), not the iterate y it trains at.
      train_loss: full objective f(w_t) at the end of each recorded epoch t (every epoch
        1..epochs by default; `logged_epochs` when eval_every > 1); w_t is the iterate the
        optimizer steps from (schedule-free: y_t), also for the divergence check.
      suboptimality: train_loss - f* per epoch (None when f* is unknown).
      grad_norm: ||grad f(w_t)||_2 of the full objective at the end of each epoch.
      epochs_to: {"1e-2": t | None, "1e-4": ..., "1e-6": ...}, relative suboptimality levels.
      status: "converged" | "max_epochs" | "diverged".
      compile_time_s: seconds to trace and compile the program (0 for reference loops).
      run_time_s: seconds of the run itself, blocking, compile excluded.
      time_per_epoch_s: run_time_s / epochs.
      backend, device, dtype, epochs: where and how it ran.
      initial_loss, initial_grad_norm: f(w_0) and ||grad f(w_0)||.
      diverged_epoch: the epoch whose end point was rejected as diverged (None if not).
      f_star: the optimum used for suboptimality (None if unknown).
      optimizer, hyperparams, batch_size, seed: what ran.
      setup_time_s: host time before compiling: checks, data layout and precomputation,
        transfers (also sent to `training.events` as ("setup", seconds)).
      kernel: the loss-and-gradient kernel the engine used (see `objectives.py`).
      eval_every: the full objective was recorded every `eval_every` epochs (and at the end).
      eval_loss, eval_grad_norm: f(params) and ||grad f(params)||_2 when `params` is not the
        last training iterate (schedule-free: at x); None otherwise. `final_loss`,
        `final_grad_norm` and `status` use them when set.
    """

    params: np.ndarray
    train_loss: np.ndarray
    suboptimality: np.ndarray | None
    grad_norm: np.ndarray
    epochs_to: dict[str, int | None]
    status: str
    compile_time_s: float
    run_time_s: float
    time_per_epoch_s: float
    backend: str
    device: str
    dtype: str
    epochs: int
    initial_loss: float = float("nan")
    initial_grad_norm: float = float("nan")
    diverged_epoch: int | None = None
    f_star: float | None = None
    optimizer: str = ""
    hyperparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int | None = None
    seed: int = 0
    setup_time_s: float = 0.0
    kernel: str = ""
    eval_every: int = 1
    eval_loss: float | None = None
    eval_grad_norm: float | None = None

    @property
    def logged_epochs(self) -> np.ndarray:
        """The epoch count of each entry of `train_loss` / `grad_norm`."""
        return logged_epochs(self.epochs, self.eval_every)

    @property
    def final_loss(self) -> float:
        """f(params): `eval_loss` when set (schedule-free), else the loss at the end of the last epoch."""
        if self.eval_loss is not None:
            return self.eval_loss
        return float(self.train_loss[-1]) if len(self.train_loss) else self.initial_loss

    @property
    def final_grad_norm(self) -> float:
        """||grad f(params)||_2: `eval_grad_norm` when set, else the last recorded one."""
        if self.eval_grad_norm is not None:
            return self.eval_grad_norm
        return float(self.grad_norm[-1]) if len(self.grad_norm) else self.initial_grad_norm

    @property
    def relative_suboptimality(self) -> np.ndarray | None:
        """(f - f*) / max(|f*|, TINY) per epoch, or None when f* is unknown."""
        if self.f_star is None:
            return None
        return relative_suboptimality(self.train_loss, self.f_star)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (arrays become lists)."""
        return {field.name: jsonable(getattr(self, field.name))
                for field in dataclasses.fields(self)}


def _host_params(params: Any) -> Any:
    """A single array as np.ndarray; a pytree of arrays as the same pytree of np.ndarrays."""
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(params)):
        return np.asarray(params)
    return jax.tree.map(np.asarray, params)


def make_result(*, params: np.ndarray, initial_loss: float, initial_grad_norm: float,
                train_loss: np.ndarray, grad_norm: np.ndarray, diverged_epoch: int | None,
                f_star: float | None, tol: float, grad_tol: float | None,
                compile_time_s: float, run_time_s: float, backend: str, device: str,
                dtype: str, optimizer: str, hyperparams: dict[str, Any],
                batch_size: int | None, seed: int, epochs: int | None = None,
                eval_every: int = 1, eval_loss: float | None = None,
                eval_grad_norm: float | None = None) -> RunResult:
    """Assembles a RunResult from host arrays, deriving suboptimality, epochs_to, status.

    `epochs`: the epochs run (default: one per entry of `train_loss`); `eval_every`: the
    curve holds `logged_epochs(epochs, eval_every)`. `eval_loss`, `eval_grad_norm`: f and
    ||grad f|| at `params` when they are not the last iterate (the status uses them).
    """
    train_loss = np.asarray(train_loss)
    grad_norm = np.asarray(grad_norm)
    epochs = int(train_loss.shape[0]) if epochs is None else int(epochs)
    final_loss = float(train_loss[-1]) if epochs else float(initial_loss)
    final_grad = float(grad_norm[-1]) if epochs else float(initial_grad_norm)
    if eval_loss is not None:
        final_loss, final_grad = float(eval_loss), float(eval_grad_norm)
    return RunResult(
        params=_host_params(params),
        train_loss=train_loss,
        suboptimality=None if f_star is None else train_loss.astype(np.float64) - f_star,
        grad_norm=grad_norm,
        epochs_to=epochs_to_levels(float(initial_loss), train_loss, f_star,
                                   epochs=logged_epochs(epochs, eval_every) if epochs else None),
        status=run_status(diverged_epoch is not None, final_loss, final_grad, f_star, tol,
                          grad_tol),
        compile_time_s=float(compile_time_s),
        run_time_s=float(run_time_s),
        time_per_epoch_s=float(run_time_s) / max(epochs, 1),
        backend=backend, device=device, dtype=dtype, epochs=epochs,
        initial_loss=float(initial_loss), initial_grad_norm=float(initial_grad_norm),
        diverged_epoch=diverged_epoch, f_star=None if f_star is None else float(f_star),
        optimizer=optimizer, hyperparams=dict(hyperparams), batch_size=batch_size,
        seed=int(seed), eval_every=int(eval_every),
        eval_loss=None if eval_loss is None else float(eval_loss),
        eval_grad_norm=None if eval_grad_norm is None else float(eval_grad_norm))
