"""The batch-scaling study: per workload, optimizer and batch size B = 2^k, the tuned steps to a target.

For each (workload, optimizer, B) one vmapped sweep over the learning-rate grid (x the momentum
grid for momentum methods) runs on one shared batch stream until the first configuration reaches
the target (:func:`optiscale_jax.training.steps_to_target.steps_to_target`); that configuration
is the best of the grid. A best learning rate on the grid's first or last point extends the grid
by one more sweep on that side (up to ``max_extensions``); a best still on the edge is flagged.
The NQM workload is solved in closed form instead (exact expected loss, no sampling).

Every finished cell is written at once to ``batch_scaling_results.json`` (atomic replace), so an
interrupted run resumes where it stopped; the report and plots are rebuilt from that file alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any, TextIO

import jax
import numpy as np

from optiscale_jax.benchmark import atomic_write_json, environment_record
from optiscale_jax.benchmark.identity import canonical_json
from optiscale_jax.benchmark.progress import EtaPrinter
from optiscale_jax.optimizers import OptimizerSpec, OptimizerSpecError, resolve_optimizer
from optiscale_jax.studies import nqm as nqm_lib
from optiscale_jax.studies import report, workload_zoo
from optiscale_jax.studies.workloads import Workload
from optiscale_jax.training.steps_to_target import steps_to_target

__all__ = [
    "MOMENTUM_GRID", "NQM_OPTIMIZERS", "RESULTS_FILENAME", "WORKLOAD_NAMES", "StudySettings",
    "check_settings", "nqm_cell", "quick_settings", "rebuild", "run_study", "settings_from_json",
    "tune_cell",
]

RESULTS_FILENAME = "batch_scaling_results.json"
WORKLOAD_NAMES = (
    "nqm",
    "nqm_sim",
    "streaming_least_squares",
    "streaming_logistic",
    "mnist_binary",
    "california_housing",
)
MOMENTUM_GRID = (0.9, 0.99)
_PLACEHOLDER_LR = 1e-3
NQM_OPTIMIZERS = (
    nqm_lib.NQMOptimizer("sgd"),
    nqm_lib.NQMOptimizer("momentum", (0.0, 0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
    nqm_lib.NQMOptimizer("preconditioned_p0.5", (0.0,), 0.5),
)


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What the study runs. ``batch_exponents``: B = 2^k for these k (finite data sets keep B <= n)."""

    workloads: tuple[str, ...] = WORKLOAD_NAMES
    optimizers: tuple[str, ...] = ("sgd", "momentum", "adam")
    batch_exponents: tuple[int, ...] = (2, 4, 6, 8, 10)
    nqm_batch_exponents: tuple[int, ...] = tuple(range(0, 15))
    max_steps: int = 10_000
    nqm_max_steps: int = 1_000_000
    nqm_dim: int = 2_000
    nqm_target: float = 0.05
    nqm_sim_dim: int = 100
    nqm_sim_target: float = 0.1
    streaming_dim: int = 1_000
    streaming_kappa: float = 100.0
    streaming_spectrum: str = "power"
    target_fraction: float = 0.1
    relative_target: float = 0.1
    grid_points: int = 9  # learning rates per sweep, spaced by sqrt(2)
    first_grid_points: int = 17  # at the smallest B, where no previous B centres the grid
    max_extensions: int = 1
    seed: int = 0
    data_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quick_settings(**overrides: Any) -> StudySettings:
    """The ``--quick`` preset (under a minute): small NQM, small streaming least squares, SGD."""
    base = dict(
        workloads=("nqm", "streaming_least_squares"),
        optimizers=("sgd",),
        batch_exponents=(0, 3, 6),
        nqm_batch_exponents=tuple(range(0, 13, 2)),
        max_steps=4_000,
        nqm_dim=200,
        nqm_target=0.05,
        streaming_dim=64,
        streaming_kappa=10.0,
        target_fraction=0.02,
        first_grid_points=13,
    )
    base.update(overrides)
    return StudySettings(**base)


def check_settings(settings: StudySettings) -> None:
    """ValueError naming the bad value and the fix, before any work."""
    unknown = [w for w in settings.workloads if w not in WORKLOAD_NAMES]
    if unknown or not settings.workloads:
        raise ValueError(
            f"unknown workload(s) {unknown or '(none given)'}; choose from: {', '.join(WORKLOAD_NAMES)}"
        )
    resolve_specs(settings.optimizers)
    for name in ("batch_exponents", "nqm_batch_exponents"):
        values = getattr(settings, name)
        if not values or any(int(k) != k or k < 0 or k > 24 for k in values):
            raise ValueError(f"{name} must be integers k in [0, 24] (B = 2^k), got {list(values)}")
    for name in ("max_steps", "nqm_max_steps", "grid_points", "first_grid_points"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(settings, name)}")
    if not (0.0 < settings.target_fraction < 1.0):
        raise ValueError(
            f"target_fraction must be in (0, 1) (a fraction of the initial excess loss), "
            f"got {settings.target_fraction}"
        )
    workload_zoo.check_streaming(
        settings.streaming_spectrum, settings.streaming_dim, settings.streaming_kappa
    )


def resolve_specs(optimizers: Sequence[str]) -> dict[str, OptimizerSpec]:
    """Display name -> :class:`OptimizerSpec` for ``adam``, ``optax:lion``, ``my_pkg.mod:make``, ...

    ValueError (naming the spec and the fix) for an unknown spec, a duplicate name or a factory
    without a ``learning_rate`` parameter (the study tunes it in a vmapped sweep).
    """
    if not optimizers:
        raise ValueError("no optimizer given; name at least one, e.g. --optimizers=sgd,adam,optax:lion")
    specs: dict[str, OptimizerSpec] = {}
    for text in optimizers:
        try:
            # The rate given here only satisfies factories without a default (optax's); every
            # sweep overrides it with its traced grid (spec.build(learning_rate=...)).
            spec = resolve_optimizer(text, {"learning_rate": _PLACEHOLDER_LR})
        except OptimizerSpecError as err:
            raise ValueError(str(err)) from err
        if not spec.accepts_learning_rate:
            raise ValueError(f"optimizer {text!r} ({spec.import_path}) has no learning_rate parameter; the "
                             "study tunes the learning rate, so give a factory taking learning_rate=")
        if spec.name in specs:
            raise ValueError(f"optimizer name {spec.name!r} is given twice; label one, e.g. mine={text}")
        specs[spec.name] = spec
    return specs


def _tunes_momentum(spec: OptimizerSpec) -> bool:
    """Momentum is tuned too when the factory has a numeric ``momentum`` hyperparameter."""
    default = spec.full_hyperparams().get("momentum")
    return isinstance(default, (int, float)) and not isinstance(default, bool)


def _spec_identity(spec: OptimizerSpec) -> dict[str, Any]:
    """What a cell's result depends on: the factory, its version, the fixed hyperparameters (the swept
    learning rate and its placeholder left out)."""
    record = spec.to_json()
    fixed = {k: v for k, v in record["hyperparams"].items() if k != "learning_rate"}
    return {"name": record["name"], "spec": record["spec"], "version": record["version"],
            "hyperparams": fixed}


def _identity(*parts: Any) -> str:
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:16]


def _lr_grid(center: float, points: int) -> np.ndarray:
    return center * 2.0 ** ((np.arange(points) - (points - 1) / 2) / 2)


def _hyper_grid(spec: OptimizerSpec, lrs: np.ndarray) -> dict[str, np.ndarray]:
    if _tunes_momentum(spec):
        LR, MU = np.meshgrid(lrs, np.asarray(MOMENTUM_GRID), indexing="ij")
        return {"learning_rate": LR.ravel(), "momentum": MU.ravel()}
    return {"learning_rate": lrs}


def _best_lane(result) -> int | None:
    reached = np.flatnonzero(result.steps >= 0)
    if reached.size == 0:
        return None
    column = np.searchsorted(result.eval_steps, result.steps[reached])
    # All crossing lanes crossed at the same (first) point: rank them by their objective there.
    return int(reached[np.argmin(result.objective[reached, column])])


def _sweep(
    workload: Workload,
    spec: OptimizerSpec,
    batch_size: int,
    lrs: np.ndarray,
    max_steps: int,
    measure_noise: bool,
):
    sampler = workload.make_sampler(batch_size)
    hyper = _hyper_grid(spec, lrs)
    result = steps_to_target(
        params0=workload.params0,
        sample=sampler.sample,
        sample_state=sampler.state0,
        grad=workload.grad,
        objective=workload.objective,
        make_transform=spec.build,
        hyper=hyper,
        target=workload.target,
        max_steps=max_steps,
        measure=workload.measure if measure_noise else None,
        data=workload.data,
    )
    return hyper, result


def tune_cell(
    workload: Workload,
    spec: OptimizerSpec,
    batch_size: int,
    center: float,
    *,
    points: int,
    max_steps: int,
    max_extensions: int,
    measure_noise: bool = True,
) -> dict[str, Any]:
    """One (workload, optimizer, B) cell: sweeps, grid extension at an edge, the best configuration.

    ``measure_noise``: record ``B_simple`` along the runs (a second random stream in the program,
    about doubling its compile time); the study does it at the smallest B of each optimizer.
    """
    workload.check_batch_size(batch_size)
    lrs, sweeps, best, direction = _lr_grid(center, points), [], None, 0
    for extension in range(max_extensions + 1):
        hyper, result = _sweep(workload, spec, batch_size, lrs, max_steps, measure_noise)
        sweeps.append(
            {
                "learning_rates": lrs.tolist(),
                "steps": result.steps.tolist(),
                "diverged": int(result.diverged.sum()),
                "compile_time_s": result.compile_time_s,
                "run_time_s": result.run_time_s,
            }
        )
        lane = _best_lane(result)
        if lane is not None and (best is None or result.steps[lane] <= best[1].steps[best[2]]):
            best = (hyper, result, lane, extension)
        direction = _extension_direction(lrs, hyper, result, lane)
        if direction == 0:
            break
        if extension < max_extensions:
            lrs = lrs * (lrs[-1] / lrs[0] * np.sqrt(2.0)) ** direction
    on_edge = best is not None and direction != 0 and best[3] == len(sweeps) - 1
    return _cell_record(workload, spec.name, batch_size, best, sweeps, on_edge)


def _extension_direction(lrs: np.ndarray, hyper: dict[str, np.ndarray], result, lane: int | None) -> int:
    """Where to extend the grid: -1 (smaller rates), +1 (larger) or 0 (done).

    Best on the first / last rate: that side. Nothing reached: smaller rates when every
    configuration diverged, larger when none did; both (large rates diverge, small ones too
    slow for the step budget): 0, the cell is "not reached".
    """
    if lane is None:
        if result.diverged.all():
            return -1
        return 0 if result.diverged.any() else 1
    position = int(np.argmin(np.abs(lrs - hyper["learning_rate"][lane])))
    return -1 if position == 0 else (1 if position == lrs.size - 1 else 0)


def _noise_record(result, lane: int) -> dict[str, Any] | None:
    if result.noise is None:
        return None
    noise = result.noise[lane]
    keep = np.isfinite(noise[:, 0]) & np.isfinite(noise[:, 1])
    steps = result.eval_steps[keep]
    trace, grad_sq = noise[keep, 0], noise[keep, 1]
    b_simple = [float(t / g) if g > 0 else None for t, g in zip(trace, grad_sq)]
    return {
        "steps": steps.tolist(),
        "trace_sigma": trace.tolist(),
        "grad_sq": grad_sq.tolist(),
        "b_simple": b_simple,
    }


def _cell_record(workload, optimizer, batch_size, best, sweeps, on_edge) -> dict[str, Any]:
    record = {
        "workload": workload.name,
        "optimizer": optimizer,
        "batch_size": int(batch_size),
        "method": "simulation",
        "sweeps": sweeps,
        "extensions": len(sweeps) - 1,
        "compile_time_s": float(sum(s["compile_time_s"] for s in sweeps)),
        "run_time_s": float(sum(s["run_time_s"] for s in sweeps)),
    }
    if best is None:
        record.update(status="not_reached", steps=None, hyperparameters=None, on_edge=False)
        return record
    hyper, result, lane, _ = best
    record.update(
        status="reached",
        steps=int(result.steps[lane]),
        on_edge=bool(on_edge),
        hyperparameters={k: float(v[lane]) for k, v in hyper.items()},
        curve={
            "steps": result.eval_steps[np.isfinite(result.objective[lane])].tolist(),
            "objective": result.objective[lane][np.isfinite(result.objective[lane])].tolist(),
        },
        noise=_noise_record(result, lane),
    )
    return record


# ----------------------------------------------------------------------------- the NQM in closed form
def nqm_learning_rates() -> np.ndarray:
    """The closed form's grid: 2^(k/4) from 2^-14 to 2^2 (unstable rates are dropped per momentum)."""
    return 2.0 ** (np.arange(-56, 9) / 4)


def nqm_cell(
    nqm: nqm_lib.NQM, opt: nqm_lib.NQMOptimizer, batch_size: int, settings: StudySettings
) -> dict[str, Any]:
    """One closed-form cell: exact steps over the grid, the best, and the noise scales at the target."""
    started = time.perf_counter()
    tuned = nqm_lib.tune_closed_form(
        nqm,
        opt,
        batch_size,
        nqm_learning_rates(),
        target=settings.nqm_target,
        max_steps=settings.nqm_max_steps,
    )
    record = {
        "workload": "nqm",
        "optimizer": opt.name,
        "batch_size": int(batch_size),
        "method": "closed_form",
        "extensions": tuned.extensions,
        "on_edge": tuned.on_edge,
        "grid": {
            "learning_rates": tuned.learning_rates.tolist(),
            "momenta": tuned.momenta.tolist(),
            "steps": tuned.grid_steps.tolist(),
        },
    }
    if tuned.steps is None:
        record.update(status="not_reached", steps=None, hyperparameters=None)
    else:
        b_simple, b_noise = nqm.gradient_noise_scales(tuned.theta_sq_at_target)
        record.update(
            status="reached",
            steps=tuned.steps,
            hyperparameters={
                "learning_rate": tuned.learning_rate,
                "momentum": tuned.momentum,
                "precondition_power": opt.precondition_power,
            },
            noise={"b_simple_at_target": b_simple, "b_noise_at_target": b_noise},
        )
    record["run_time_s"] = time.perf_counter() - started
    return record


# ----------------------------------------------------------------------------- the study
class _Results:
    """The results file: settings, environment, workloads, cells; rewritten atomically per cell."""

    def __init__(self, path: pathlib.Path, settings: StudySettings, resume: bool):
        self.path = path
        fresh = {
            "schema": "optiscale_jax.batch_scaling/1",
            "settings": json.loads(canonical_json(settings.to_json())),  # as read back from the file
            "environment": environment_record(settings.to_json()),
            "workloads": {},
            "cells": [],
        }
        if resume and path.exists():
            stored = report.load_study(path)
            if stored.get("settings") != fresh["settings"]:
                raise ValueError(
                    f"{path} holds a study with other settings; drop --resume to start over "
                    "or give another --output_dir"
                )
            self.data = stored
        else:
            self.data = fresh
        self.done = {c["identity"] for c in self.data["cells"]}

    def cell(self, identity: str) -> dict[str, Any] | None:
        return next((c for c in self.data["cells"] if c["identity"] == identity), None)

    def add(self, record: dict[str, Any]) -> None:
        """Stores a cell, replacing a stored one of the same (workload, optimizer, B) from other code."""
        key = (record["workload"], record["optimizer"], record["batch_size"])
        self.data["cells"] = [c for c in self.data["cells"]
                              if (c["workload"], c["optimizer"], c["batch_size"]) != key]
        self.data["cells"].append(record)
        self.done.add(record["identity"])
        atomic_write_json(self.path, self.data)

    def set_workload(self, name: str, info: dict[str, Any]) -> None:
        self.data["workloads"][name] = info
        atomic_write_json(self.path, self.data)


def _batch_sizes(settings: StudySettings, name: str) -> list[int]:
    exponents = settings.nqm_batch_exponents if name == "nqm" else settings.batch_exponents
    return [2 ** int(k) for k in sorted(set(exponents))]


def _plan(settings: StudySettings) -> tuple[dict[str, tuple[Workload, float]], int]:
    """Builds every simulated workload (loads data, solves f*) and checks every B before any training."""
    built = {}
    for name in settings.workloads:
        if name == "nqm":
            continue
        workload, scale = workload_zoo.build_workload(name, settings)
        for batch_size in _batch_sizes(settings, name):
            workload.check_batch_size(batch_size)
        built[name] = (workload, scale)
    total = sum(
        len(_batch_sizes(settings, n)) * (len(NQM_OPTIMIZERS) if n == "nqm" else len(settings.optimizers))
        for n in settings.workloads
    )
    return built, total


def _run_nqm(settings: StudySettings, results: _Results, progress: EtaPrinter) -> None:
    nqm = nqm_lib.make_nqm(settings.nqm_dim)
    results.set_workload(
        "nqm",
        {
            "description": f"NQM closed form, d = {nqm.dim}, h_i = 1/i, c_i = h_i, theta_0 = 1",
            "target": settings.nqm_target,
            "f_star": 0.0,
            "initial_loss": nqm.initial_loss(),
            "n_samples": None,
        },
    )
    for opt in NQM_OPTIMIZERS:
        for batch_size in _batch_sizes(settings, "nqm"):
            identity = _identity(
                "nqm", opt, batch_size, settings.nqm_dim, settings.nqm_target, settings.nqm_max_steps
            )
            if identity in results.done:
                progress.step(f"nqm | {opt.name} | B={batch_size} | stored (resume)", timed=False)
                continue
            record = nqm_cell(nqm, opt, batch_size, settings)
            record["identity"] = identity
            results.add(record)
            progress.step(f"nqm | {opt.name} | B={batch_size} | {_describe(record)}")


def _describe(record: dict[str, Any]) -> str:
    if record["status"] != "reached":
        return "not reached"
    hyper = ", ".join(f"{k}={v:.3g}" for k, v in record["hyperparameters"].items())
    edge = " | best on the grid's edge" if record.get("on_edge") else ""
    return f"{record['steps']} steps ({hyper}){edge}"


def _run_simulated(name: str, workload: Workload, scale: float, specs: dict[str, OptimizerSpec],
                   settings: StudySettings, results: _Results, progress: EtaPrinter) -> None:
    """Every (optimizer, B) cell of one simulated workload, B ascending; stored cells are skipped.

    The first B sweeps ``first_grid_points`` rates around the optimizer's first guess; each next B
    sweeps ``grid_points`` rates around the previous best times ``sqrt(B / B_previous)``.
    """
    results.set_workload(name, {"description": workload.description, "target": workload.target,
                                "f_star": workload.f_star, "initial_loss": workload.initial_loss,
                                "n_samples": workload.n_samples})
    common = dataclasses.replace(settings, workloads=(), optimizers=()).to_json()
    for spec in specs.values():
        center = workload_zoo.first_learning_rate(spec, scale)
        previous_b, points = None, settings.first_grid_points
        for batch_size in _batch_sizes(settings, name):
            identity = _identity(name, _spec_identity(spec), batch_size, common)
            record = results.cell(identity)
            label = f"{name} | {spec.name} | B={batch_size}"
            if record is None:
                if previous_b is not None:
                    center *= np.sqrt(batch_size / previous_b)
                record = tune_cell(workload, spec, batch_size, center, points=points,
                                   max_steps=settings.max_steps, max_extensions=settings.max_extensions,
                                   measure_noise=previous_b is None)
                record["identity"] = identity
                results.add(record)
                progress.step(f"{label} | {_describe(record)}")
            else:
                progress.step(f"{label} | stored (resume)", timed=False)
            if record["status"] == "reached":
                center, points = record["hyperparameters"]["learning_rate"], settings.grid_points
            previous_b = batch_size


def run_study(
    settings: StudySettings,
    output_dir: str | os.PathLike,
    *,
    resume: bool = False,
    stream: TextIO | None = None,
) -> pathlib.Path:
    """Runs (or resumes) the study; writes the JSON, the Markdown report, the PNGs; returns the JSON path."""
    check_settings(settings)
    specs = resolve_specs(settings.optimizers)
    built, total = _plan(settings)
    output = pathlib.Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    results = _Results(output / RESULTS_FILENAME, settings, resume)
    results.data["optimizers"] = {name: spec.to_json() for name, spec in specs.items()}
    progress = EtaPrinter(total, stream=stream)
    for name in settings.workloads:
        if name == "nqm":
            _run_nqm(settings, results, progress)
        else:
            _run_simulated(name, *built[name], specs, settings, results, progress)
    jax.clear_caches()
    report.write_report(results.path)
    return results.path


def rebuild(output_dir: str | os.PathLike) -> pathlib.Path:
    """Rewrites the report and the plots from the JSON alone."""
    return report.write_report(pathlib.Path(output_dir) / RESULTS_FILENAME)


def settings_from_json(data: dict[str, Any]) -> StudySettings:
    """The settings stored in a results file."""
    fields = {f.name for f in dataclasses.fields(StudySettings)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data["settings"].items() if k in fields}
    return StudySettings(**values)


def stored_cells(path: str | os.PathLike) -> Sequence[dict[str, Any]]:
    return report.load_study(path)["cells"]
