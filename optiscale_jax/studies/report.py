"""The batch-scaling report (Markdown + PNGs), rebuilt from the results JSON alone."""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from optiscale_jax.studies.analysis import PERFECT_SCALING_TOLERANCE, scaling_summary
from optiscale_jax.studies.plots import plot_filename, plot_workload

__all__ = ["REPORT_FILENAME", "load_study", "render_report", "write_report"]

REPORT_FILENAME = "BATCH_SCALING_REPORT.md"


def load_study(path: str | os.PathLike) -> dict[str, Any]:
    """The results JSON of a study (strict JSON: no non-finite numbers are written)."""
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"cannot read the study results {path}: {err}; run the study first "
            "(python -m experiments.batch_scaling --output_dir=...)"
        ) from err
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(
        "optiscale_jax.batch_scaling/"
    ):
        raise ValueError(
            f"{path} is not a batch-scaling results file (no 'schema' "
            "'optiscale_jax.batch_scaling/1'); give the folder the study wrote"
        )
    return data


def _num(value: Any, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _by(cells: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for cell in cells:
        grouped.setdefault(cell[key], []).append(cell)
    return {k: sorted(v, key=lambda c: c["batch_size"]) for k, v in grouped.items()}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def _noise_cells(cell: Mapping[str, Any]) -> tuple[str, str]:
    noise = cell.get("noise") or {}
    if "b_simple_at_target" in noise:
        return _num(noise["b_simple_at_target"]), _num(noise["b_noise_at_target"])
    values = [v for v in noise.get("b_simple", []) if v is not None and math.isfinite(v)]
    if not values:
        return "n/a", "n/a"
    return f"{_num(values[0])} -> {_num(values[-1])}", "n/a"


def _cell_row(cell: Mapping[str, Any]) -> list[str]:
    hyper = cell.get("hyperparameters") or {}
    reached = cell["status"] == "reached"
    b_simple, b_noise = _noise_cells(cell)
    return [
        cell["optimizer"],
        str(cell["batch_size"]),
        str(cell["steps"]) if reached else "**not reached**",
        str(cell["steps"] * cell["batch_size"]) if reached else "n/a",
        _num(hyper.get("learning_rate")),
        _num(hyper.get("momentum")),
        ("**yes**" if cell.get("on_edge") else "no")
        + (f" ({cell['extensions']} ext.)" if cell.get("extensions") else ""),
        b_simple,
        b_noise,
        _num(cell.get("run_time_s"), ".2f"),
    ]


def _summary_rows(groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[list[str]]:
    rows = []
    for optimizer, cells in groups.items():
        s = scaling_summary([c["batch_size"] for c in cells], [c["steps"] for c in cells])
        rows.append(
            [
                optimizer,
                f"{s.reached}/{s.measured}",
                _num(s.s_min, "d") if s.s_min else "n/a",
                _num(s.e_min, "d") if s.e_min else "n/a",
                _num(s.critical_batch_size),
                (f"{s.smallest_reached_batch}..{s.perfect_scaling_max_batch}"
                      if s.perfect_scaling_max_batch else "none"),
                _num(s.small_batch_slope, ".2f"),
            ]
        )
    return rows


def _workload_section(
    name: str, info: Mapping[str, Any], cells: Sequence[Mapping[str, Any]], plot: str | None
) -> list[str]:
    method = (
        "closed form (exact expected loss)"
        if cells and cells[0]["method"] == "closed_form"
        else "simulation (one shared batch stream per sweep)"
    )
    lines = [
        f"## {name}",
        "",
        f"{info.get('description', '')}. Target: objective <= "
        f"{_num(info.get('target'), '.6g')} (f* = {_num(info.get('f_star'), '.6g')}, f(w_0) = "
        f"{_num(info.get('initial_loss'), '.6g')}). Method: {method}.",
        "",
    ]
    if plot:
        lines += [f"![{name}]({plot})", ""]
    groups = _by(cells, "optimizer")
    lines += ["Per optimizer (definitions at the end):", ""]
    lines += _table(
        [
            "optimizer",
            "reached",
            "S_min",
            "E_min",
            "B_crit = E_min/S_min",
            "perfect scaling (B)",
            "small-B slope of log S",
        ],
        _summary_rows(groups),
    )
    lines += ["", "Per batch size:", ""]
    noise_header = (
        "B_simple at target" if method.startswith("closed") else "B_simple start -> last before target"
    )
    lines += _table(
        [
            "optimizer",
            "B",
            "steps S",
            "examples B S",
            "learning rate",
            "momentum",
            "best on edge",
            noise_header,
            "B_noise at target",
            "run (s)",
        ],
        [_cell_row(c) for cells_ in groups.values() for c in cells_],
    )
    return lines + [""]


def _nqm_findings(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    groups = _by(cells, "optimizer")
    if "sgd" not in groups:
        return []
    lines = ["## NQM findings (closed form)", ""]
    summaries = {
        k: scaling_summary([c["batch_size"] for c in v], [c["steps"] for c in v]) for k, v in groups.items()
    }
    slopes = ", ".join(f"{k} {_num(s.small_batch_slope, '.3f')}" for k, s in summaries.items())
    lines.append(
        f"- (a) steps vs B at the two smallest batch sizes, slope of log S against log B "
        f"(-1 = steps halve): {slopes}."
    )
    sgd = {c["batch_size"]: c["steps"] for c in groups["sgd"]}
    if "momentum" in groups:
        ratios = ", ".join(
            f"B={c['batch_size']}: {_num(c['steps'] / sgd[c['batch_size']], '.3f')}"
            for c in groups["momentum"][:3]
            if c["steps"] and sgd.get(c["batch_size"])
        )
        lines.append(f"- (b) momentum steps / SGD steps at the smallest batch sizes: {ratios}.")
    crit = ", ".join(f"{k} {_num(s.critical_batch_size)}" for k, s in summaries.items())
    lines.append(f"- (c) critical batch size E_min/S_min: {crit}.")
    return lines + [""]


_DEFINITIONS = [
    "## Definitions",
    "",
    "- S(B): steps to reach the target at batch size B, best of the tuning grid (the first configuration "
    "of the sweep to reach it); E(B) = B S(B) examples. S_min, E_min: their minima over the measured B.",
    "- Critical batch size B_crit = E_min / S_min: under S(B) = S_min (1 + B_crit / B) the batch size that "
    "costs twice the minimum steps and twice the minimum examples.",
    "- Perfect-scaling region: the smallest B that reached the target up to the largest B with every "
    f"reached E(B') <= {PERFECT_SCALING_TOLERANCE} E_min for B' <= B (none: the smallest B already "
    "costs more).",
    "- B_simple = tr(Sigma) / |G|^2 (Sigma: per-example gradient covariance; G: the full gradient), "
    "measured along the run on a separate batch of 256 examples (unbiased estimates of both), or exact at "
    "the target for the NQM; B_noise = tr(H Sigma) / (G^T H G) where the Hessian H is known (NQM).",
    "- Best on edge: the best learning rate sat on the first or last point of the final grid after the "
    "allowed extensions; its S(B) is an upper bound.",
    "",
]


def render_report(data: Mapping[str, Any], plot_names: Mapping[str, str | None]) -> str:
    """The Markdown text for a loaded results file."""
    settings = data.get("settings", {})
    env = data.get("environment", {})
    lines = [
        "# Batch-scaling study",
        "",
        f"Workloads: {', '.join(settings.get('workloads', []))}; optimizers: "
        f"{', '.join(settings.get('optimizers', []))}; B = 2^k for k in {settings.get('batch_exponents')} "
        f"(NQM: {settings.get('nqm_batch_exponents')}); step budget {settings.get('max_steps')} "
        f"(NQM {settings.get('nqm_max_steps')}); seed {settings.get('seed')}.",
        "",
    ]
    by_workload = _by(data.get("cells", []), "workload")
    for name, info in data.get("workloads", {}).items():
        cells = by_workload.get(name, [])
        lines += _workload_section(name, info, cells, plot_names.get(name))
        if name == "nqm":
            lines += _nqm_findings(cells)
    lines += _DEFINITIONS
    cpu = env.get("cpu", {})
    lines += [
        "## Environment",
        "",
        f"- CPU: {cpu.get('model')} ({cpu.get('cores_available')} cores available); "
        f"jax {env.get('packages', {}).get('jax')}; git {env.get('git', {}).get('commit')}; "
        f"recorded {env.get('recorded_at')}.",
        "",
    ]
    return "\n".join(lines)


def write_report(results_path: str | os.PathLike) -> pathlib.Path:
    """Reads the JSON, draws one PNG per workload next to it, writes the Markdown; returns its path."""
    results_path = pathlib.Path(results_path)
    data = load_study(results_path)
    folder = results_path.parent
    plots = {}
    by_workload = _by(data.get("cells", []), "workload")
    for name, info in data.get("workloads", {}).items():
        path = plot_workload(
            name,
            by_workload.get(name, []),
            folder / plot_filename(name),
            f"{name}: {info.get('description', '')}",
        )
        plots[name] = path.name if path else None
    report = folder / REPORT_FILENAME
    report.write_text(render_report(data, plots), encoding="utf-8")
    return report
