"""Campaigns over several processes: two campaigns at once on one folder, a submitit local
job array (same results as one process), a SIGKILLed worker then --resume, and shards
(finished, never started) then --resume: nothing lost, nothing duplicated."""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from optiscale_jax.benchmark import campaign, load_results
from optiscale_jax.benchmark.compare import compare_results
from optiscale_jax.benchmark.store import ResultsStore

REPO = pathlib.Path(__file__).resolve().parents[1]
_ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
SMALL = ["--datasets=highdim_50,kappa_1e3_small", "--epochs=15"]


def _cli(out, *args):
    return [sys.executable, "-m", "experiments.large_scale", f"--output_dir={out}", *SMALL, *args]


def _identities(out):
    runs = load_results(out / "large_scale_results.json")["runs"]
    identities = [r["identity"] for r in runs]
    assert len(identities) == len(set(identities)), "a run is stored twice"
    return set(identities)


def _done_line(stdout):
    match = re.search(r"(\d+) runs executed, (\d+) already stored", stdout)
    assert match, stdout
    return int(match.group(1)), int(match.group(2))


@pytest.mark.slow
def test_two_campaigns_at_once_on_one_folder_keep_the_union(tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(_cli(out, "--optimizers=sgd,momentum", "--resume"), cwd=REPO,
                             env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = subprocess.Popen(_cli(out, "--optimizers=adam,adamw", "--resume"), cwd=REPO,
                              env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = [proc.communicate(timeout=600)[0] for proc in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], logs
    assert [_done_line(log)[0] for log in logs] == [4, 4]
    runs = load_results(out / "large_scale_results.json")["runs"]
    assert len(_identities(out)) == 8
    assert sorted(r["optimizer"] for r in runs) == sorted(["sgd", "momentum", "adam", "adamw"] * 2)


@pytest.mark.slow
def test_a_submitit_job_array_gives_the_results_of_one_process(tmp_path):
    plan = campaign.plan_campaign(suite="quick", epochs=10)
    one = campaign.run_campaign(plan, output_dir=tmp_path / "one", stream=None)
    two = campaign.run_campaign(plan, output_dir=tmp_path / "two", workers=2, stream=None)
    assert (one.executed_runs, two.executed_runs, two.failed_workers) == (8, 8, ())
    assert len(list((tmp_path / "two" / "submitit").glob("*_log.out"))) == 2  # two jobs ran
    result = compare_results(load_results(one.results_path), load_results(two.results_path))
    assert result.equal and result.matched == 8, result.differences
    report = two.report_path.read_text()
    assert report.count("\n## ") >= len(plan.entries)


def _worker_processes(coordinator):
    """The submitit task processes under the coordinator (controller -> task)."""
    workers = []
    for process in psutil.Process(coordinator.pid).children(recursive=True):
        try:
            if "submitit.core._submit" in " ".join(process.cmdline()):
                workers.append(process)
        except psutil.Error:  # ended (or a zombie) between listing and reading
            continue
    return workers


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_resume_runs_exactly_the_missing(tmp_path):
    out = tmp_path / "out"
    args = ["--optimizers=sgd,momentum,adam,adamw"]
    coordinator = subprocess.Popen(_cli(out, *args, "--workers=4"), cwd=REPO, env=_ENV,
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    killed = None
    # Killed as soon as all four workers exist: each still has to import JAX and load its data,
    # so its runs cannot be stored yet (with a warm compilation cache a run takes milliseconds,
    # and waiting for a first stored run could let every worker finish), while the others go on.
    while killed is None and time.monotonic() < deadline:
        workers = _worker_processes(coordinator)
        if len(workers) == 4:
            killed = workers[-1]
            killed.send_signal(signal.SIGKILL)
        time.sleep(0.2)
    assert killed is not None, "the workers did not start"
    log = coordinator.communicate(timeout=600)[0]
    assert coordinator.returncode == 1, log
    assert "failed" in log and "rerun with --resume" in log
    stored = _identities(out)
    assert len(stored) < 8, "the killed worker had finished all its runs"
    resumed = subprocess.run(_cli(out, *args, "--workers=2", "--resume"), cwd=REPO, env=_ENV,
                             text=True, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _done_line(resumed.stdout) == (8 - len(stored), len(stored))
    assert len(_identities(out)) == 8 and stored <= _identities(out)
    assert ResultsStore(out / "large_scale_results.json", resume=True).damaged == []


@pytest.mark.slow
def test_shards_then_resume_run_exactly_the_missing_runs(tmp_path):
    plan = campaign.plan_campaign(datasets=["highdim_50"], optimizers=["sgd", "adam", "nesterov"],
                                  epochs=10)
    shard0 = campaign.run_campaign(plan, output_dir=tmp_path, num_shards=2, shard_index=0,
                                   resume=True, stream=None)
    stored = _identities(tmp_path)
    assert len(stored) == shard0.executed_runs
    assert all(campaign.select_shard(i, 2, 0) for i in stored)
    # Shard 1 never started; a full --resume runs exactly its runs.
    rest = campaign.run_campaign(plan, output_dir=tmp_path, resume=True, stream=None)
    assert (rest.executed_runs, rest.stored_runs_skipped) == (3 - len(stored), len(stored))
    assert len(_identities(tmp_path)) == 3
