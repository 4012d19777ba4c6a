"""The typed record of one benchmark run (`RunRecord`) and its status (`RunStatus`).

A record is built once by the runner, written to the results store with
:meth:`RunRecord.to_json` and read back with :meth:`RunRecord.from_json`;
the report, the plots and the progress lines read its attributes. Every field
carries its meaning and unit in ``metadata["doc"]``; :func:`schema_markdown`
renders them as the table in docs/benchmark.md (a test checks that the page
holds exactly that table). JSON spelling: :func:`identity.to_json_value`
(non-finite floats as ``"NaN"``, ``"Infinity"``, ``"-Infinity"``); fields
that are None and marked optional are left out of the JSON. Keys a record does
not know (written by another version) are kept in ``extra`` and written back.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from optiscale_jax.benchmark.identity import to_json_value

__all__ = ["RunRecord", "RunStatus", "schema_markdown"]


class RunStatus(enum.StrEnum):
    """How a run ended."""

    CONVERGED = "converged"    # relative suboptimality (run's own dtype) <= 1e-6 at the end
    MAX_EPOCHS = "max_epochs"  # ran every epoch without converging
    DIVERGED = "diverged"      # the loss became non-finite or blew up (parameters frozen)
    FAILED = "failed"          # the run raised; the message is in ``error``


def _f(doc: str, default: Any = None, *, optional: bool = False, factory: Any = None) -> Any:
    """A dataclass field with its documentation (and whether None is left out of the JSON)."""
    meta = {"doc": doc, "optional": optional}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class RunRecord:
    """One run of a benchmark campaign (see the module docstring)."""

    # -- what was run (the identity's inputs)
    identity: str = _f("SHA-256 of the run's definition (data, problem, optimizer, hyperparameters, "
                       "backend, dtype, seed, epochs, batch size); the store's key")
    dataset: str = _f("data set name as shown in the report")
    category: str = _f("report section: classification, regression, high_dimensional, "
                       "extreme_conditioning")
    problem: str = _f("objective: least_squares, ridge, logistic, softmax")
    l2: float = _f("L2 weight of the objective")
    optimizer: str = _f("optimizer name or spec (e.g. adam, optax:lion, pkg.mod:factory)")
    label: str = _f("the run's name in the report")
    hyperparameters: dict = _f("hyperparameters as configured", factory=dict)
    backend: str = _f("jax (compiled engine), numpy or cupy (reference loop)")
    dtype: str = _f("float32 or float64")
    seed: int = _f("the campaign's seed")
    epochs: int = _f("maximum number of epochs")
    batch_size: int | None = _f("mini-batch size; null = full batch")
    data_fingerprint: str = _f("BLAKE2b hash of the data arrays")
    dataset_info: dict = _f("the data set's metadata: sizes, condition number of the training "
                            "rows, source, ...", factory=dict)
    optimizer_info: dict | None = _f(
        "the optimizer's identity: import path, package version, full hyperparameters, state "
        "bytes per parameter", optional=True)
    plan_position: int | None = _f("position of the run in its campaign's plan (report order)",
                                   optional=True)
    # -- provenance
    environment_id: str | None = _f("key into the file's environments")
    started_at: str | None = _f("UTC start time, ISO 8601")
    finished_at: str | None = _f("UTC end time, ISO 8601")
    wall_time_s: float | None = _f("seconds from start to end of the run, f* and set-up included")
    # -- outcome
    status: RunStatus = _f("converged, max_epochs, diverged or failed", RunStatus.FAILED)
    error: str | None = _f("exception type and message of a failed run", optional=True)
    traceback: str | None = _f("the failed run's traceback (last 8 frames)", optional=True)
    f_star: float | None = _f("exact optimum of the training objective (float64)", optional=True)
    f_star_method: str | None = _f("how f* was solved", optional=True)
    f_star_grad_norm: float | None = _f("gradient norm at the solved optimum", optional=True)
    f_star_from_cache: bool | None = _f("whether f* came from the optimum cache", optional=True)
    run_seed: int | None = _f("seed of the run's mini-batch order, derived from seed, data, "
                              "optimizer", optional=True)
    tuning: dict | None = _f("--tune: grid, final losses, statuses, best rate, sweep times",
                             optional=True)
    hyperparameters_run: dict | None = _f("--tune: the hyperparameters the timed run used",
                                          optional=True)
    converged: bool | None = _f("status == converged", optional=True)
    device: str | None = _f("device the run's arrays lived on", optional=True)
    hyperparameters_full: dict | None = _f("every hyperparameter value the optimizer used",
                                           optional=True)
    epochs_run: int | None = _f("epochs actually run", optional=True)
    diverged_epoch: int | None = _f("epoch at which divergence was detected; null if none")
    run_time_s: float | None = _f("seconds of the training run, compile excluded, blocking",
                                  optional=True)
    compile_time_s: float | None = _f("seconds of compilation (null for the NumPy/CuPy loop)",
                                      optional=True)
    time_per_epoch_s: float | None = _f("run_time_s / epochs_run", optional=True)
    initial_loss: float | None = _f("objective at the starting point (run's dtype)", optional=True)
    final_loss: float | None = _f("objective of the final parameters evaluated in float64",
                                  optional=True)
    final_loss_recorded: float | None = _f("the run's own final objective value, in its dtype "
                                           "(the curve's last point)", optional=True)
    suboptimality: float | None = _f("final_loss - f_star", optional=True)
    relative_suboptimality: float | None = _f("(final_loss - f*) / |f*|", optional=True)
    relative_suboptimality_recorded: float | None = _f(
        "(final_loss_recorded - f*) / |f*|: the curve's last point", optional=True)
    final_grad_norm: float | None = _f("gradient norm after the last epoch", optional=True)
    epochs_to: dict | None = _f("first epoch reaching relative suboptimality 1e-2, 1e-4, 1e-6 "
                                "(null = never)", optional=True)
    peak_memory_mb: float | None = _f("process high-water mark during the run (MiB)",
                                      optional=True)
    peak_memory_source: str | None = _f("how peak memory was measured", optional=True)
    peak_memory_increase_mb: float | None = _f("peak minus resident memory at the run's start "
                                               "(MiB)", optional=True)
    optimizer_state_bytes: int | None = _f("bytes of the optimizer state (jax.eval_shape of init)",
                                           optional=True)
    optimizer_state_mb: float | None = _f("optimizer_state_bytes / 2**20", optional=True)
    setup_time_s: float | None = _f("engine set-up seconds (outside run_time_s)", optional=True)
    kernel: str | None = _f("engine kernel that ran (empty for the reference loop)",
                            optional=True)
    curve: dict | None = _f("per logged epoch: epoch, time_s, train_loss (run's dtype), "
                            "relative_suboptimality (<= 400 log-spaced points)", optional=True)
    gpu_peak_memory_mb: float | None = _f("GPU memory high-water mark (MiB)", optional=True)
    gpu_memory_source: str | None = _f("how GPU memory was measured", optional=True)
    test_metric: str | None = _f("error_rate (classification) or mse (regression)",
                                 optional=True)
    test_accuracy: float | None = _f("held-out accuracy (classification)", optional=True)
    test_error: float | None = _f("held-out misclassification rate", optional=True)
    test_mse: float | None = _f("held-out mean squared error (regression)", optional=True)
    test_loss: float | None = _f("objective on the held-out split", optional=True)
    extra: dict = _f("keys this version does not know, kept as read", factory=dict)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON values (one spelling per value; see the module docstring)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            if field.name == "extra":
                continue
            value = getattr(self, field.name)
            if value is None and field.metadata["optional"]:
                continue
            out[field.name] = value.value if isinstance(value, RunStatus) else value
        out.update(self.extra)
        return to_json_value(out)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """The record from its JSON (decoded floats); unknown keys go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        if "identity" not in known:
            raise ValueError("a run record needs an 'identity' (see run_identity)")
        known["status"] = RunStatus(known.get("status", RunStatus.FAILED))
        return cls(**known, extra=extra)

    def __getitem__(self, key: str) -> Any:
        """``record["final_loss"]``: the attribute (status as its string), or an extra key;
        kept so that code written against the former dict records keeps working."""
        names = {f.name for f in dataclasses.fields(self)}
        if key in names and key != "extra":
            value = getattr(self, key)
            return value.value if isinstance(value, RunStatus) else value
        return self.extra[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Like ``dict.get`` (see ``__getitem__``)."""
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value

    @property
    def failed(self) -> bool:
        """Whether the run raised."""
        return self.status is RunStatus.FAILED


def schema_markdown() -> str:
    """The JSON schema of a run record as a Markdown table (field, type, meaning)."""
    lines = ["| field | type | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(RunRecord):
        if field.name == "extra":
            continue
        kind = str(field.type).replace(" | None", "").replace("RunStatus", "str")
        note = " (left out when null)" if field.metadata["optional"] else ""
        lines.append(f"| `{field.name}` | {kind} | {field.metadata['doc']}{note} |")
    return "\n".join(lines)
