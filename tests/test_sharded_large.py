"""A 105M-parameter MLP trained with Adam under fsdp on 8 virtual CPU devices.

Run in a child process (its own 8 devices and its own host peak). Replicated data
parallelism would need 8 x (params + grads + 2 x params) = 13.4 GB of the host's RAM;
fsdp holds 1/8 of parameters and Adam moments per device. XLA's CPU collectives are
slow (an all-gather of 64 MB over 8 virtual devices takes seconds), so the test takes
two steps; ``python -m optiscale_jax.cli.scaling --large_model`` runs more.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CHILD = """
import json
from optiscale_jax.parallel.large_model import run_large_model
r = run_large_model(strategy="fsdp", n_devices=8, steps=2)
print("REPORT " + json.dumps({**r._asdict(), "estimate": r.estimate._asdict(),
                               "estimate_error": r.estimate_error}))
"""


@pytest.mark.slow
def test_100m_parameter_model_trains_under_fsdp():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    estimate = report["estimate"]
    assert report["n_params"] >= 100_000_000
    losses = report["losses"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    # Per device: 1/8 of params and of Adam's moments (plus the replicated step count).
    measured = report["measured_params_per_device"] + report["measured_state_per_device"]
    replicated = estimate["replicated_params"] + estimate["replicated_opt_state"]
    assert measured <= 1.01 * replicated / 8
    assert report["estimate_error"] < 0.05
    replicated_total = 8 * (2 * estimate["replicated_params"] + estimate["replicated_opt_state"])
    assert replicated_total > 13e9
    print(f"host peak {report['host_peak_bytes'] / 1e9:.2f} GB ({report['host_peak_source']}), "
          f"replicated data_parallel {replicated_total / 1e9:.2f} GB, estimate error "
          f"{100 * report['estimate_error']:.2f}%, {report['time_per_step_s']:.1f} s per step")
    assert report["host_peak_bytes"] < replicated_total / 2
