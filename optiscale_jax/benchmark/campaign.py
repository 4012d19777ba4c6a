"""A whole campaign from validated choices: load each data set, run, write the report.

This is what ``python -m experiments.large_scale`` calls. Every choice is
checked before any work starts (unknown data set, optimizer, backend, suite
or precision: a ``ValueError`` listing the choices; an unavailable backend: a
``RuntimeError`` with the reason). A data set whose files are missing (or
corrupt) is recorded as skipped with the loader's reason and the others run.
Ctrl-C stops the campaign with every finished run already stored.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TextIO

from optiscale_jax.benchmark.progress import ProgressReporter, format_duration
from optiscale_jax.benchmark.report import write_report
from optiscale_jax.benchmark.runner import BACKENDS, DTYPES, RESULTS_FILENAME, LargeScaleBenchmark
from optiscale_jax.benchmark.suites import (
    DATASETS,
    SUITE_OPTIMIZERS,
    SUITES,
    SuiteEntry,
    check_datasets,
    check_optimizers,
    starting_configs,
)

__all__ = ["CampaignPlan", "CampaignSummary", "plan_campaign", "rebuild_report", "run_campaign"]



def _unusable_data_errors() -> tuple[type[BaseException], ...]:
    """Loader errors meaning "the files are not there, not readable or corrupt": the data
    set is skipped with the loader's message and the campaign goes on."""
    from optiscale_jax.datasets import DataFileError

    return (FileNotFoundError, PermissionError, IsADirectoryError, ConnectionError,
            DataFileError)


class CampaignPlan(NamedTuple):
    """The validated work: data sets with their epochs, optimizers, backend, dtype."""

    entries: tuple[SuiteEntry, ...]
    optimizers: tuple[str, ...]
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


def plan_campaign(*, suite: str = "default", datasets: Sequence[str] | None = None,
                  optimizers: Sequence[str] | None = None, epochs: int | None = None,
                  backend: str = "jax", precision: str = "float32") -> CampaignPlan:
    """Validates every choice and returns the plan; raises before any work on bad input."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of: {', '.join(SUITES)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(DTYPES)}")
    if epochs is not None and not (isinstance(epochs, int) and epochs > 0):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    suite_epochs = {entry.dataset: entry.epochs for entry in SUITES[suite]}
    if datasets:
        keys = check_datasets(datasets)
        entries = tuple(SuiteEntry(k, suite_epochs.get(k, DATASETS[k].epochs)) for k in keys)
    else:
        entries = SUITES[suite]
    if epochs is not None:
        entries = tuple(SuiteEntry(e.dataset, epochs) for e in entries)
    names = check_optimizers(optimizers) if optimizers else list(SUITE_OPTIMIZERS[suite])
    from optiscale_jax.backends import backend_available

    available, reason = backend_available(backend)
    if not available:
        raise RuntimeError(reason)
    return CampaignPlan(entries, tuple(names), backend, precision)


def run_campaign(plan: CampaignPlan, *, output_dir: str | os.PathLike = "benchmark_results",
                 seed: int = 0, data_dir: str | os.PathLike | None = None,
                 tune: bool = False, resume: bool = False,
                 flags: Mapping[str, Any] | None = None,
                 stream: TextIO | None = sys.stdout) -> CampaignSummary:
    """Runs the plan, writes ``large_scale_results.json`` after each run, then the report."""
    from optiscale_jax.problems import make_problem

    start = time.perf_counter()
    progress = ProgressReporter(len(plan.entries) * len(plan.optimizers), stream=stream)
    bench = LargeScaleBenchmark(output_dir, backend=plan.backend, dtype=plan.dtype, seed=seed,
                                resume=resume, tune=tune, progress=progress, flags=flags)
    skipped: list[str] = []
    try:
        for entry in plan.entries:
            spec = DATASETS[entry.dataset]
            progress.mark_start()
            try:
                X_train, y_train, X_test, y_test, metadata = spec.load(data_dir, seed)
            except _unusable_data_errors() as err:
                bench.record_skipped_dataset(spec.name, f"{type(err).__name__}: {err}")
                progress.total_runs -= len(plan.optimizers)
                skipped.append(spec.name)
                continue
            problem = make_problem(spec.problem, X_train, y_train, spec.l2)
            configs = starting_configs(plan.optimizers, problem.smoothness())
            bench.benchmark_dataset(spec.name, X_train, y_train, X_test, y_test,
                                    {**metadata, "dataset_key": spec.key}, configs,
                                    max_epochs=entry.epochs, problem=problem,
                                    category=spec.category)
    except KeyboardInterrupt:
        progress.message(f"interrupted: {len(bench.store.runs)} finished runs are stored in "
                         f"{bench.store.path}; rerun with --resume to continue")
        raise
    report = write_report(bench.store.path)
    wall = time.perf_counter() - start
    progress.message(
        f"done in {format_duration(wall)} ({wall:.1f} s): {bench.executed_runs} runs executed, "
        f"{bench.skipped_runs} already stored, {len(skipped)} data set(s) skipped; "
        f"results {bench.store.path}; report {report}")
    return CampaignSummary(bench.store.path, report, bench.executed_runs, bench.skipped_runs,
                           tuple(skipped), wall)


def rebuild_report(output_dir: str | os.PathLike = "benchmark_results") -> pathlib.Path:
    """``--report_only``: the report and plots again, from the JSON alone."""
    return write_report(pathlib.Path(output_dir) / RESULTS_FILENAME)
