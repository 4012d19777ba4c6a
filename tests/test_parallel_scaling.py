"""The scaling study and its script: figures recomputed from the measured times."""

import json

import numpy as np
import pytest

from experiments import scaling as scaling_script
from optiscale_jax.parallel.scaling import scaling_efficiency, scaling_study


def test_scaling_efficiency_formula():
    assert scaling_efficiency(8.0, 1.0, 8) == 1.0
    assert scaling_efficiency(3.0, 2.0, 4) == pytest.approx(0.375)
    with pytest.raises(ValueError, match="times must be > 0"):
        scaling_efficiency(1.0, 0.0, 2)


def test_script_prints_and_writes_consistent_rows(tmp_path, capsys):
    output = tmp_path / "scaling.json"
    rows = scaling_script.main([
        "--data=synthetic", "--n_rows=256", "--n_features=16", "--epochs=3",
        "--device_counts=1,2", "--strategies=data_parallel", f"--output={output}"])
    assert [(r.strategy, r.n_devices, r.mesh_shape) for r in rows] == [
        ("data_parallel", 1, (1, 1)), ("data_parallel", 2, (2, 1))]
    t1 = rows[0].time_per_epoch_s
    for row in rows:
        assert row.time_per_epoch_s > 0 and row.compile_time_s > 0
        assert row.speedup == pytest.approx(t1 / row.time_per_epoch_s)
        assert row.efficiency == pytest.approx(t1 / (row.n_devices * row.time_per_epoch_s))
    stored = json.loads(output.read_text())
    assert [r["time_per_epoch_s"] for r in stored] == [r.time_per_epoch_s for r in rows]
    printed = capsys.readouterr().out
    assert "| data_parallel | 2 | (2, 1) |" in printed
    assert f"{1e3 * rows[1].time_per_epoch_s:.3f}" in printed


def test_scaling_study_rejects_bad_requests():
    X = np.zeros((8, 4), np.float32)
    y = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="start with 1"):
        scaling_study("logistic", X, y, optimizer="sgd", device_counts=(2, 4))
    with pytest.raises(ValueError, match="single layer"):
        scaling_study("logistic", X, y, optimizer="sgd", strategies=["pipeline_parallel"],
                      device_counts=(1,))
