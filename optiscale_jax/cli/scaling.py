"""optiscale-scaling: time, memory and communication per step of each parallel strategy.

    python -m experiments.scaling                                    # logistic regression, MNIST-binary
    python -m experiments.scaling --model=mlp --width=256 --n_blocks=8
    python -m experiments.scaling --strategies=fsdp,model_parallel --device_counts=1,8 --repeats=3
    python -m experiments.scaling --large_model                      # 105M-parameter MLP, Adam, fsdp

For each strategy and device count (the first count, 1, is the baseline T_1): compile time,
time per full-batch step (compile excluded, device work blocked on), speed-up T_1 / T_n and
efficiency T_1 / (n T_n); bytes per device of parameters and optimizer state (measured from
the arrays' shards) and of gradients (estimated: sharded like the parameters); and the
communication per step and device read from the compiled program's HLO collectives (ring
traffic of all-gather, reduce-scatter, all-reduce, permute). A progress line with an ETA
follows each point; --output writes the rows as JSON. On CPU it asks XLA for 8 virtual
devices (unless XLA_FLAGS is set), which share the host's cores: times then show the
overhead of sharding, not a speed-up. See docs/parallel.md.
"""

from __future__ import annotations

import json
import os
import sys

# Virtual CPU devices must be requested before JAX starts; GPUs / TPUs are unaffected.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax
import numpy as np
from absl import flags

from optiscale_jax.cli import _common
from optiscale_jax.parallel import STRATEGIES, MLPSpec
from optiscale_jax.parallel.large_model import format_report, run_large_model
from optiscale_jax.parallel.scaling import (
    ScalingRow,
    default_strategies,
    format_table,
    scaling_study,
)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The binary's flags (defined when run, so importing the module defines nothing)."""
    if "device_counts" in FLAGS:
        return
    flags.DEFINE_enum("model", "logistic", ["logistic", "mlp"],
                      "Logistic regression, or the MLP (needed for the pipelines).")
    flags.DEFINE_string("strategies", None, "Comma-separated strategies (default: all the model "
                        "supports): " + ", ".join(STRATEGIES))
    flags.DEFINE_string("device_counts", "1,2,4,8", "Comma-separated device counts, increasing, "
                        "starting with the 1-device baseline.")
    flags.DEFINE_enum("data", "mnist", ["mnist", "synthetic"],
                      "MNIST-binary (digits 0-4 vs 5-9) or a synthetic logistic data set.")
    flags.DEFINE_integer("n_rows", 8192, "Training rows.")
    flags.DEFINE_integer("n_features", 784, "Features of the synthetic data.")
    flags.DEFINE_integer("width", 64, "MLP hidden width.")
    flags.DEFINE_integer("n_blocks", 8, "MLP width->width layers (pipeline stages must divide it).")
    flags.DEFINE_integer("n_microbatches", None, "Pipeline microbatches (default 4 per stage).")
    flags.DEFINE_integer("epochs", 20, "Full-batch steps per timed run.")
    flags.DEFINE_integer("repeats", 1, "Timed runs per point (median).")
    flags.DEFINE_string("optimizer", "sgd", "Optimizer name (sgd, momentum, adam, ...).")
    flags.DEFINE_float("learning_rate", 0.1, "Learning rate.")
    flags.DEFINE_float("l2", 1e-4, "L2 coefficient.")
    flags.DEFINE_integer("seed", 0, "Seed of the data.")
    flags.DEFINE_string("output", None, "Write the rows as JSON to this file.")
    flags.DEFINE_bool("large_model", False, "Instead: train the 105M-parameter MLP with Adam under "
                      "--large_strategy on 8 devices for --large_steps steps and report memory.")
    flags.DEFINE_string("large_strategy", "fsdp", "Strategy of --large_model.")
    flags.DEFINE_integer("large_steps", 3, "Adam steps of --large_model.")
    _common.define_data_dir()


def load_data() -> tuple[np.ndarray, np.ndarray]:
    """(X, y) float32: MNIST-binary rows or a synthetic logistic data set."""
    if FLAGS.data == "mnist":
        from optiscale_jax.datasets import load_mnist  # noqa: PLC0415  (only this branch reads files)
        X, y, *_ = load_mnist(n_samples=FLAGS.n_rows, binary_classification=True, test_size=0.0,
                              seed=FLAGS.seed, data_dir=FLAGS.data_dir)
        return np.asarray(X, np.float32), np.asarray(y, np.float32)
    rng = np.random.default_rng(FLAGS.seed)
    X = rng.standard_normal((FLAGS.n_rows, FLAGS.n_features)).astype(np.float32)
    w = rng.standard_normal(FLAGS.n_features) / np.sqrt(FLAGS.n_features)
    y = (rng.random(FLAGS.n_rows) < 1 / (1 + np.exp(-X @ w))).astype(np.float32)
    return X, y


def _settings() -> tuple[list[str] | None, list[int]]:
    """Validated list flags and sizes; UsageError naming the flag and the fix."""
    for name, minimum in (("n_rows", 1), ("n_features", 1), ("width", 1), ("n_blocks", 0),
                          ("epochs", 1), ("repeats", 1), ("seed", 0), ("large_steps", 1)):
        _common.check_int(FLAGS[name].value, name, minimum=minimum)
    counts = _common.parse_int_list(FLAGS.device_counts, "device_counts", minimum=1)
    if counts[0] != 1 or counts != sorted(set(counts)):
        raise _common.UsageError(f"--device_counts={FLAGS.device_counts} must be increasing and start "
                                 "with 1 (the baseline), e.g. --device_counts=1,2,4,8")
    if counts[-1] > jax.device_count():
        raise _common.UsageError(
            f"--device_counts asks for {counts[-1]} devices but {jax.device_count()} are visible; on "
            f"CPU set XLA_FLAGS=--xla_force_host_platform_device_count={counts[-1]}, or use fewer")
    strategies = None
    if FLAGS.strategies:
        strategies = _common.parse_str_list(FLAGS.strategies, "strategies")
        unknown = [s for s in strategies if s not in STRATEGIES]
        if unknown:
            raise _common.UsageError(f"--strategies: unknown {', '.join(unknown)}; choose from "
                                     + ", ".join(STRATEGIES))
    if FLAGS.output:
        _common.check_writable_file(FLAGS.output, "output")
    return strategies, counts


def _optimizer() -> object:
    from optiscale_jax.optimizers import get_optimizer  # noqa: PLC0415  (validates the name here)
    try:
        return get_optimizer(FLAGS.optimizer, learning_rate=FLAGS.learning_rate)
    except ValueError as error:
        raise _common.UsageError(f"--optimizer={FLAGS.optimizer}: {error}") from None


def main(argv: list[str]) -> int:
    _common.reject_positional(argv)
    strategies, counts = _settings()
    if FLAGS.large_model:
        print(format_report(run_large_model(strategy=FLAGS.large_strategy, n_devices=8,
                                            steps=FLAGS.large_steps)), flush=True)
        return 0
    optimizer = _optimizer()
    X, y = load_data()
    model = (MLPSpec(X.shape[1], FLAGS.width, FLAGS.n_blocks, FLAGS.l2)
             if FLAGS.model == "mlp" else "logistic")
    chosen = strategies or list(default_strategies(model))
    progress = _common.EtaPrinter(len(chosen) * len(counts))
    device = jax.devices()[0]
    print(f"{FLAGS.model} on {X.shape[0]} x {X.shape[1]} ({FLAGS.data}), {FLAGS.epochs} full-batch "
          f"{FLAGS.optimizer} steps, {jax.device_count()} {device.platform} device(s) "
          f"({device.device_kind})", flush=True)

    def on_row(row: ScalingRow) -> None:
        progress.step(f"{row.strategy} on {row.n_devices}: {1e3 * row.time_per_step_s:.2f} ms/step, "
                      f"state {(row.params_bytes + row.opt_state_bytes) / 1e6:.3f} MB/device, "
                      f"comm {row.comm_bytes / 1e6:.3f} MB/step")

    try:
        rows = scaling_study(model, X, y, optimizer=optimizer, strategies=chosen, device_counts=counts,
                             epochs=FLAGS.epochs, repeats=FLAGS.repeats, l2=FLAGS.l2,
                             n_microbatches=FLAGS.n_microbatches, on_row=on_row)
    except ValueError as error:  # a strategy the model cannot take, a size that does not divide
        raise _common.UsageError(str(error)) from None
    print("bytes per device (params, opt state: measured; grads: estimated); communication per "
          "step and device from the compiled HLO (ring traffic)")
    print(format_table(rows), flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "w") as handle:
            json.dump([{**row._asdict(), "time_per_step_s": row.time_per_step_s} for row in rows],
                      handle, indent=2)
    return 0


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point (``optiscale-scaling``)."""
    define_flags()
    _common.run_app(main, doc=__doc__, argv=argv if argv is None else ["optiscale-scaling", *argv],
                    main_module=__name__, program="optiscale-scaling")


if __name__ == "__main__":
    run()
    sys.exit(0)
