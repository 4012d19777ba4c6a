"""Progress lines: one per run, counts, and an ETA from the mean executed-run time."""

import io
import math

from optiscale_jax.benchmark.progress import ProgressReporter, format_duration
from optiscale_jax.benchmark.record import RunRecord


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_lines_and_eta_follow_the_mean_run_time():
    clock, out = _Clock(), io.StringIO()
    progress = ProgressReporter(5, stream=out, clock=clock)
    assert math.isnan(progress.eta_s())
    progress.run_skipped("MNIST", "SGD")          # resumed: done, not timed
    clock.now += 10
    progress.mark_start()
    clock.now += 4
    line = progress.run_finished(RunRecord.from_json({
        "identity": "a", "dataset": "MNIST", "label": "Adam", "status": "converged",
        "backend": "jax", "final_loss": 0.30127, "relative_suboptimality": 1e-7,
        "run_time_s": 3.5, "compile_time_s": 0.5}))
    assert line.startswith("[2/5] MNIST | Adam | converged | loss 3.013e-01")
    assert "wall 4.0 s" in line and "elapsed 0:00:14" in line
    assert progress.eta_s() == 4 * 3 and line.endswith("ETA 0:00:12")
    clock.now += 8
    line = progress.run_finished(RunRecord.from_json({
        "identity": "b", "dataset": "MNIST", "label": "AdamW", "status": "failed",
        "error": "ValueError: boom"}))
    assert "FAILED: ValueError: boom" in line and progress.eta_s() == 6 * 2
    assert out.getvalue().count("\n") == 3


def test_format_duration():
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(math.nan) == "?"


def test_reference_loop_rows_show_no_compile_time():
    line = ProgressReporter(1, stream=None).run_finished(RunRecord.from_json({
        "identity": "c", "dataset": "d", "label": "SGD", "status": "max_epochs",
        "backend": "numpy", "final_loss": 1.0, "run_time_s": 0.1, "compile_time_s": 0.0}))
    assert "compile -" in line
