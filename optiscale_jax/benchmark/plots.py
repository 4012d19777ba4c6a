"""Convergence plots: relative suboptimality against epochs (and against time when measurable).

One PNG per data set, drawn with matplotlib's object API on an Agg canvas (no
global backend switched, no display needed). What is drawn is exactly the
record's ``curve``: the run's own objective values in its dtype at the logged
epochs, as relative suboptimality; its last point is the table's *Rel.
subopt.* (:func:`curve_points` is what both read).

* A value at or below zero (the run's float32 objective rounded to just below
  the float64 optimum f*) cannot sit on a log axis: it is drawn as a
  down-pointing triangle on the panel's bottom edge, and a note on the plot
  says how many points of which runs are there. Nothing is clipped silently.
* Lines differ by colour, line style and marker, so curves on top of each
  other (Momentum and Nesterov, Adam and AdamW) stay visible.
* The time panel (``epoch x mean time per epoch``, compile excluded; a jitted
  run is one program, so only the mean per-epoch time is observable) is drawn
  only when every run took at least :data:`TIME_PANEL_MIN_RUN_S`; shorter runs
  are dominated by timer and scheduling noise, and a note says so instead.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import re
from collections.abc import Sequence
from typing import NamedTuple

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from optiscale_jax.benchmark.record import RunRecord, RunStatus

__all__ = ["TIME_PANEL_MIN_RUN_S", "CurvePoints", "curve_points", "plot_dataset_curves",
           "plot_filename"]

TIME_PANEL_MIN_RUN_S = 0.05
_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "x", "P", "*", "h")


class CurvePoints(NamedTuple):
    """What a run's line is drawn from: logged epochs, times, relative suboptimality."""

    epochs: np.ndarray
    times: np.ndarray
    values: np.ndarray


def plot_filename(dataset: str) -> str:
    """A file name safe on every OS for the data set's plot."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("_") or "dataset"
    return f"convergence_{slug}.png"


def curve_points(record: RunRecord) -> CurvePoints | None:
    """The record's stored curve as arrays (None when it has none, e.g. a failed run)."""
    curve = record.curve or {}
    values = curve.get("relative_suboptimality")
    if not values:
        return None
    return CurvePoints(np.asarray(curve["epoch"], dtype=np.float64),
                       np.asarray(curve["time_s"], dtype=np.float64),
                       np.asarray([np.nan if v is None else v for v in values], dtype=np.float64))


def _label(record: RunRecord) -> str:
    label = f"{record.label or record.optimizer} ({record.backend})"
    return label + (" diverged" if record.status is RunStatus.DIVERGED else "")


def _floor(curves: Sequence[CurvePoints]) -> float:
    positive = np.concatenate([c.values[np.isfinite(c.values) & (c.values > 0)] for c in curves])
    return float(positive.min()) / 4 if positive.size else 1e-12


def _draw(axis, x: np.ndarray, values: np.ndarray, floor: float, style: dict) -> tuple[str, int]:
    """One run's line on a log axis; points <= 0 as triangles on the floor. Returns the
    line's colour and the number of such points."""
    positive = np.where(values > 0, values, np.nan)
    line, = axis.plot(x, positive, markevery=max(len(x) // 12, 1), markersize=4, linewidth=1.3,
                      **style)
    below = np.isfinite(values) & (values <= 0)
    if below.any():
        axis.plot(x[below], np.full(below.sum(), floor), linestyle="none", marker="v",
                  markersize=6, color=line.get_color())
    return line.get_color(), int(below.sum())


def plot_dataset_curves(records: Sequence[RunRecord], path: str | os.PathLike,
                        title: str) -> pathlib.Path | None:
    """Writes the PNG for one data set's runs; None when no run has a curve."""
    curves = [(rec, c) for rec in records if (c := curve_points(rec)) is not None]
    if not curves:
        return None
    run_times = [rec.run_time_s or 0.0 for rec, _ in curves]
    with_time = min(run_times) >= TIME_PANEL_MIN_RUN_S
    # Past 8 curves (the extended suite) the legend goes beside the plots, and 20 colours
    # replace the default 10 so that no two lines share both colour and style.
    many = len(curves) > 8
    figure = Figure(figsize=((11 if with_time else 7.5) + (2.6 if many else 0), 4.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2) if with_time else [figure.subplots(1, 1)]
    if many:
        for axis in axes:
            axis.set_prop_cycle(color=[matplotlib.colormaps["tab20"](i) for i in range(20)])
    floor = _floor([c for _, c in curves])
    below_notes = []
    styles = itertools.cycle(zip(itertools.cycle(_STYLES), _MARKERS * 8))
    for (record, points), (linestyle, marker) in zip(curves, styles):
        style = {"label": _label(record), "linestyle": linestyle, "marker": marker}
        color, below = _draw(axes[0], points.epochs, points.values, floor, style)
        if with_time:
            _draw(axes[1], points.times, points.values, floor,
                  {"linestyle": linestyle, "marker": marker, "color": color})
        if below:
            below_notes.append(f"{record.label or record.optimizer} ({below})")
    labels = [(axes[0], "epoch")] + ([(axes[1], "time (s, compile excluded)")] if with_time else [])
    for axis, xlabel in labels:
        axis.set_yscale("log")
        axis.set_xlabel(xlabel)
        axis.set_ylabel("relative suboptimality (f - f*) / |f*|")
        axis.grid(True, which="major", alpha=0.3)
    if many:
        handles, labels = axes[0].get_legend_handles_labels()
        axes[-1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                        borderaxespad=0)
    else:
        axes[0].legend(fontsize=8)
    notes = []
    if below_notes:
        notes.append(f"▼ on the bottom edge ({floor:.1e}): f <= f* in the run's dtype (rounding "
                     f"below the float64 optimum): {', '.join(below_notes)} point(s)")
    if not with_time:
        notes.append(f"No time panel: the shortest run took {1e3 * min(run_times):.1f} ms, too "
                     f"close to timer noise (drawn from {1e3 * TIME_PANEL_MIN_RUN_S:.0f} ms); "
                     "times are in the table")
    figure.suptitle(title)
    if notes:
        figure.text(0.01, 0.01, "\n".join(notes), fontsize=7.5, va="bottom", wrap=True)
    figure.tight_layout(rect=(0, 0.04 * len(notes), 1, 1))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
