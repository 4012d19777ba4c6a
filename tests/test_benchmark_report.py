"""Report writer: tables, plots and links built from the results JSON alone; every plotted
curve ends on its table row's value."""

import math
import re

import numpy as np

from optiscale_jax.benchmark.plots import curve_points
from optiscale_jax.benchmark.record import RunRecord
from optiscale_jax.benchmark.report import write_report
from optiscale_jax.benchmark.store import ResultsStore, load_results


def _record(dataset, category, label, status="max_epochs", **extra):
    epochs = np.arange(1, 51)
    rel = 0.5 * 0.9 ** epochs
    record = {
        "identity": f"{dataset}-{label}", "dataset": dataset, "category": category,
        "problem": "least_squares", "l2": 0.0, "optimizer": label.lower(), "label": label,
        "hyperparameters": {"learning_rate": 0.01}, "backend": "jax", "device": "cpu",
        "dtype": "float32", "epochs": 50, "status": status, "run_time_s": 0.25,
        "time_per_epoch_s": 0.005, "compile_time_s": 0.4, "final_loss": 1.0 + 0.9 * rel[-1],
        "final_loss_recorded": 1.0 + rel[-1], "f_star": 1.0, "f_star_method": "lstsq",
        "relative_suboptimality": 0.9 * rel[-1], "relative_suboptimality_recorded": rel[-1],
        "converged": status == "converged", "test_metric": "mse", "test_mse": 0.123,
        "epochs_to": {"1e-2": 38, "1e-4": None, "1e-6": None},
        "peak_memory_mb": 321.5, "peak_memory_increase_mb": 12.25, "peak_memory_source": "VmHWM",
        "optimizer_state_bytes": 8000,
        "dataset_info": {"n_train": 80, "n_test": 20, "n_features": 10,
                         "condition_number": 1e6, "target_condition_number": 1e6},
        "curve": {"epoch": epochs.tolist(), "time_s": (0.005 * epochs).tolist(),
                  "relative_suboptimality": rel.tolist()},
        "environment_id": "env", "kernel": "quadratic"}
    record.update(extra)
    return record


def _cells(report, dataset, label):
    section = report.split(f"## {dataset}\n")[1].split("\n## ")[0]
    row = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_report_rows_are_the_stored_numbers(tmp_path):
    store = ResultsStore(tmp_path / "large_scale_results.json")
    env = store.add_environment({"python": "3.11", "packages": {"jax": "0.10.2"}})
    store.add_run(_record("HighDim-d1000", "high_dimensional", "Adam", environment_id=env))
    store.add_run(_record("Kappa-1e6", "extreme_conditioning", "SGD", backend="numpy",
                          compile_time_s=0.0))
    store.add_run(_record("Kappa-1e6", "extreme_conditioning", "Adam", status="converged",
                          relative_suboptimality=5e-7, final_loss=1.0000005))
    store.add_run(_record("Kappa-1e6", "extreme_conditioning", "AdamW", status="failed",
                          error="FloatingPointError: boom", run_time_s=None,
                          time_per_epoch_s=None, final_loss=None, final_loss_recorded=None,
                          relative_suboptimality_recorded=None, curve=None))
    store.add_skipped("MNIST-10k", "files missing under /nowhere")
    path = write_report(store.path)
    report = path.read_text()

    adam = _cells(report, "HighDim-d1000", "Adam")
    rec = store.get("HighDim-d1000-Adam")
    assert adam[1] == "lr=0.01" and adam[3] == "max_epochs"
    assert float(adam[4]) == rec.run_time_s and float(adam[5]) == 1e3 * rec.time_per_epoch_s
    assert adam[6] == "0.40"
    # Final loss and Rel. subopt. are the run's own values: the plotted curve's last point.
    assert float(adam[7]) == float(f"{rec.final_loss_recorded:.6e}")
    assert math.isclose(float(adam[8]), (rec.final_loss_recorded - rec.f_star) / rec.f_star,
                        rel_tol=1e-2)
    assert float(adam[8]) == float(f"{curve_points(rec).values[-1]:.2e}")
    assert float(adam[9]) == float(f"{rec.relative_suboptimality:.2e}")  # float64 evaluation
    assert adam[10] == "1.230e-01" and adam[11] == "38 / - / -"
    assert adam[12:] == ["321.5", "12.2", "VmHWM", "7.8"]  # memory only for high-dimensional
    assert "Peak memory" not in report.split("## Kappa-1e6")[1].split("\n## ")[0]
    assert _cells(report, "Kappa-1e6", "SGD")[6] == "-"  # the NumPy loop compiles nothing
    assert "Total compile time of the runs: 1.20 s." in report  # the three jax runs

    assert _cells(report, "Kappa-1e6", "SGD")[-1] == "❌ No"
    assert _cells(report, "Kappa-1e6", "Adam")[-1] == "✅ Yes"
    assert _cells(report, "Kappa-1e6", "AdamW")[3] == "failed"
    assert "FloatingPointError: boom" in report
    assert "**MNIST-10k**: files missing under /nowhere" in report
    top = report.split("How to read it")[0]
    assert "**Skipped data sets (1)**: MNIST-10k" in top

    links = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", report)
    assert len(links) == 2
    for link in links:
        png = (tmp_path / link).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_values_below_f_star_are_marked_not_clipped_and_short_runs_have_no_time_panel(tmp_path):
    store = ResultsStore(tmp_path / "large_scale_results.json")
    rel = [0.5, 1e-3, 1e-9, -2e-9, -3e-9]
    store.add_run(_record("Tiny", "regression", "SGD", run_time_s=0.004, curve={
        "epoch": list(range(5)), "time_s": [0.001 * k for k in range(5)],
        "relative_suboptimality": rel}, relative_suboptimality_recorded=rel[-1]))
    report = write_report(store.path).read_text()
    assert float(_cells(report, "Tiny", "SGD")[8]) == -3e-9  # the table keeps the sign
    record = RunRecord.from_json(load_results(store.path)["runs"][0])
    assert curve_points(record).values[-1] == -3e-9
    png = tmp_path / "convergence_Tiny.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
