"""A whole campaign from validated choices: check, load, plan, run (here or on workers), report.

This is what ``optiscale-bench`` / ``python -m experiments.large_scale`` calls.
The order guarantees that bad input never touches a file:

1. :func:`plan_campaign` checks every choice (unknown data set, optimizer,
   backend, suite, precision, epochs: ``ValueError`` listing the choices; an
   unavailable backend: ``RuntimeError`` with the reason);
2. :func:`check_options` checks the run options (seed >= 0, shards, workers,
   an output folder that is a file or cannot be written);
3. :func:`load_datasets` loads every requested data set: one that is missing
   or cannot be decoded raises :class:`DataUnavailableError` naming the data
   set and the loader's reason (folders looked in, the flag and variable, how
   to get the files), unless ``allow_missing_data`` (then it is recorded as
   skipped and named at the top of the report and in the summary line);
4. only then is the results store opened (refusing a folder that holds
   results unless ``resume`` / ``overwrite``) and the runs planned; the runs
   of this shard that are not stored yet run in this process or on
   ``workers`` processes (``optiscale_jax.benchmark.workers``).

Ctrl-C stops the campaign with every finished run already stored.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TextIO

import numpy as np

from optiscale_jax.backends import backend_available
from optiscale_jax.benchmark.checks import check_int
from optiscale_jax.benchmark.optimizer_choice import (
    OptimizerChoice,
    is_ours,
    resolve_choices,
    suite_choices,
)
from optiscale_jax.benchmark.progress import ProgressReporter, format_duration
from optiscale_jax.benchmark.report import write_report
from optiscale_jax.benchmark.runner import DatasetContext, LargeScaleBenchmark, PlannedRun
from optiscale_jax.benchmark.store import (
    RESULTS_FILENAME,
    StoreNotEmptyError,
    load_results,
    stored_result_paths,
)
from optiscale_jax.benchmark.suites import (
    BACKENDS,
    DATASETS,
    DTYPES,
    EXTENDED_SUITES,
    SUITE_OPTIMIZERS,
    SUITES,
    SuiteEntry,
    check_choice,
    check_datasets,
    starting_configs,
)
from optiscale_jax.datasets import DataFileError
from optiscale_jax.problems import make_problem

__all__ = ["CampaignOptions", "CampaignPlan", "CampaignSummary", "DataUnavailableError",
           "LoadedDataset", "check_options", "load_datasets", "plan_campaign", "rebuild_report",
           "run_campaign", "select_shard"]

EXECUTORS = ("local", "slurm")
# Loader errors meaning "the files are not there, not readable, or cannot be decoded".
DATA_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, ConnectionError,
               DataFileError, UnicodeDecodeError)


class DataUnavailableError(ValueError):
    """A requested data set is missing or cannot be decoded (checked before any work)."""


class CampaignPlan(NamedTuple):
    """The validated work: data sets with their epochs, optimizers (label, spec,
    hyperparameters), backend, dtype."""

    entries: tuple[SuiteEntry, ...]
    optimizers: tuple[OptimizerChoice, ...]
    backend: str
    dtype: str


class CampaignSummary(NamedTuple):
    """What a campaign did; paths of what it wrote."""

    results_path: pathlib.Path
    report_path: pathlib.Path | None
    executed_runs: int
    stored_runs_skipped: int
    skipped_datasets: tuple[str, ...]
    wall_time_s: float
    failed_workers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CampaignOptions:
    """How to run a plan (validated by :func:`check_options`).

    ``num_shards`` / ``shard_index``: this process runs the runs whose identity
    hashes to ``shard_index`` (deterministic, see :func:`select_shard`);
    ``workers``: processes that share this shard's missing runs (``executor``
    ``local``: on this machine; ``slurm``: a job array through submitit,
    ``slurm_parameters`` passed to ``AutoExecutor.update_parameters``).
    """

    output_dir: pathlib.Path = pathlib.Path("benchmark_results")
    seed: int = 0
    data_dir: str | None = None
    tune: bool = False
    resume: bool = False
    overwrite: bool = False
    allow_missing_data: bool = False
    workers: int = 1
    executor: str = "local"
    num_shards: int = 1
    shard_index: int = 0
    flags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    slurm_parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class LoadedDataset(NamedTuple):
    """A data set of the plan, loaded (arrays and metadata) with its suite entry."""

    entry: SuiteEntry
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    metadata: dict[str, Any]


# ----------------------------------------------------------------------------- validation
def plan_campaign(*, suite: str = "default", datasets: Sequence[str] | None = None,
                  optimizers: Sequence[str] | None = None, epochs: int | None = None,
                  backend: str = "jax", precision: str = "float32", hparams: str | None = None,
                  config: str | os.PathLike | None = None) -> CampaignPlan:
    """Validates every choice and returns the plan; raises before any work on bad input.

    ``optimizers``: spec strings (``adam``, ``optax:lion``, ``pkg.mod:make``, ...), else
    ``config`` (a JSON / YAML file listing them), else the suite's; ``hparams``:
    ``NAME.KEY=VALUE,...`` by display name (see ``optimizer_choice.resolve_choices``).
    """
    check_choice(suite, list(SUITES), "suite")
    check_choice(backend, BACKENDS, "backend")
    check_choice(precision, DTYPES, "precision")
    if epochs is not None:
        check_int(epochs, "--epochs", minimum=1, maximum=2**31 - 1)
    suite_epochs = {entry.dataset: entry.epochs for entry in SUITES[suite]}
    if datasets:
        keys = check_datasets(datasets)
        entries = tuple(SuiteEntry(k, suite_epochs.get(k, DATASETS[k].epochs)) for k in keys)
    else:
        entries = SUITES[suite]
    if epochs is not None:
        entries = tuple(SuiteEntry(e.dataset, epochs) for e in entries)
    choices = resolve_choices(
        optimizers, hparams, config,
        suite_choices(SUITE_OPTIMIZERS[suite], extended=suite in EXTENDED_SUITES))
    foreign = [c.spec for c in choices if not is_ours(c.spec)]
    if backend != "jax" and foreign:
        raise ValueError(f"--backend={backend} runs this package's optimizers only (the reference "
                         f"loop); {', '.join(foreign)} need --backend=jax")
    available, reason = backend_available(backend)
    if not available:
        raise RuntimeError(reason)
    return CampaignPlan(entries, choices, backend, precision)


def _check_writable_folder(path: pathlib.Path) -> None:
    """ValueError when ``path`` is a file, or it (or its nearest existing parent) cannot be
    written."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--output_dir={path} is a file, not a folder; give a folder path")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--output_dir={path}: {existing} is not writable; give a folder you "
                         "can write to")


def check_options(options: CampaignOptions) -> CampaignOptions:
    """Checks the run options before anything is loaded or written; returns them with the
    output folder made absolute."""
    check_int(options.seed, "--seed", minimum=0, maximum=2**32 - 1)
    for name in ("workers", "num_shards"):
        check_int(getattr(options, name), f"--{name}", minimum=1)
    check_int(options.shard_index, "--shard_index", minimum=0)
    if options.shard_index >= options.num_shards:
        raise ValueError(f"--shard_index={options.shard_index} must be below "
                         f"--num_shards={options.num_shards} (shards are numbered from 0)")
    check_choice(options.executor, EXECUTORS, "executor")
    if options.resume and options.overwrite:
        raise ValueError("--resume and --overwrite exclude each other: --resume continues the "
                         "stored campaign, --overwrite moves it aside and starts afresh")
    output_dir = pathlib.Path(options.output_dir).expanduser().resolve()
    _check_writable_folder(output_dir)
    held = stored_result_paths(output_dir)
    if held and not (options.resume or options.overwrite):
        raise StoreNotEmptyError(
            f"{output_dir} already holds results ({', '.join(p.name for p in held)}); pass "
            "--resume to continue that campaign (only missing runs run), --overwrite to move "
            "them into a superseded-<time>/ folder first, or another --output_dir")
    return dataclasses.replace(options, output_dir=output_dir)


def load_datasets(plan: CampaignPlan, data_dir: str | os.PathLike | None, seed: int, *,
                  allow_missing: bool = False) -> tuple[list[LoadedDataset], dict[str, str]]:
    """Loads every data set of the plan; returns (loaded, {name: reason} of skipped ones).

    Raises:
      DataUnavailableError: a data set cannot be loaded and ``allow_missing`` is False.
    """
    loaded, skipped = [], {}
    for entry in plan.entries:
        spec = DATASETS[entry.dataset]
        try:
            X_train, y_train, X_test, y_test, metadata = spec.load(data_dir, seed)
        except DATA_ERRORS as err:
            reason = f"{type(err).__name__}: {err}"
            if not allow_missing:
                raise DataUnavailableError(
                    f"data set {entry.dataset} ({spec.name}) cannot be loaded, so nothing was "
                    f"run: {reason}\nTo run without it, pass --allow_missing_data (it is then "
                    "listed as skipped in the summary and at the top of the report)") from err
            skipped[spec.name] = reason
            continue
        loaded.append(LoadedDataset(entry, (X_train, y_train, X_test, y_test),
                                    {**metadata, "dataset_key": spec.key}))
    return loaded, skipped


# ----------------------------------------------------------------------------- planning
def dataset_runs(bench: LargeScaleBenchmark, plan: CampaignPlan, loaded: Sequence[LoadedDataset]
                 ) -> list[tuple[DatasetContext, list[PlannedRun]]]:
    """Every planned run of every loaded data set, in plan order (positions numbered)."""
    out, position = [], 0
    for item in loaded:
        spec = DATASETS[item.entry.dataset]
        X_train, y_train, X_test, y_test = item.arrays
        problem = make_problem(spec.problem, X_train, y_train, spec.l2)
        context = bench.dataset_context(spec.name, X_train, y_train, X_test, y_test,
                                        item.metadata, problem=problem, category=spec.category)
        configs = starting_configs(plan.optimizers, problem.smoothness())
        runs = bench.plan_runs(context, configs, item.entry.epochs, first_position=position)
        position += len(runs)
        out.append((context, runs))
    return out


def select_shard(identity: str, num_shards: int, shard_index: int) -> bool:
    """Whether the run with this identity belongs to shard ``shard_index`` of ``num_shards``
    (its SHA-256 read as an integer, modulo the shard count: the same on every machine)."""
    return int(identity, 16) % num_shards == shard_index


def _make_benchmark(plan: CampaignPlan, options: CampaignOptions, progress: ProgressReporter,
                    *, resume: bool, overwrite: bool) -> LargeScaleBenchmark:
    return LargeScaleBenchmark(options.output_dir, backend=plan.backend, dtype=plan.dtype,
                               seed=options.seed, resume=resume, overwrite=overwrite,
                               tune=options.tune, progress=progress, flags=options.flags)


def run_selected(plan: CampaignPlan, options: CampaignOptions, identities: Sequence[str] | None,
                 stream: TextIO | None = sys.stdout) -> tuple[int, int]:
    """A worker's job (also the in-process path): loads the data, runs the planned runs of
    this shard (only ``identities`` when given) that are not stored; returns (executed,
    skipped because stored)."""
    loaded, _ = load_datasets(plan, options.data_dir, options.seed, allow_missing=True)
    progress = ProgressReporter(0, stream=stream)
    bench = _make_benchmark(plan, options, progress, resume=True, overwrite=False)
    wanted = None if identities is None else set(identities)
    work = [(context, [r for r in runs if select_shard(r.identity, options.num_shards,
                                                        options.shard_index)
                       and (wanted is None or r.identity in wanted)])
            for context, runs in dataset_runs(bench, plan, loaded)]
    progress.add_planned(sum(len(runs) for _, runs in work))
    for context, runs in work:
        progress.mark_start()
        bench.run_planned(context, runs)
    return bench.executed_runs, bench.skipped_runs


# ----------------------------------------------------------------------------- the campaign
def run_campaign(plan: CampaignPlan, *, output_dir: str | os.PathLike = "benchmark_results",
                 seed: int = 0, data_dir: str | os.PathLike | None = None,
                 tune: bool = False, resume: bool = False, overwrite: bool = False,
                 allow_missing_data: bool = False, workers: int = 1, executor: str = "local",
                 num_shards: int = 1, shard_index: int = 0,
                 slurm_parameters: Mapping[str, Any] | None = None,
                 flags: Mapping[str, Any] | None = None,
                 stream: TextIO | None = sys.stdout) -> CampaignSummary:
    """Checks the options, loads the data, opens the store, runs this shard's missing runs
    (here, or on ``workers`` processes), then writes the report. See the module docstring."""
    start = time.perf_counter()
    options = check_options(CampaignOptions(
        output_dir=pathlib.Path(output_dir), seed=seed,
        data_dir=None if data_dir is None else str(data_dir), tune=tune, resume=resume,
        overwrite=overwrite, allow_missing_data=allow_missing_data, workers=workers,
        executor=executor, num_shards=num_shards, shard_index=shard_index,
        flags=dict(flags or {}), slurm_parameters=dict(slurm_parameters or {})))
    loaded, skipped = load_datasets(plan, options.data_dir, options.seed,
                                    allow_missing=options.allow_missing_data)
    progress = ProgressReporter(0, stream=stream)
    bench = _make_benchmark(plan, options, progress, resume=options.resume,
                            overwrite=options.overwrite)
    if bench.store.superseded is not None:
        progress.message(f"moved the previous results to {bench.store.superseded}")
    for damaged in bench.store.damaged:
        progress.message(f"kept a damaged file untouched: {damaged.path} ({damaged.reason})")
    for name, reason in skipped.items():
        bench.record_skipped_dataset(name, reason)
    work = [(context, [r for r in runs
                       if select_shard(r.identity, options.num_shards, options.shard_index)])
            for context, runs in dataset_runs(bench, plan, loaded)]
    failed_workers: tuple[str, ...] = ()
    try:
        if options.workers == 1 and options.executor == "local":
            progress.add_planned(sum(len(runs) for _, runs in work))
            for context, runs in work:
                progress.mark_start()
                bench.run_planned(context, runs)
            executed, stored = bench.executed_runs, bench.skipped_runs
        else:
            from optiscale_jax.benchmark import workers as _workers  # noqa: PLC0415 (it imports this module)

            outcome = _workers.run_on_workers(bench, plan, options, work, progress)
            executed, stored, failed_workers = outcome
    except KeyboardInterrupt:
        progress.message(f"interrupted: {len(bench.store.records)} finished runs are stored in "
                         f"{bench.store.folder}; rerun with --resume to continue")
        raise
    report = write_report(bench.store.path)
    wall = time.perf_counter() - start
    skipped_text = (f"{len(skipped)} data set(s) skipped ({', '.join(skipped)})" if skipped
                    else "no data set skipped")
    progress.message(
        f"done in {format_duration(wall)} ({wall:.1f} s): {executed} runs executed, "
        f"{stored} already stored, {skipped_text}"
        + (f", {len(failed_workers)} worker(s) failed" if failed_workers else "")
        + f"; results {bench.store.path}; report {report}")
    return CampaignSummary(bench.store.path, report, executed, stored, tuple(skipped), wall,
                           failed_workers)


def rebuild_report(output_dir: str | os.PathLike = "benchmark_results") -> pathlib.Path:
    """``--report_only``: the report and plots again, from the JSON alone."""
    path = pathlib.Path(output_dir) / RESULTS_FILENAME
    load_results(path)  # a clear error when there is nothing to report on
    return write_report(path)
