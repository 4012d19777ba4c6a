"""Log-log plots of the batch-scaling study, from the results JSON alone.

One PNG per workload, two panels: steps to target against B (one line per optimizer, the ideal
``S(B_0) B_0 / B`` line through its smallest reached B dashed, its critical batch size a dotted
vertical line) and the tuned learning rate against B. Drawn with matplotlib's object API on an
Agg canvas (no global backend, no display).
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from optiscale_jax.studies.analysis import scaling_summary

__all__ = ["plot_filename", "plot_workload"]


def plot_filename(workload: str) -> str:
    """``batch_scaling_<workload>.png`` with a file-system-safe name."""
    return f"batch_scaling_{re.sub(r'[^A-Za-z0-9._-]+', '_', workload)}.png"


def _series(cells: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    series: dict[str, list[Mapping[str, Any]]] = {}
    for cell in sorted(cells, key=lambda c: c["batch_size"]):
        series.setdefault(cell["optimizer"], []).append(cell)
    return series


def _draw_optimizer(ax_steps, ax_lr, name: str, group: Sequence[Mapping[str, Any]]) -> None:
    """One optimizer's steps (with its ideal 1/B line, edge squares, B_crit, not-reached marks) and rates."""
    reached = [c for c in group if c["status"] == "reached"]
    color = None
    if reached:
        b = np.array([c["batch_size"] for c in reached], float)
        s = np.array([c["steps"] for c in reached], float)
        (line,) = ax_steps.plot(b, s, marker="o", markersize=4, linewidth=1.4, label=name)
        color = line.get_color()
        ax_steps.plot(b, s[0] * b[0] / b, linestyle="--", linewidth=0.9, color=color, alpha=0.6)
        edge = np.array([bool(c.get("on_edge")) for c in reached])
        if edge.any():
            ax_steps.plot(b[edge], s[edge], linestyle="none", marker="s", markerfacecolor="none",
                          markersize=9, color=color)
        summary = scaling_summary([c["batch_size"] for c in group], [c["steps"] for c in group])
        if summary.critical_batch_size is not None:
            ax_steps.axvline(summary.critical_batch_size, linestyle=":", linewidth=1.0, color=color)
        hyper = [c["hyperparameters"] for c in reached]
        lr = np.array([h["learning_rate"] / (1.0 - h.get("momentum", 0.0)) for h in hyper], float)
        ax_lr.plot(b, lr, marker="o", markersize=4, linewidth=1.4, color=color, label=name)
    missing = [c["batch_size"] for c in group if c["status"] != "reached"]
    if missing:  # at the top of the panel (axes coordinates in y), whatever the data range
        ax_steps.plot(missing, np.full(len(missing), 0.97), linestyle="none", marker="x", markersize=7,
                      color=color, transform=ax_steps.get_xaxis_transform(), clip_on=False,
                      label=None if reached else f"{name} (not reached)")


def plot_workload(
    workload: str, cells: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str
) -> pathlib.Path | None:
    """Writes the two-panel PNG for one workload; None when no cell reached the target."""
    series = _series(cells)
    if not any(c["status"] == "reached" for c in cells):
        return None
    figure = Figure(figsize=(11, 4.6), dpi=100)
    FigureCanvasAgg(figure)
    ax_steps, ax_lr = figure.subplots(1, 2)
    for name, group in series.items():
        _draw_optimizer(ax_steps, ax_lr, name, group)
    for axis, ylabel in (
        (ax_steps, "steps to target"),
        (ax_lr, "tuned lr (with momentum mu: lr / (1 - mu))"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("batch size B")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="major", alpha=0.3)
    ax_steps.legend(fontsize=8)
    ax_steps.set_title("steps vs B (dashed: ideal 1/B; dotted: B_crit)", fontsize=9)
    ax_lr.set_title("tuned learning rate vs B", fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.text(
        0.01,
        0.01,
        "square: best learning rate on the grid's edge; x (top): target not reached within the step budget",
        fontsize=7.5,
        va="bottom",
    )
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
