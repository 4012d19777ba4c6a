"""A campaign's missing runs spread over worker processes or SLURM jobs, through submitit.

The coordinator (``campaign.run_campaign`` with ``workers > 1`` or
``executor="slurm"``) has already validated the input, loaded the data, opened
the store (refusing, resuming or moving results aside) and solved each data
set's f* once (cached on disk, so workers read it). It lists the runs of its
shard that are not stored, deals them round-robin (in plan order) to
``workers`` jobs, and submits the jobs as one array with ``submitit``:
``AutoExecutor(cluster="local")`` starts processes on this machine (what the
tests use); ``cluster="slurm"`` submits a SLURM job array (``slurm_parameters``
such as ``slurm_partition``, ``timeout_min``, ``cpus_per_task`` go to
``update_parameters``). The same job function runs in both.

Each job loads the data itself and writes every run it finishes to the
shared store (one file per run, so nothing is lost or duplicated whatever
the interleaving). While the jobs run, the coordinator prints a progress line
with an ETA for each run that lands in the store. A job that dies (killed,
out of memory, node failure) is reported with its log file; the runs it did
not finish are missing from the store and ``--resume`` runs exactly those.
Job logs and pickles go to ``<output_dir>/submitit/``; the jobs share this
process's JAX compilation cache (through JAX's environment variables).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import submitit

from optiscale_jax.benchmark import campaign as _campaign
from optiscale_jax.benchmark.progress import ProgressReporter
from optiscale_jax.benchmark.runner import DatasetContext, LargeScaleBenchmark, PlannedRun

__all__ = ["deal", "run_on_workers", "worker_job"]

POLL_S = 0.5
LOCAL_TIMEOUT_MIN = 7 * 24 * 60   # submitit's local default (5 min) would kill long campaigns


def deal(identities: Sequence[str], workers: int) -> list[list[str]]:
    """Round-robin: worker j gets identities j, j + workers, ... (plan order is kept)."""
    return [list(identities[j::workers]) for j in range(workers)]


def worker_job(plan: _campaign.CampaignPlan, options: _campaign.CampaignOptions,
               identities: list[str]) -> tuple[int, int]:
    """What one job runs (in its own process): the listed runs; returns (executed, stored)."""
    return _campaign.run_selected(plan, options, identities, stream=sys.stdout)


def _share_compilation_cache() -> None:
    """Jobs inherit the environment: JAX reads its persistent-cache settings from these
    variables, so the workers load and store compiled programs where this process does."""
    folder = jax.config.jax_compilation_cache_dir
    if folder:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = str(
            jax.config.jax_persistent_cache_min_compile_time_secs)
        os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = str(
            jax.config.jax_persistent_cache_min_entry_size_bytes)


def _executor(options: _campaign.CampaignOptions, n_jobs: int) -> submitit.AutoExecutor:
    _share_compilation_cache()
    folder = options.output_dir / "submitit"
    executor = submitit.AutoExecutor(folder=str(folder), cluster=options.executor)
    parameters: dict[str, Any] = {"name": "optiscale-bench"}
    if options.executor == "local":
        parameters.update(timeout_min=LOCAL_TIMEOUT_MIN, tasks_per_node=1)
    else:
        parameters.update(slurm_array_parallelism=n_jobs)
    parameters.update(dict(options.slurm_parameters))
    executor.update_parameters(**parameters)
    return executor


def _solve_optima(bench: LargeScaleBenchmark,
                  work: Sequence[tuple[DatasetContext, list[PlannedRun]]]) -> None:
    """f* of each data set with missing runs, once, before the jobs start (they read the
    on-disk optimum cache instead of all solving it)."""
    for context, runs in work:
        if any(not bench.store.has(r.identity) for r in runs):
            context.problem.optimum(bench.cache_dir)


def run_on_workers(bench: LargeScaleBenchmark, plan: _campaign.CampaignPlan,
                   options: _campaign.CampaignOptions,
                   work: Sequence[tuple[DatasetContext, list[PlannedRun]]],
                   progress: ProgressReporter) -> tuple[int, int, tuple[str, ...]]:
    """Runs the missing runs of ``work`` on ``options.workers`` jobs; returns (executed,
    already stored, failed-job messages)."""
    planned = [r for _, runs in work for r in runs]
    missing = [r.identity for r in planned if not bench.store.has(r.identity)]
    stored = len(planned) - len(missing)
    progress.add_planned(len(planned))
    for run in planned:
        if run.identity not in missing:
            progress.step(f"{run.label} | skipped (stored)", timed=False)
    if not missing:
        return 0, stored, ()
    _solve_optima(bench, work)
    batches = [b for b in deal(missing, options.workers) if b]
    job_options = _campaign.CampaignOptions(**{**options.__dict__, "resume": True,
                                               "overwrite": False, "workers": 1})
    executor = _executor(options, len(batches))
    jobs = executor.map_array(worker_job, [plan] * len(batches), [job_options] * len(batches),
                              batches)
    progress.message(f"{len(missing)} runs on {len(jobs)} {options.executor} job(s) "
                     f"{', '.join(j.job_id for j in jobs)}; logs in {options.output_dir / 'submitit'}")
    seen = _follow(bench, set(missing), jobs, progress)
    failed = []
    for job in jobs:
        try:
            job.result()
        except Exception as err:  # a dead job is reported; --resume reruns its runs
            failed.append(f"job {job.job_id} failed ({type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
                          f"log {job.paths.stderr}")
    for message in failed:
        progress.message(message)
    if failed:
        progress.message(f"{len(missing) - len(seen)} run(s) did not finish; rerun with --resume "
                         "to run exactly those")
    return len(seen), stored, tuple(failed)


def _follow(bench: LargeScaleBenchmark, wanted: set[str], jobs: Sequence[Any],
            progress: ProgressReporter) -> set[str]:
    """Prints a progress line for each wanted run that lands in the store until every job
    has ended; returns the identities seen."""
    seen: set[str] = set()
    progress.mark_start()
    while True:
        finished = all(job.done() for job in jobs)
        for identity in sorted(wanted - seen):
            if bench.store.has(identity):
                record = bench.store.get(identity)
                seen.add(identity)
                if record is not None:
                    progress.run_finished(record)
        if finished:
            return seen
        time.sleep(POLL_S)
