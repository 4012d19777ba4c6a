"""The batch-scaling study: summaries, the steps-to-target engine, samplers, bad input, the CLI."""

import io
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optiscale_jax.problems import make_problem
from optiscale_jax.studies import batch_scaling, nqm, report, scaling_summary
from optiscale_jax.studies.workloads import finite_workload, nqm_workload
from optiscale_jax.training.steps_to_target import evaluation_schedule, steps_to_target


def test_scaling_summary_against_hand_computation():
    # S(B) = 1000 (1 + 64 / B): E_min -> 1000 * 64 as B -> 0, S_min -> 1000, B_crit = 64.
    batch = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    steps = [round(1000 * (1 + 64 / b)) for b in batch]
    summary = scaling_summary(batch, steps)
    assert summary.s_min == 1250 and summary.e_min == 65000
    assert summary.critical_batch_size == pytest.approx(65000 / 1250)
    assert summary.perfect_scaling_max_batch == 16           # E(16) = 80,000 <= 1.25 * 65,000 < E(32)
    assert summary.smallest_reached_batch == 1
    assert scaling_summary([1, 2, 4], [None, 100, 50]).smallest_reached_batch == 2
    assert summary.small_batch_slope == pytest.approx(np.log(33000 / 65000) / np.log(2))
    with pytest.raises(ValueError, match="distinct"):
        scaling_summary([1, 1], [10, 12])
    none = scaling_summary([1, 2], [None, None])
    assert none.critical_batch_size is None and none.reached == 0


def test_evaluation_schedule_is_geometric_and_ends_at_the_budget():
    schedule = evaluation_schedule(10_000, 1.02)
    assert schedule[0] == 0 and schedule[-1] == 10_000 and np.all(np.diff(schedule) > 0)
    assert np.all(np.diff(schedule)[:40] == 1)                # every step while 1.02^k < ~50
    ratios = schedule[2:] / schedule[1:-1]
    assert ratios[schedule[1:-1] > 100].max() < 1.03
    with pytest.raises(ValueError, match="max_steps"):
        evaluation_schedule(0)


@pytest.mark.slow  # compiles the engine and a loop (~3 s quiet)
def test_engine_first_crossing_equals_a_plain_loop():
    """Two SGD learning rates on a simulated NQM: the engine's step count and curve equal a Python loop."""
    model = nqm.make_nqm(20)
    workload = nqm_workload(model, target=0.5)
    sampler = workload.make_sampler(4)
    lrs = np.array([0.05, 0.3], np.float32)
    result = steps_to_target(params0=workload.params0, sample=sampler.sample, sample_state=sampler.state0,
                             grad=workload.grad, objective=workload.objective,
                             make_transform=lambda learning_rate: optax.sgd(learning_rate),
                             hyper={"learning_rate": lrs}, target=workload.target, max_steps=2000)
    noise_fn = jax.jit(lambda t: sampler.sample(t, (), ())[0])
    theta = jnp.asarray(workload.params0)
    losses, first = [float(workload.objective(theta, ()))], None
    for t in range(2000):
        theta = theta - lrs[1] * workload.grad(theta, noise_fn(t), ())
        losses.append(float(workload.objective(theta, ())))
        if first is None and t + 1 in set(result.eval_steps.tolist()) and losses[-1] <= workload.target:
            first = t + 1
            break
    assert result.steps[1] == first and result.steps[0] == -1  # the larger rate is faster; run stops there
    column = int(np.searchsorted(result.eval_steps, first))
    assert result.objective[1, column] == pytest.approx(losses[first], rel=1e-5)


@pytest.mark.slow  # solves f* and compiles the permutation sampler
def test_finite_batches_are_drawn_without_replacement():
    X = np.arange(20, dtype=np.float64).reshape(10, 2)
    problem = make_problem("least_squares", X, np.arange(10.0))
    workload = finite_workload("toy", "toy", problem, relative_target=0.5)
    sampler = workload.make_sampler(3)
    sample = jax.jit(sampler.sample)
    state, epochs = sampler.state0, []
    for t in range(9):                                     # 3 epochs of 10 // 3 = 3 batches
        (rows, _), state = sample(jnp.asarray(t), state, workload.data)
        epochs.append(np.asarray(rows)[:, 1])
    for e in range(3):
        seen = np.concatenate(epochs[3 * e:3 * e + 3])
        assert len(set(seen.tolist())) == 9                 # 9 distinct rows per epoch
    with pytest.raises(ValueError, match="batch size 16 is larger than the 10 rows of toy"):
        workload.check_batch_size(16)


@pytest.mark.slow  # compiles two sweeps
def test_unreachable_target_is_reported_not_reached():
    model = nqm.make_nqm(20)
    workload = nqm_workload(model, target=1e-6)            # below the noise floor at any rate
    spec = batch_scaling.resolve_specs(["sgd"])["sgd"]
    record = batch_scaling.tune_cell(workload, spec, 2, 0.1, points=3, max_steps=200, max_extensions=1,
                                     measure_noise=False)
    assert record["status"] == "not_reached" and record["steps"] is None
    assert "**not reached**" in report._cell_row(record)


@pytest.mark.parametrize("overrides, match", [
    ({"workloads": ("nqm", "imagenet")}, "unknown workload"),
    ({"streaming_kappa": 1e15}, "kappa must be a finite number in"),
    ({"streaming_spectrum": "cubic"}, "unknown spectrum"),
    ({"batch_exponents": (0, 30)}, "batch_exponents must be integers"),
    ({"target_fraction": 1.5}, "target_fraction must be in"),
])
def test_bad_settings_name_the_value_and_the_fix(overrides, match):
    with pytest.raises(ValueError, match=match):
        batch_scaling.check_settings(batch_scaling.StudySettings(**overrides))


def test_optimizer_specs_ours_optax_and_a_user_file(tmp_path):
    factory = tmp_path / "my_opt.py"
    factory.write_text("import optax\n\ndef make(learning_rate):\n    return optax.sgd(learning_rate)\n")
    specs = batch_scaling.resolve_specs(["momentum", "optax:lion", f"mine={factory}:make"])
    assert list(specs) == ["momentum", "lion", "mine"]
    assert specs["mine"].build(learning_rate=0.5).update is not None


def test_bad_optimizer_specs_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'bogus'"):
        batch_scaling.resolve_specs(["sgd", "bogus"])
    with pytest.raises(ValueError, match="given twice"):
        batch_scaling.resolve_specs(["sgd", "sgd"])


def test_batch_larger_than_a_data_set_fails_before_any_work(tmp_path):
    settings = batch_scaling.StudySettings(workloads=("california_housing",), optimizers=("sgd",),
                                           batch_exponents=(0, 15),
                                           data_dir=os.environ.get("OPTISCALE_DATA_DIR"))
    with pytest.raises(ValueError, match="batch size 32768 is larger than the 20640 rows"):
        batch_scaling.run_study(settings, tmp_path)
    assert not (tmp_path / batch_scaling.RESULTS_FILENAME).exists()


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "experiments.batch_scaling", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.mark.slow  # the --quick study end to end (~30 s), then --resume and --report_only in-process
def test_quick_study_end_to_end_resumes_and_rebuilds_from_json(tmp_path):
    out, lines = tmp_path / "study", io.StringIO()
    path = batch_scaling.run_study(batch_scaling.quick_settings(), out, stream=lines)
    assert "ETA" in lines.getvalue() and "streaming_least_squares | sgd | B=64" in lines.getvalue()
    data = json.loads(path.read_text())
    cells = {(c["workload"], c["optimizer"], c["batch_size"]): c for c in data["cells"]}
    assert len(cells) == 3 * 7 + 3
    assert all(c["status"] == "reached" for c in cells.values())
    sgd = [cells[("nqm", "sgd", b)]["steps"] for b in (1, 4)]
    assert 3.8 < sgd[0] / sgd[1] < 4.2                      # perfect scaling at small B
    report_text = (out / report.REPORT_FILENAME).read_text()
    assert "critical batch size" in report_text.lower() and "batch_scaling_nqm.png" in report_text
    for name in ("batch_scaling_nqm.png", "batch_scaling_streaming_least_squares.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        (out / name).unlink()
    (out / report.REPORT_FILENAME).unlink()
    batch_scaling.rebuild(out)                              # from the JSON alone
    assert (out / report.REPORT_FILENAME).read_text() == report_text
    assert (out / "batch_scaling_nqm.png").exists()
    again = io.StringIO()
    batch_scaling.run_study(batch_scaling.quick_settings(), out, resume=True, stream=again)
    assert again.getvalue().count("stored (resume)") == len(cells)
    assert json.loads(path.read_text())["cells"] == data["cells"]


@pytest.mark.slow  # two fresh interpreters importing JAX
def test_cli_help_and_one_line_errors(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    helped = _cli("--help", cwd=root)
    assert helped.returncode == 0 and "--optimizers" in helped.stdout
    bad = _cli("--streaming_kappa=0.5", f"--output_dir={tmp_path}", cwd=root)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "kappa must be a finite number in [1, 1e12]" in bad.stderr
    assert not any(tmp_path.iterdir())
