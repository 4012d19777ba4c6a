"""The scaling study and its command: figures recomputed from what was measured.

The command runs as a subprocess (absl parses flags once per process), like a user runs it.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from optiscale_jax.parallel.scaling import scaling_efficiency, scaling_study

REPO = pathlib.Path(__file__).resolve().parents[1]


def _command(*flags, timeout=300):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "experiments.scaling", *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_scaling_efficiency_formula():
    assert scaling_efficiency(8.0, 1.0, 8) == 1.0
    assert scaling_efficiency(3.0, 2.0, 4) == pytest.approx(0.375)
    with pytest.raises(ValueError, match="times must be > 0"):
        scaling_efficiency(1.0, 0.0, 2)


@pytest.mark.slow
def test_command_prints_and_writes_consistent_rows(tmp_path):
    """data_parallel and fsdp on 1 and 2 devices: speed-ups from the times, bytes per device
    from the sizes (16 float32 weights, SGD has no state), communication from the program."""
    output = tmp_path / "scaling.json"
    proc = _command("--data=synthetic", "--n_rows=256", "--n_features=16", "--epochs=3",
                    "--device_counts=1,2", "--strategies=data_parallel,fsdp", f"--output={output}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(output.read_text())
    assert [(r["strategy"], r["n_devices"], tuple(r["mesh_shape"])) for r in rows] == [
        ("data_parallel", 1, (1, 1)), ("data_parallel", 2, (2, 1)),
        ("fsdp", 1, (1, 1)), ("fsdp", 2, (2, 1))]
    for row, first in zip(rows, (rows[0], rows[0], rows[2], rows[2])):
        t1 = first["time_per_epoch_s"]
        assert row["time_per_epoch_s"] > 0 and row["compile_time_s"] > 0
        assert row["speedup"] == pytest.approx(t1 / row["time_per_epoch_s"])
        assert row["efficiency"] == pytest.approx(t1 / (row["n_devices"] * row["time_per_epoch_s"]))
    by_key = {(r["strategy"], r["n_devices"]): r for r in rows}
    assert by_key["data_parallel", 2]["params_bytes"] == 16 * 4        # replicated
    assert by_key["fsdp", 2]["params_bytes"] == 8 * 4                  # half each
    assert by_key["fsdp", 2]["grads_bytes"] == 8 * 4
    assert {r["opt_state_bytes"] for r in rows} == {4}                 # plain SGD: a step count
    assert by_key["data_parallel", 1]["all_reduce_bytes"] == 0         # one device: no collective
    assert by_key["fsdp", 2]["all_gather_bytes"] > 0                   # w gathered every step
    printed = proc.stdout
    assert "| fsdp | 2 | (2, 1) |" in printed
    assert f"{1e3 * rows[1]['time_per_epoch_s']:.3f}" in printed
    assert "[4/4] fsdp on 2:" in printed and "ETA" in printed


@pytest.mark.slow
@pytest.mark.parametrize("flag,message", [
    ("--device_counts=1,x", "--device_counts: 'x' is not an integer"),
    ("--strategies=fsdp,bogus", "--strategies: unknown bogus"),
])
def test_bad_flags_get_one_line_and_exit_2(flag, message):
    proc = _command(flag, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optiscale-scaling: error: ") and message in lines[0]


@pytest.mark.slow
def test_help_exits_0():
    proc = _command("--help", timeout=60)
    assert proc.returncode == 0 and "--device_counts" in proc.stdout and "--large_model" in proc.stdout


def test_scaling_study_rejects_bad_requests():
    X = np.zeros((8, 4), np.float32)
    y = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="start with 1"):
        scaling_study("logistic", X, y, optimizer="sgd", device_counts=(2, 4))
    with pytest.raises(ValueError, match="single layer"):
        scaling_study("logistic", X, y, optimizer="sgd", strategies=["pipeline_parallel"],
                      device_counts=(1,))
