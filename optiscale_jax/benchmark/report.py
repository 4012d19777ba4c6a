"""Report writer: ``BENCHMARK_REPORT.md`` and its plots, from the results JSON alone.

Per data set, one table row per run: optimizer, hyperparameters, backend,
status, run time (compile excluded), time per epoch, compile time, final
loss, relative suboptimality, test error (classification, %) or test MSE
(regression), epochs to relative suboptimality 1e-2 / 1e-4 / 1e-6; plus peak
memory for high-dimensional data sets and converged yes/no for extreme
conditioning. Every cell is a stored field of the run's record, formatted,
so each row can be recomputed from the JSON.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from optiscale_jax.benchmark.plots import plot_dataset_curves, plot_filename
from optiscale_jax.benchmark.store import load_results, utc_now

__all__ = ["REPORT_FILENAME", "format_hyperparameters", "render_report", "write_report"]

REPORT_FILENAME = "BENCHMARK_REPORT.md"
_SHORT = {"learning_rate": "lr", "weight_decay": "wd", "momentum": "mu"}


def _num(value: Any, spec: str = ".3e") -> str:
    """A number for a table cell; ``n/a`` when missing."""
    if value is None:
        return "n/a"
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def format_hyperparameters(record: Mapping[str, Any]) -> str:
    """The hyperparameters a user chose, short: ``lr=0.001, wd=0.0001``; a tuned run
    shows the rate it ran with and the grid's centre."""
    tuning = record.get("tuning")
    parts = []
    for key, value in sorted(record.get("hyperparameters", {}).items()):
        name = _SHORT.get(key, key)
        if key == "learning_rate" and tuning:
            parts.append(f"lr={tuning['best_learning_rate']:.3g} (tuned: best of "
                         f"{len(tuning['learning_rates'])} around {value:.3g})")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{name}={value:.3g}")
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts) or "defaults"


def _test_cell(record: Mapping[str, Any]) -> str:
    metric = record.get("test_metric")
    if metric == "error_rate":
        value = record.get("test_error")
        return "n/a" if value is None else f"{100 * float(value):.2f}"
    if metric == "mse":
        return _num(record.get("test_mse"))
    return "n/a"


def _epochs_to(record: Mapping[str, Any]) -> str:
    epochs_to = record.get("epochs_to") or {}
    return " / ".join("-" if epochs_to.get(k) is None else str(epochs_to[k])
                      for k in ("1e-2", "1e-4", "1e-6"))


def _row(record: Mapping[str, Any], category: str) -> list[str]:
    failed = record.get("status") == "failed"
    cells = [
        str(record.get("label", record.get("optimizer"))),
        format_hyperparameters(record),
        str(record.get("backend")),
        str(record.get("status")),
        _num(record.get("run_time_s"), ".3f"),
        _num(None if failed else 1e3 * float(record["time_per_epoch_s"]), ".3f")
        if record.get("time_per_epoch_s") is not None else "n/a",
        _num(record.get("compile_time_s"), ".2f"),
        _num(record.get("final_loss"), ".6e"),
        _num(record.get("relative_suboptimality"), ".2e"),
        _test_cell(record),
        _epochs_to(record),
    ]
    if category == "high_dimensional":
        state = record.get("optimizer_state_bytes")
        if state is None and record.get("optimizer_state_mb") is not None:  # older records
            state = record["optimizer_state_mb"] * 2**20
        cells += [_num(record.get("peak_memory_mb"), ".1f"),
                  _num(record.get("peak_memory_increase_mb"), ".1f"),
                  str(record.get("peak_memory_source", "n/a")),
                  _num(None if state is None else state / 1024, ".1f")]
    if category == "extreme_conditioning":
        cells.append("✅ Yes" if record.get("converged") else "❌ No")
    return cells


def _header(records: Sequence[Mapping[str, Any]], category: str) -> list[str]:
    metrics = {r.get("test_metric") for r in records}
    test = ("Test error (%)" if metrics == {"error_rate"} else
            "Test MSE" if metrics == {"mse"} else "Test")
    cols = ["Optimizer", "Hyperparameters", "Backend", "Status", "Time (s)", "ms/epoch",
            "Compile (s)", "Final loss", "Rel. subopt.", test, "Epochs to 1e-2 / 1e-4 / 1e-6"]
    if category == "high_dimensional":
        cols += ["Peak memory (MB)", "Increase (MB)", "Memory source", "Optimizer state (KiB)"]
    if category == "extreme_conditioning":
        cols.append("Converged")
    return cols


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def _dataset_description(record: Mapping[str, Any]) -> str:
    info = record.get("dataset_info", {})
    problem = record.get("problem")
    l2 = record.get("l2")
    parts = [f"problem **{problem}**" + (f" (L2 = {l2:g})" if l2 else ""),
             f"n_train = {info.get('n_train')}", f"n_test = {info.get('n_test')}",
             f"d = {info.get('n_features')}",
             f"f* = {_num(record.get('f_star'), '.10g')} ({record.get('f_star_method', '?')})",
             f"kappa(X^T X / n) = {_num(info.get('condition_number'), '.3e')}"]
    if info.get("condition_number_nonzero") is not None and not math.isfinite(
            float(info.get("condition_number", math.inf))):
        parts.append(f"over the nonzero spectrum {_num(info['condition_number_nonzero'], '.3e')}"
                     f" (rank {info.get('rank')})")
    if info.get("target_condition_number") is not None:
        parts.append(f"generator target kappa = {_num(info['target_condition_number'], '.0e')}")
    if record.get("kernel"):
        parts.append(f"engine kernel {record['kernel']} (setup {_num(record.get('setup_time_s'), '.2f')}"
                     " s per run, outside Time)")
    parts.append(f"max epochs {record.get('epochs')}")
    parts.append(f"dtype {record.get('dtype')}")
    parts.append(f"device {record.get('device')}")
    if info.get("source"):
        parts.append(f"source: {info['source']}")
    return "; ".join(parts) + "."


def _environment_lines(environments: Mapping[str, Mapping[str, Any]],
                       records: Sequence[Mapping[str, Any]]) -> list[str]:
    used = [e for e in dict.fromkeys(r.get("environment_id") for r in records) if e in environments]
    if not used:
        used = list(environments)
    lines = []
    for env_id in used:
        env = environments[env_id]
        pkgs = env.get("packages", {})
        cpu = env.get("cpu", {})
        jax_info = env.get("jax", {})
        git = env.get("git", {})
        threads = ", ".join(f"{t.get('api')} {t.get('num_threads')}"
                            for t in env.get("blas_threads", [])) or "n/a"
        set_env = ", ".join(f"{k}={v}" for k, v in env.get("env", {}).items() if v) or "none"
        lines += [
            f"- Environment `{env_id}` (recorded {env.get('recorded_at')}): Python "
            f"{env.get('python')}, jax {pkgs.get('jax')}, jaxlib {pkgs.get('jaxlib')}, optax "
            f"{pkgs.get('optax')}, numpy {pkgs.get('numpy')}; {env.get('platform')}.",
            f"  CPU {cpu.get('model')} ({cpu.get('cores_available')} of "
            f"{cpu.get('logical_cores')} logical cores available); JAX devices "
            f"{jax_info.get('devices')}; BLAS threads: {threads}; env: {set_env}.",
            f"  git {git.get('commit')}{' (dirty)' if git.get('dirty') else ''}; command "
            f"`{' '.join(env.get('argv', []))}`; flags {dict(env.get('flags', {}))}.",
        ]
    return lines


def render_report(data: Mapping[str, Any], results_name: str,
                  plot_names: Mapping[str, str | None]) -> str:
    """The Markdown text of the report for a loaded results file."""
    runs = data["runs"]
    statuses: dict[str, int] = {}
    for run in runs:
        statuses[run.get("status", "?")] = statuses.get(run.get("status", "?"), 0) + 1
    lines = [
        "# Benchmark report",
        "",
        f"Built {utc_now()} from `{results_name}` alone ({len(runs)} runs: "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ").",
        "",
        "How to read it: *Time* is the run itself, blocking on device work, compile "
        "excluded (*Compile* is on its own); *Final loss* is the training objective "
        "(L2 term included) at the parameters after the last epoch, evaluated in float64 "
        "(the run's own value in its dtype is `final_loss_recorded` in the JSON); "
        "*Rel. subopt.* is "
        "(f - f*) / |f*| with f* the exact optimum solved in float64; *Epochs to* "
        "counts epochs until the relative suboptimality first reached 1e-2 / 1e-4 / "
        "1e-6 (- = never); *Status* is `converged` when the run's own final relative "
        "suboptimality (in its dtype) is <= 1e-6, `max_epochs` otherwise, `diverged` when the loss "
        "became non-finite or blew up (parameters frozen), `failed` when the run "
        "raised (message below). Test error is the misclassification rate on the "
        "held-out split; Test MSE the mean squared error there.",
        "",
    ]
    order: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        order.setdefault(run["dataset"], []).append(run)
    for dataset, records in order.items():
        category = records[0].get("category", "custom")
        lines += [f"## {dataset}", "", _dataset_description(records[0]), ""]
        lines += _table(_header(records, category), [_row(r, category) for r in records])
        if category == "high_dimensional":
            lines += ["", "Peak memory is the process's high-water mark during the run, "
                      "Increase that peak minus the process's resident memory when the run "
                      "started (the source says how it was measured); optimizer state is "
                      "the size of the optimizer's state for these parameters."]
        plot = plot_names.get(dataset)
        if plot:
            lines += ["", f"![Convergence on {dataset}]({plot})", "",
                      f"[{plot}]({plot}): relative suboptimality against epochs (left) and "
                      "against run time (right; epoch x mean time per epoch). Values at or "
                      "below 1e-12 (float32 losses can round to just under f*) are drawn at 1e-12."]
        lines.append("")
    if data.get("skipped"):
        lines += ["## Skipped data sets", ""]
        lines += [f"- **{s['dataset']}**: {s['reason']}" for s in data["skipped"]]
        lines.append("")
    failed = [r for r in runs if r.get("status") == "failed"]
    if failed:
        lines += ["## Failed runs", ""]
        lines += [f"- {r['dataset']} / {r.get('label')}: `{r.get('error')}`" for r in failed]
        lines.append("")
    lines += ["## Environment", ""] + _environment_lines(data.get("environments", {}), runs)
    lines.append("")
    return "\n".join(lines)


def write_report(results_path: str | os.PathLike, output_dir: str | os.PathLike | None = None,
                 filename: str = REPORT_FILENAME) -> pathlib.Path:
    """Reads the results JSON and writes the report and one PNG per data set.

    Returns the report's path (in ``output_dir``, default: the JSON's folder).
    """
    results_path = pathlib.Path(results_path)
    data = load_results(results_path)
    out = pathlib.Path(output_dir) if output_dir is not None else results_path.parent
    out.mkdir(parents=True, exist_ok=True)
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for run in data["runs"]:
        grouped.setdefault(run["dataset"], []).append(run)
    plot_names: dict[str, str | None] = {}
    for dataset, records in grouped.items():
        name = plot_filename(dataset)
        written = plot_dataset_curves(records, out / name, title=dataset)
        plot_names[dataset] = name if written is not None else None
    text = render_report(data, results_path.name, plot_names)
    path = out / filename
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
