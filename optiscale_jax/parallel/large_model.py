"""A model that only fits sharded: >= 100M parameters trained with Adam under fsdp.

``LARGE_MLP`` (1024 inputs, six 4096 x 4096 tanh layers) has 105,029,633
parameters: 420 MB in float32, Adam's two moments 840 MB more. Replicated data
parallelism on 8 devices would hold ``8 x (params + grads + 2 x params)`` =
13.4 GB; under fsdp every device holds 1/8 of params, moments and gradients,
plus one gathered layer at a time (64 MB).

``run_large_model`` builds the parameters directly in their sharded layout (no
full host copy), trains a few full-batch Adam steps on synthetic rows, and
reports per-device bytes measured from the arrays, the estimate made before
training, XLA's per-device memory analysis of the compiled program, and the
host's peak resident memory (``VmHWM``, reset at the start: 8 virtual CPU
devices share the host's RAM, so it is the honest total).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import optax

from optiscale_jax.parallel.memory import MemoryEstimate, estimate_parallel_memory
from optiscale_jax.parallel.mesh import make_layout
from optiscale_jax.parallel.mlp import MLPSpec, n_params
from optiscale_jax.parallel.sharded_model import init_stored_mlp, sharded_model
from optiscale_jax.parallel.trainer import fit_sharded
from optiscale_jax.profiling import host_peak, reset_host_peak, sharded_memory

LARGE_MLP = MLPSpec(n_features=1024, width=4096, n_blocks=6, l2=0.0)


class LargeModelReport(NamedTuple):
    """What one large-model run measured (bytes, seconds)."""

    strategy: str
    n_devices: int
    n_params: int
    steps: int
    losses: list[float]
    estimate: MemoryEstimate
    measured_params_per_device: int
    measured_state_per_device: int
    xla_bytes_per_device: int       # argument + output - alias + temp of the compiled program
    host_peak_bytes: int
    host_peak_source: str
    compile_time_s: float
    time_per_step_s: float

    @property
    def estimate_error(self) -> float:
        """|estimate - measured| / measured for params + optimizer state per device."""
        measured = self.measured_params_per_device + self.measured_state_per_device
        return abs(self.estimate.state - measured) / measured


def run_large_model(spec: MLPSpec = LARGE_MLP, strategy: str = "fsdp", n_devices: int | None = 8,
                    *, steps: int = 3, n_rows: int = 64, learning_rate: float = 1e-4,
                    mesh_shape: tuple[int, int] | None = None, seed: int = 0) -> LargeModelReport:
    """Train ``spec`` for ``steps`` full-batch Adam steps under ``strategy``; see the module doc."""
    reset = reset_host_peak()
    layout = make_layout(strategy, n_devices, mesh_shape)
    transform = optax.adam(learning_rate)
    estimate = estimate_parallel_memory(spec, transform, strategy, tuple(layout.mesh.shape.values()),
                                        n_rows=n_rows)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, spec.n_features)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    stored = init_stored_mlp(sharded_model(spec, layout), spec, seed)
    run = fit_sharded(spec, transform, layout, X, y, epochs=steps, params0=stored, seed=seed,
                      gather_params=False)
    memory = sharded_memory(params=run.state.params, opt_state=run.state.opt_state)
    analysis = run.compiled.compiled.memory_analysis()
    xla = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
           - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)
    peak = host_peak(reset)
    return LargeModelReport(
        strategy=strategy, n_devices=layout.n_devices, n_params=n_params(spec), steps=steps,
        losses=[run.result.initial_loss, *map(float, run.result.train_loss)], estimate=estimate,
        measured_params_per_device=memory.max_per_device("params"),
        measured_state_per_device=memory.max_per_device("opt_state"),
        xla_bytes_per_device=int(xla), host_peak_bytes=peak.peak_bytes, host_peak_source=peak.source,
        compile_time_s=run.result.compile_time_s, time_per_step_s=run.result.time_per_epoch_s)


def format_report(report: LargeModelReport) -> str:
    """A few lines for a terminal."""
    gb = 1e9
    e = report.estimate
    measured = report.measured_params_per_device + report.measured_state_per_device
    return "\n".join([
        f"{report.n_params / 1e6:.1f}M-parameter MLP, Adam, {report.strategy} on {report.n_devices} "
        f"devices, {report.steps} steps: loss {' -> '.join(f'{v:.4f}' for v in report.losses)}",
        f"per device: params + Adam state measured {measured / gb:.3f} GB, estimated {e.state / gb:.3f} GB "
        f"(error {100 * report.estimate_error:.2f}%); XLA program {report.xla_bytes_per_device / gb:.3f} GB",
        f"replicated data_parallel would hold {e.replicated_data_parallel_total / gb:.2f} GB in all "
        f"({report.n_devices} x (params + grads + 2 x params)); this run's host peak "
        f"{report.host_peak_bytes / gb:.2f} GB ({report.host_peak_source})",
        f"compile {report.compile_time_s:.1f} s, {report.time_per_step_s:.2f} s per step",
    ])
