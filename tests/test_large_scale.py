"""`python -m experiments.large_scale` end to end: the quick suite SIGKILLed and resumed,
outputs checked against independent computations, a clean stderr; bad input; missing and
corrupt data; the custom-benchmark API; JAX vs NumPy backends."""

import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from optiscale_jax import training
from optiscale_jax.benchmark import (
    DataUnavailableError,
    LargeScaleBenchmark,
    RunRecord,
    campaign,
    load_results,
)
from optiscale_jax.benchmark.plots import curve_points
from optiscale_jax.benchmark.suites import DATASETS, SUITES
from optiscale_jax.datasets import load_mnist
from optiscale_jax.problems import make_problem

REPO = pathlib.Path(__file__).resolve().parents[1]
QUICK_RUNS = len(SUITES["quick"]) * 2  # two optimizers in the quick suite
_PROGRESS = re.compile(r"^\[\s*(\d+)/(\d+)\] ")


# One BLAS thread: on a 2-core machine shared with other processes, OpenBLAS's
# two spinning threads make an 1,600 x 784 SVD take 19 s instead of 0.3 s.
_ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _cli(*args):
    return [sys.executable, "-m", "experiments.large_scale", *args]


def _run_until(args, executed_wanted, sig, deadline_s=240, stderr=subprocess.STDOUT):
    """Starts the app, waits for `executed_wanted` executed-run lines, sends `sig`.

    Returns (executed lines, skipped lines, all stdout, return code)."""
    proc = subprocess.Popen(_cli(*args), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env=_ENV)
    executed, skipped, lines = [], [], []
    deadline = time.monotonic() + deadline_s
    try:
        for line in proc.stdout:
            lines.append(line)
            if _PROGRESS.match(line):
                (skipped if "skipped (stored" in line else executed).append(line)
            if sig is not None and len(executed) >= executed_wanted:
                proc.send_signal(sig)
                sig = None
            assert time.monotonic() < deadline, "".join(lines)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return executed, skipped, "".join(lines), proc.returncode


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick suite, SIGKILLed after 3 finished runs, then resumed to the end."""
    out = tmp_path_factory.mktemp("quick")
    args = ["--suite=quick", f"--output_dir={out}"]
    ex1, sk1, log1, rc1 = _run_until(args, 3, signal.SIGKILL)
    killed = load_results(out / "large_scale_results.json")["runs"]
    stderr_path = out.parent / f"{out.name}.stderr"
    with open(stderr_path, "w") as stderr:
        ex2, sk2, log2, rc2 = _run_until(args + ["--resume"], None, None, stderr=stderr)
    return {"out": out, "killed": killed,
            "final": load_results(out / "large_scale_results.json")["runs"],
            "executed": (ex1, ex2), "skipped": (sk1, sk2), "logs": (log1, log2),
            "rc": (rc1, rc2), "stderr": stderr_path.read_text()}


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_or_losing_work(quick_run):
    killed, final = quick_run["killed"], quick_run["final"]
    (ex1, ex2), (sk1, sk2) = quick_run["executed"], quick_run["skipped"]
    assert quick_run["rc"] == (-signal.SIGKILL, 0), quick_run["logs"][1]
    # Every run that printed its line was stored; the kill may have let one more finish.
    assert len(ex1) <= len(killed) <= len(ex1) + 1 and not sk1
    # The resumed process skips exactly the stored runs and executes only the others.
    assert len(sk2) == len(killed) and len(sk2) + len(ex2) == QUICK_RUNS
    assert len(final) == len({r["identity"] for r in final}) == QUICK_RUNS
    # Runs finished before the kill are kept untouched (same timestamps, same numbers).
    by_id = {r["identity"]: r for r in final}
    for earlier in killed:
        assert by_id[earlier["identity"]] == earlier
    assert len({r["environment_id"] for r in final}) == 2  # one per process
    assert not list(quick_run["out"].rglob(".*.tmp"))  # no temporary left behind
    assert re.search(r"\| ETA \d+:\d\d:\d\d$", ex2[0].rstrip())
    assert ex2[-1].rstrip().endswith("ETA 0:00:00")


class _InterruptingStream:
    """A terminal whose user presses Ctrl-C right after the first finished run."""

    def __init__(self):
        self.lines = []

    def write(self, text):
        self.lines.append(text)
        if text.startswith("[1/"):
            raise KeyboardInterrupt

    def flush(self):
        pass


@pytest.mark.slow
def test_healthy_run_has_a_clean_stderr(quick_run):
    """No line a user would read as a problem ("Unable to initialize backend 'tpu'" ...)."""
    for line in quick_run["stderr"].splitlines():
        assert not re.search(r"unable|error|failed", line, re.IGNORECASE), line


@pytest.mark.slow
def test_ctrl_c_keeps_finished_runs_and_says_how_to_resume(tmp_path):
    plan = campaign.plan_campaign(datasets=["california_housing"], optimizers=["sgd", "adam"],
                                  epochs=20)
    stream = _InterruptingStream()
    with pytest.raises(KeyboardInterrupt):
        campaign.run_campaign(plan, output_dir=tmp_path, stream=stream)
    assert len(load_results(tmp_path / "large_scale_results.json")["runs"]) == 1
    assert "rerun with --resume" in "".join(stream.lines)


@pytest.mark.slow
def test_records_agree_with_independent_computations(quick_run, data_dir):
    final = quick_run["final"]
    assert {r["status"] for r in final} <= {"converged", "max_epochs"}, [
        (r["dataset"], r["label"], r.get("error")) for r in final]
    for r in final:
        rel = (r["final_loss"] - r["f_star"]) / abs(r["f_star"])
        assert math.isclose(r["relative_suboptimality"], rel, rel_tol=1e-12)
        curve = np.asarray(r["curve"]["relative_suboptimality"])
        assert len(curve) == r["epochs"] + 1  # quick runs keep every epoch
        for level in ("1e-2", "1e-4", "1e-6"):
            hits = np.flatnonzero(curve <= float(level))
            assert r["epochs_to"][level] == (int(hits[0]) if hits.size else None)
        assert math.isclose(r["run_time_s"], r["time_per_epoch_s"] * r["epochs"], rel_tol=1e-9)
        assert r["compile_time_s"] > 0 and r["peak_memory_mb"] > 0
    # f* and the condition number against NumPy, on the same training rows.
    for key in ("california_housing", "kappa_1e3_small"):
        spec = DATASETS[key]
        X, y, _, _, _ = spec.load(str(data_dir), 0)
        X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
        record = next(r for r in final if r["dataset"] == spec.name)
        w, *_ = np.linalg.lstsq(X, y, rcond=None)
        f_star = 0.5 * np.mean((X @ w - y) ** 2)
        assert math.isclose(record["f_star"], f_star, rel_tol=1e-9)
        kappa = np.linalg.cond(X) ** 2
        assert math.isclose(record["dataset_info"]["condition_number"], kappa, rel_tol=1e-6)
    assert all(r["test_metric"] in ("error_rate", "mse") for r in final)
    mnist = [r for r in final if r["dataset"] == DATASETS["mnist_2k"].name]
    assert all(0.0 <= r["test_error"] <= 0.5 for r in mnist)


@pytest.mark.slow
def test_report_is_rebuilt_from_the_json_alone_and_curves_end_on_the_table(quick_run):
    out = quick_run["out"]
    report = (out / "BENCHMARK_REPORT.md").read_text()
    final = quick_run["final"]
    for record in final:
        assert f"## {record['dataset']}" in report
        row = next(line for line in report.splitlines()
                   if line.startswith(f"| {record['label']} |") and
                   f"{record['final_loss_recorded']:.6e}" in line)
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[8]) == float(f"{record['relative_suboptimality_recorded']:.2e}")
        assert float(cells[9]) == float(f"{record['relative_suboptimality']:.2e}")
        assert float(cells[4]) == float(f"{record['run_time_s']:.3f}")
        # The plotted curve (the record's curve, what plots.curve_points reads) ends on the row.
        points = curve_points(RunRecord.from_json(record))
        assert points.values[-1] == record["relative_suboptimality_recorded"]
        assert record["curve"]["train_loss"][-1] == record["final_loss_recorded"]
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == len(SUITES["quick"])
    for png in pngs:
        assert f"]({png})" in report
        (out / png).unlink()
    (out / "BENCHMARK_REPORT.md").unlink()
    campaign.rebuild_report(out)
    rebuilt = (out / "BENCHMARK_REPORT.md").read_text()
    drop_stamp = lambda text: re.sub(r"Built \S+ ", "", text)  # noqa: E731
    assert drop_stamp(rebuilt) == drop_stamp(report)
    assert sorted(p.name for p in out.glob("*.png")) == pngs


def test_bad_choices_fail_before_any_work():
    with pytest.raises(ValueError, match="unknown dataset.*'imagenet'; choose from: mnist_10k"):
        campaign.plan_campaign(datasets=["mnist_10k", "imagenet"])
    with pytest.raises(ValueError, match="unknown optimizer 'adm'.*use a name of ours \\(adagrad"):
        campaign.plan_campaign(optimizers=["adm"])
    with pytest.raises(ValueError, match="unknown backend 'tpu'; choose one of: jax, numpy, cupy"):
        campaign.plan_campaign(backend="tpu")
    with pytest.raises(ValueError, match="unknown suite 'huge'; choose one of: quick"):
        campaign.plan_campaign(suite="huge")
    with pytest.raises(RuntimeError, match="requirements-cuda.txt"):
        campaign.plan_campaign(backend="cupy")


@pytest.fixture(scope="module")
def numpy_run_without_files(tmp_path_factory):
    """MNIST and California Housing of the quick suite on the NumPy backend, with a data
    directory that holds no MNIST files (California Housing is given its own)."""
    root = tmp_path_factory.mktemp("numpy")
    data = root / "data"
    (data / "california_housing").mkdir(parents=True)
    source = pathlib.Path(os.environ["OPTISCALE_DATA_DIR"]) / "california_housing"
    for file in source.iterdir():
        (data / "california_housing" / file.name).write_bytes(file.read_bytes())
    plan = campaign.plan_campaign(suite="quick", datasets=["mnist_2k", "california_housing"],
                                  backend="numpy")
    with pytest.raises(DataUnavailableError) as refused:
        campaign.run_campaign(plan, output_dir=root / "out", data_dir=data, stream=None)
    assert not (root / "out").exists()
    summary = campaign.run_campaign(plan, output_dir=root / "out", data_dir=data, stream=None,
                                    allow_missing_data=True)
    return summary, load_results(summary.results_path), data, str(refused.value)


@pytest.mark.slow
def test_missing_data_stops_before_any_work_unless_allowed(numpy_run_without_files):
    summary, data, data_dir, refusal = numpy_run_without_files
    assert refusal.startswith("data set mnist_2k (MNIST-2k (0-4 vs 5-9)) cannot be loaded")
    assert str(data_dir) in refusal and "--allow_missing_data" in refusal
    assert [s["dataset"] for s in data["skipped"]] == [DATASETS["mnist_2k"].name]
    reason = data["skipped"][0]["reason"]
    assert re.match(r"\w*NotFoundError: ", reason) and str(data_dir) in reason
    assert {r["dataset"] for r in data["runs"]} == {DATASETS["california_housing"].name}
    assert summary.skipped_datasets == (DATASETS["mnist_2k"].name,)
    report = summary.report_path.read_text()
    assert "## Skipped data sets" in report and "NotFoundError" in report
    assert "**Skipped data sets (1)**: MNIST-2k" in report.split("How to read it")[0]


@pytest.mark.slow
def test_numpy_backend_matches_jax_to_float32_precision(numpy_run_without_files, quick_run):
    numpy_runs = numpy_run_without_files[1]["runs"]
    jax_runs = {r["label"]: r for r in quick_run["final"]
                if r["dataset"] == DATASETS["california_housing"].name}
    assert len(numpy_runs) == len(jax_runs) == 2
    for run in numpy_runs:
        twin = jax_runs[run["label"]]
        assert (run["backend"], twin["backend"]) == ("numpy", "jax")
        assert run["compile_time_s"] == 0.0 and run["hyperparameters"] == twin["hyperparameters"]
        assert run["identity"] != twin["identity"]  # the backend is part of the identity
        assert math.isclose(run["final_loss"], twin["final_loss"], rel_tol=1e-5), (run, twin)


@pytest.mark.slow
def test_custom_benchmark_example(tmp_path, monkeypatch, quick_run):
    monkeypatch.chdir(tmp_path)
    benchmark = LargeScaleBenchmark(output_dir="./my_results", progress=False)
    # The spec loads 10-class MNIST (softmax, 7,850 parameters); the quick suite's binary
    # MNIST-2k keeps this test cheap (its f* is already in the cache).
    X_train, y_train, X_test, y_test, metadata = load_mnist(
        n_samples=2000, binary_classification=True, test_size=0.2, seed=0)
    configs = {"Adam": {"learning_rate": 0.001},
               "AdamW": {"learning_rate": 0.001, "weight_decay": 0.01}}
    results = benchmark.benchmark_dataset("MNIST-2k", X_train, y_train, X_test, y_test,
                                          metadata, configs, max_epochs=20)
    assert set(results) == {"Adam", "AdamW"}
    assert {r["problem"] for r in results.values()} == {"logistic"}  # inferred from labels
    path = benchmark.save_results("mnist_2k_results.json")
    report = benchmark.generate_summary_report()
    assert path == tmp_path / "my_results" / "mnist_2k_results.json"
    assert len(load_results(path)["runs"]) == 2
    assert "## MNIST-2k" in report.read_text()
    assert json.loads((tmp_path / "my_results" / "large_scale_results.json").read_text())["runs"]
    # AdamW's decoupled decay moves its fixed point off the L2 problem's optimum.
    assert results["AdamW"]["final_loss"] != results["Adam"]["final_loss"]
    # The test error, recomputed from a rerun of the same (deterministic) training.
    adam = results["Adam"]
    rerun = training.run(make_problem("logistic", X_train, y_train, 1e-4), "adam",
                         hyperparams={"learning_rate": 0.001}, epochs=20,
                         seed=adam["run_seed"])
    logits = np.asarray(X_test, np.float64) @ np.asarray(rerun.params, np.float64)
    error = np.mean((logits >= 0) != (np.asarray(y_test) == 1))
    assert math.isclose(adam["test_error"], error, abs_tol=1e-12)
    assert rerun.final_loss == adam["final_loss_recorded"]
    problem = make_problem("logistic", X_train, y_train, 1e-4)
    exact = problem.loss(np.asarray(rerun.params, np.float64), problem.X, problem.y, xp=np)
    assert math.isclose(adam["final_loss"], float(exact), rel_tol=1e-12)


@pytest.mark.slow
def test_tune_runs_a_grid_sweep_and_reports_the_best_rate(tmp_path):
    plan = campaign.plan_campaign(datasets=["california_housing"], optimizers=["sgd"], epochs=30)
    summary = campaign.run_campaign(plan, output_dir=tmp_path, tune=True, stream=None)
    (run,) = load_results(summary.results_path)["runs"]
    tuning = run["tuning"]
    centre = run["hyperparameters"]["learning_rate"]  # 1/L
    assert np.allclose(tuning["learning_rates"], centre * 2.0 ** np.arange(-4, 4))
    finals = np.where([s == "diverged" for s in tuning["statuses"]], np.inf,
                      tuning["final_losses"])
    assert "diverged" in tuning["statuses"]  # 8/L is past gradient descent's 2/L limit
    best = tuning["learning_rates"][int(np.argmin(finals))]
    assert tuning["best_learning_rate"] == best == run["hyperparameters_run"]["learning_rate"]
    assert math.isclose(run["final_loss"], float(np.min(finals)), rel_tol=1e-5)
    assert f"lr={best:.3g} (tuned: best of 8 around {centre:.3g})" in (
        summary.report_path.read_text())


def test_corrupt_data_file_stops_the_campaign_or_is_skipped_when_allowed(tmp_path):
    mnist = tmp_path / "data" / "mnist"
    mnist.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (mnist / name).write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    plan = campaign.plan_campaign(suite="quick", datasets=["mnist_2k"])
    with pytest.raises(DataUnavailableError, match="t10k-images-idx3-ubyte.gz"):
        campaign.run_campaign(plan, output_dir=tmp_path / "out", data_dir=tmp_path / "data",
                              stream=None)
    assert not (tmp_path / "out").exists()
    summary = campaign.run_campaign(plan, output_dir=tmp_path / "out", data_dir=tmp_path / "data",
                                    stream=None, allow_missing_data=True)
    data = load_results(summary.results_path)
    assert data["runs"] == [] and summary.executed_runs == 0
    assert re.match(r"Data\w*Error: ", data["skipped"][0]["reason"])
    assert "t10k-images-idx3-ubyte.gz" in data["skipped"][0]["reason"]


def test_plans_take_epochs_from_the_suite_then_the_data_set():
    assert campaign.plan_campaign(suite="quick").entries == SUITES["quick"]
    plan = campaign.plan_campaign(suite="quick", datasets=["mnist_2k", "kappa_1e6"])
    assert [(e.dataset, e.epochs) for e in plan.entries] == [
        ("mnist_2k", 30), ("kappa_1e6", DATASETS["kappa_1e6"].epochs)]
    assert [c.spec for c in plan.optimizers] == ["sgd", "adam"]
    plan = campaign.plan_campaign(epochs=7, optimizers=["Adam", "sgd"])
    assert {e.epochs for e in plan.entries} == {7}
    assert [c.spec for c in plan.optimizers] == ["adam", "sgd"]
    assert [e.dataset for e in campaign.plan_campaign(suite="full").entries][-3:] == [
        "highdim_5000", "highdim_10000", "kappa_1e9"]
    extended = campaign.plan_campaign(suite="extended")
    assert extended.entries == SUITES["default"]
    specs = [c.spec for c in extended.optimizers]
    assert specs[:5] == ["sgd", "momentum", "nesterov", "adam", "adamw"]
    assert {"optax:lion", "optax:adafactor", "optax:contrib.muon",
            "optax:contrib.schedule_free_adamw"} <= set(specs)
    assert dict(extended.optimizers[specs.index("optax:lion")].hyperparameters)[
        "learning_rate"] == 1e-4
