"""The size ladder binary: flags, one small rung against independent figures, the shuffle check."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg

from optiscale_jax.cli import _common
from optiscale_jax.cli.data_scale import parse_sizes, shuffle_check
from optiscale_jax.datasets import generate_highdim_regression


def test_sizes_are_parsed_and_bad_ones_named():
    assert parse_sizes("10000x1000, 1e5x1e3") == [(10_000, 1_000), (100_000, 1_000)]
    for bad in ("10000", "ax3", "1x5", "10x0"):
        with pytest.raises(_common.UsageError, match="--sizes item"):
            parse_sizes(bad)


@pytest.mark.slow
@pytest.mark.parametrize("arg", ["-h", "--help"])
def test_help_exits_0(arg):
    proc = subprocess.run([sys.executable, "-m", "experiments.data_scale", arg],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "--sizes" in proc.stdout and "--shuffle_check" in proc.stdout


@pytest.mark.slow
def test_bad_flag_is_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, "-m", "experiments.data_scale", "--sizes=12"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "--sizes item '12'" in proc.stderr


@pytest.mark.slow
def test_one_rung_reports_figures_an_independent_solve_confirms():
    proc = subprocess.run([sys.executable, "-m", "optiscale_jax.cli.data_scale",
                           "--rung=3000x60", "--epochs=3"],     # a fresh process: its own peak
                          capture_output=True, text=True, timeout=300, check=True)
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    X, y, _, _ = generate_highdim_regression(3000, 60, 100.0, dtype=np.float32,
                                             orthogonal="dct")
    X64 = X.astype(np.float64)
    w = scipy.linalg.lstsq(X64, y.astype(np.float64))[0]
    assert row["f_star_grad_norm"] < 1e-8
    assert row["data_gib"] == pytest.approx(X.nbytes / 2**30)
    assert row["ms_per_epoch"] > 0 and row["one_pass_ms"] > 0 and row["compile_s"] > 0
    assert row["peak_gib"] >= row["data_gib"] and row["kernel"] == "generic"
    f_lstsq = 0.5 * np.mean((X64 @ w - y) ** 2)
    assert row["f_star"] == pytest.approx(f_lstsq, rel=1e-10)
    assert row["status"] in ("max_epochs", "converged")


@pytest.mark.slow
def test_shuffle_check_times_both_parts():
    out = shuffle_check(n=5_000, d=8, batch=64, repeats=2)
    assert out["shuffle_s"] > 0 and out["updates_s"] > 0
    assert out["shuffle_over_updates"] == pytest.approx(out["shuffle_s"] / out["updates_s"])
