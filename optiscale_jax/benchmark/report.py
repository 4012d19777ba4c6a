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

from optiscale_jax.benchmark.metrics import relative_suboptimality
from optiscale_jax.benchmark.plots import plot_dataset_curves, plot_filename
from optiscale_jax.benchmark.record import RunRecord
from optiscale_jax.benchmark.store import load_results, utc_now

__all__ = ["REPORT_FILENAME", "format_hyperparameters", "recorded_relative_suboptimality",
           "render_report", "write_report"]

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


def format_hyperparameters(record: RunRecord) -> str:
    """The hyperparameters a user chose, short: ``lr=0.001, wd=0.0001``; a tuned run
    shows the rate it ran with and the grid's centre."""
    tuning = record.tuning
    parts = []
    for key, value in sorted((record.hyperparameters or {}).items()):
        name = _SHORT.get(key, key)
        if key == "learning_rate" and tuning:
            parts.append(f"lr={tuning['best_learning_rate']:.3g} (tuned: best of "
                         f"{len(tuning['learning_rates'])} around {value:.3g})")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{name}={value:.3g}")
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts) or "defaults"


def recorded_relative_suboptimality(record: RunRecord) -> float | None:
    """The table's *Rel. subopt.*: of the run's own final value (the curve's last point)."""
    if record.relative_suboptimality_recorded is not None:
        return record.relative_suboptimality_recorded
    if record.final_loss_recorded is None or record.f_star is None:
        return record.relative_suboptimality
    return float(relative_suboptimality(record.final_loss_recorded, record.f_star))


def _test_cell(record: RunRecord) -> str:
    if record.test_metric == "error_rate":
        return "n/a" if record.test_error is None else f"{100 * float(record.test_error):.2f}"
    if record.test_metric == "mse":
        return _num(record.test_mse)
    return "n/a"


def _epochs_to(record: RunRecord) -> str:
    epochs_to = record.epochs_to or {}
    return " / ".join("-" if epochs_to.get(k) is None else str(epochs_to[k])
                      for k in ("1e-2", "1e-4", "1e-6"))


def _compile_cell(record: RunRecord) -> str:
    """Compile seconds; ``-`` for the reference loop, which compiles nothing."""
    return "-" if record.backend != "jax" else _num(record.compile_time_s, ".2f")


def _row(record: RunRecord, category: str) -> list[str]:
    per_epoch = (None if record.failed or record.time_per_epoch_s is None
                 else 1e3 * float(record.time_per_epoch_s))
    final = record.final_loss_recorded if record.final_loss_recorded is not None \
        else record.final_loss
    cells = [
        str(record.label or record.optimizer), format_hyperparameters(record),
        str(record.backend), record.status.value, _num(record.run_time_s, ".3f"),
        _num(per_epoch, ".3f"), _compile_cell(record), _num(final, ".6e"),
        _num(recorded_relative_suboptimality(record), ".2e"),
        _num(record.relative_suboptimality, ".2e"), _test_cell(record), _epochs_to(record),
    ]
    if category == "high_dimensional":
        state = record.optimizer_state_bytes
        cells += [_num(record.peak_memory_mb, ".1f"), _num(record.peak_memory_increase_mb, ".1f"),
                  str(record.peak_memory_source or "n/a"),
                  _num(None if state is None else state / 1024, ".1f")]
    if category == "extreme_conditioning":
        cells.append("✅ Yes" if record.converged else "❌ No")
    return cells


def _header(records: Sequence[RunRecord], category: str) -> list[str]:
    metrics = {r.test_metric for r in records}
    test = ("Test error (%)" if metrics == {"error_rate"} else
            "Test MSE" if metrics == {"mse"} else "Test")
    cols = ["Optimizer", "Hyperparameters", "Backend", "Status", "Time (s)", "ms/epoch",
            "Compile (s)", "Final loss", "Rel. subopt.", "Rel. subopt. (float64 eval.)", test,
            "Epochs to 1e-2 / 1e-4 / 1e-6"]
    if category == "high_dimensional":
        cols += ["Peak memory (MB)", "Increase (MB)", "Memory source", "Optimizer state (KiB)"]
    if category == "extreme_conditioning":
        cols.append("Converged")
    return cols


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def _dataset_description(record: RunRecord) -> str:
    info = record.dataset_info or {}
    parts = [f"problem **{record.problem}**" + (f" (L2 = {record.l2:g})" if record.l2 else ""),
             f"n_train = {info.get('n_train')}", f"n_test = {info.get('n_test')}",
             f"d = {info.get('n_features')}",
             f"f* = {_num(record.f_star, '.10g')} ({record.f_star_method or '?'})",
             f"kappa(X^T X / n) = {_num(info.get('condition_number'), '.3e')}"]
    if info.get("condition_number_nonzero") is not None and not math.isfinite(
            float(info.get("condition_number", math.inf))):
        parts.append(f"over the nonzero spectrum {_num(info['condition_number_nonzero'], '.3e')}"
                     f" (rank {info.get('rank')})")
    if info.get("target_condition_number") is not None:
        parts.append(f"generator target kappa = {_num(info['target_condition_number'], '.0e')}")
    if record.kernel:
        parts.append(f"engine kernel {record.kernel} (setup {_num(record.setup_time_s, '.2f')}"
                     " s per run, outside Time)")
    parts += [f"max epochs {record.epochs}", f"dtype {record.dtype}", f"device {record.device}"]
    if info.get("source"):
        parts.append(f"source: {info['source']}")
    return "; ".join(parts) + "."


def _environment_lines(environments: Mapping[str, Mapping[str, Any]],
                       records: Sequence[RunRecord]) -> list[str]:
    used = [e for e in dict.fromkeys(r.environment_id for r in records) if e in environments]
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


def _optimizer_lines(records: Sequence[RunRecord]) -> list[str]:
    """One line per distinct optimizer: spec, import path, version, every hyperparameter,
    state bytes per parameter."""
    seen: dict[str, str] = {}
    for record in records:
        info = record.optimizer_info
        if not info:
            continue
        hyper = ", ".join(f"{k}={v}" for k, v in sorted(info.get("hyperparameters", {}).items()))
        per_param = info.get("state_bytes_per_parameter")
        line = (f"- **{record.label or record.optimizer}**: `{info.get('spec')}`, "
                f"`{info.get('import_path')}` ({info.get('source')}, version "
                f"{info.get('version')}); hyperparameters {hyper or 'none'}; state "
                f"{'n/a' if per_param is None else f'{per_param:g}'} bytes per parameter")
        seen.setdefault(line, line)
    return list(seen)


_HOW_TO_READ = (
    "How to read it: *Time* is the run itself, blocking on device work, compile excluded "
    "(*Compile* is on its own; `-` for the NumPy/CuPy loop, which compiles nothing); "
    "*Final loss* is the run's own training objective (L2 term included) after the last "
    "epoch, in the run's dtype, and *Rel. subopt.* its (f - f*) / |f*| with f* the exact "
    "optimum solved in float64: both are the last point of the plotted curve; *Rel. subopt. "
    "(float64 eval.)* is the same for the final parameters evaluated in float64 "
    "(`final_loss` in the JSON), which measures the iterate rather than the rounding of a "
    "float32 evaluation; *Epochs to* counts epochs until the relative suboptimality first "
    "reached 1e-2 / 1e-4 / 1e-6 (- = never); *Status* is `converged` when the run's own "
    "final relative suboptimality is <= 1e-6, `max_epochs` otherwise, `diverged` when the "
    "loss became non-finite or blew up (parameters frozen), `failed` when the run raised "
    "(message below). Test error is the misclassification rate on the held-out split; Test "
    "MSE the mean squared error there.")


def _summary_lines(records: Sequence[RunRecord], skipped: Sequence[Mapping[str, Any]],
                   results_name: str) -> list[str]:
    """The report's top: counts by status, skipped data sets, total compile time."""
    statuses: dict[str, int] = {}
    for record in records:
        statuses[record.status.value] = statuses.get(record.status.value, 0) + 1
    compile_s = sum(r.compile_time_s or 0.0 for r in records if r.backend == "jax")
    lines = ["# Benchmark report", "",
             f"Built {utc_now()} from `{results_name}` alone ({len(records)} runs: "
             + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + "). "
             f"Total compile time of the runs: {compile_s:.2f} s.", ""]
    if skipped:
        lines += [f"**Skipped data sets ({len(skipped)})**: "
                  + "; ".join(f"{s['dataset']}" for s in skipped)
                  + " (reasons under *Skipped data sets* below).", ""]
    return lines + [_HOW_TO_READ, ""]


def _dataset_section(dataset: str, records: Sequence[RunRecord], plot: str | None) -> list[str]:
    category = records[0].category or "custom"
    lines = [f"## {dataset}", "", _dataset_description(records[0]), ""]
    lines += _table(_header(records, category), [_row(r, category) for r in records])
    if category == "high_dimensional":
        lines += ["", "Peak memory is the process's high-water mark during the run, "
                  "Increase that peak minus the process's resident memory when the run "
                  "started (the source says how it was measured); optimizer state is "
                  "the size of the optimizer's state for these parameters."]
    if plot:
        lines += ["", f"![Convergence on {dataset}]({plot})", "",
                  f"[{plot}]({plot}): the plotted curves are the runs' own values (the table's "
                  "*Final loss* and *Rel. subopt.* are their last points) against epochs, and "
                  "against run time when the runs are long enough to time; a value at or "
                  "below f* (float rounding) is a triangle on the bottom edge, with a note."]
    return lines + [""]


def render_report(data: Mapping[str, Any], results_name: str,
                  plot_names: Mapping[str, str | None]) -> str:
    """The Markdown text of the report for a loaded results file."""
    records = [RunRecord.from_json(run) for run in data["runs"]]
    lines = _summary_lines(records, data.get("skipped", []), results_name)
    for dataset, group in _by_dataset(records).items():
        lines += _dataset_section(dataset, group, plot_names.get(dataset))
    optimizers = _optimizer_lines(records)
    if optimizers:
        lines += ["## Optimizers", ""] + optimizers + [""]
    if data.get("skipped"):
        lines += ["## Skipped data sets", ""]
        lines += [f"- **{s['dataset']}**: {s['reason']}" for s in data["skipped"]]
        lines.append("")
    failed = [r for r in records if r.failed]
    if failed:
        lines += ["## Failed runs", ""]
        lines += [f"- {r.dataset} / {r.label}: `{r.error}`" for r in failed]
        lines.append("")
    lines += ["## Environment", ""] + _environment_lines(data.get("environments", {}), records)
    lines.append("")
    return "\n".join(lines)


def _by_dataset(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    grouped: dict[str, list[RunRecord]] = {}
    for record in records:
        grouped.setdefault(record.dataset, []).append(record)
    return grouped


def write_report(results_path: str | os.PathLike, output_dir: str | os.PathLike | None = None,
                 filename: str = REPORT_FILENAME) -> pathlib.Path:
    """Reads the results JSON and writes the report and one PNG per data set.

    Returns the report's path (in ``output_dir``, default: the JSON's folder).
    """
    results_path = pathlib.Path(results_path)
    data = load_results(results_path)
    out = pathlib.Path(output_dir) if output_dir is not None else results_path.parent
    out.mkdir(parents=True, exist_ok=True)
    plot_names: dict[str, str | None] = {}
    for dataset, group in _by_dataset([RunRecord.from_json(r) for r in data["runs"]]).items():
        name = plot_filename(dataset)
        written = plot_dataset_curves(group, out / name, title=dataset)
        plot_names[dataset] = name if written is not None else None
    text = render_report(data, results_path.name, plot_names)
    path = out / filename
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
