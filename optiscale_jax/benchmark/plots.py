"""Convergence plots: relative suboptimality against epochs and against time.

One PNG per data set with two panels (log scale). Drawn with matplotlib's
object API on an Agg canvas, so no global backend is switched and no display
is needed. The time axis is ``epoch x (run time / epochs)``: a jitted run is
one program, so per-epoch wall times are not observable, only their mean
(compile time excluded, as in the tables).
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["PLOT_FLOOR", "plot_filename", "plot_dataset_curves"]

# Relative suboptimality at or below this is drawn at this value: float32 losses
# can land a hair below f* (rounding), which a log axis cannot show.
PLOT_FLOOR = 1e-12


def plot_filename(dataset: str) -> str:
    """A file name safe on every OS for the data set's plot."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("_") or "dataset"
    return f"convergence_{slug}.png"


def _curve(record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    curve = record.get("curve") or {}
    rel = curve.get("relative_suboptimality")
    if not rel:
        return None
    epochs = np.asarray(curve["epoch"], dtype=np.float64)
    times = np.asarray(curve["time_s"], dtype=np.float64)
    values = np.asarray([v if v is not None else math.nan for v in rel], dtype=np.float64)
    return epochs, times, np.maximum(values, PLOT_FLOOR)


def plot_dataset_curves(records: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                        title: str) -> pathlib.Path | None:
    """Writes the two-panel PNG for one data set's runs; None when no run has a curve."""
    curves = [(rec, c) for rec in records if (c := _curve(rec)) is not None]
    if not curves:
        return None
    figure = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    ax_epochs, ax_time = figure.subplots(1, 2)
    for record, (epochs, times, values) in curves:
        label = f"{record.get('label', record.get('optimizer'))} ({record.get('backend')})"
        if record.get("status") == "diverged":
            label += " diverged"
        line, = ax_epochs.plot(epochs, values, label=label, linewidth=1.3)
        ax_time.plot(times, values, color=line.get_color(), linewidth=1.3)
    for axis, xlabel in ((ax_epochs, "epoch"), (ax_time, "time (s, compile excluded)")):
        axis.set_yscale("log")
        axis.set_xlabel(xlabel)
        axis.set_ylabel("relative suboptimality (f - f*) / |f*|")
        axis.grid(True, which="major", alpha=0.3)
    ax_epochs.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
