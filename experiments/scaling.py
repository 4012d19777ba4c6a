"""Scaling benchmark of the parallel strategies: ``python -m experiments.scaling``.

Prints, for each strategy on 1, 2, 4, 8 devices, the time per epoch (compile
excluded), speed-up and strong-scaling efficiency T_1 / (n T_n); with
``--output`` also writes them as JSON. On CPU it asks XLA for 8 virtual devices
(unless XLA_FLAGS is already set), which share the host's cores: the numbers
then show the overhead of sharding, not a speed-up. The same command on a
multi-GPU machine or a TPU slice measures real scaling. This file only parses
flags; the work is ``optiscale_jax.parallel.scaling``.

Examples::

    python -m experiments.scaling                                  # logistic regression, MNIST-binary
    python -m experiments.scaling --model=mlp --width=256 --n_blocks=8
    python -m experiments.scaling --strategies=data_parallel --device_counts=1,2,4,8 --repeats=3
"""

from __future__ import annotations

import json
import os
import sys

# Virtual CPU devices must be requested before JAX starts; GPUs / TPUs are unaffected.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import argparse  # noqa: E402  (argparse, not absl: no global flag registry shared with

                 # experiments.large_scale, so both can be imported in one process)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m experiments.scaling",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["logistic", "mlp"], default="logistic",
                        help="logistic regression, or the MLP (needed for the pipelines)")
    parser.add_argument("--strategies", default=None,
                        help="comma-separated strategies (default: all the model supports)")
    parser.add_argument("--device_counts", default="1,2,4,8",
                        help="comma-separated device counts, starting with the 1-device baseline")
    parser.add_argument("--data", choices=["mnist", "synthetic"], default="mnist",
                        help="MNIST-binary (digits 0-4 vs 5-9) or a synthetic logistic data set")
    parser.add_argument("--n_rows", type=int, default=8192, help="training rows")
    parser.add_argument("--n_features", type=int, default=784, help="features of synthetic data")
    parser.add_argument("--width", type=int, default=64, help="MLP hidden width")
    parser.add_argument("--n_blocks", type=int, default=8,
                        help="MLP width->width layers (pipeline stages must divide it)")
    parser.add_argument("--n_microbatches", type=int, default=None,
                        help="pipeline microbatches (default 4 per stage)")
    parser.add_argument("--epochs", type=int, default=20, help="full-batch epochs per timed run")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per point (median)")
    parser.add_argument("--learning_rate", type=float, default=0.1, help="plain SGD step size")
    parser.add_argument("--l2", type=float, default=1e-4, help="L2 coefficient")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data")
    parser.add_argument("--data_dir", default=None, help="folder with mnist/ "
                        "(default $OPTISCALE_DATA_DIR)")
    parser.add_argument("--output", default=None, help="write the rows as JSON to this file")
    args = parser.parse_args(argv)
    for name in ("n_rows", "n_features", "width", "epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} must be >= 1")
    return args


def load_data(args):
    """(X, y) float32: MNIST-binary rows or a synthetic logistic data set."""
    import numpy as np
    if args.data == "mnist":
        from optiscale_jax.datasets import load_mnist
        X, y, *_ = load_mnist(n_samples=args.n_rows, binary_classification=True,
                              test_size=0.0, seed=args.seed, data_dir=args.data_dir)
        return np.asarray(X, np.float32), np.asarray(y, np.float32)
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.n_rows, args.n_features)).astype(np.float32)
    w = rng.standard_normal(args.n_features) / np.sqrt(args.n_features)
    y = (rng.random(args.n_rows) < 1 / (1 + np.exp(-X @ w))).astype(np.float32)
    return X, y


def main(argv=None):
    """Run the study; returns the rows (also printed, and written with --output)."""
    args = parse_args(argv)
    import jax
    import optax

    from optiscale_jax.parallel import MLPSpec
    from optiscale_jax.parallel.scaling import format_table, scaling_study

    X, y = load_data(args)
    model = (MLPSpec(X.shape[1], args.width, args.n_blocks, args.l2)
             if args.model == "mlp" else "logistic")
    rows = scaling_study(model, X, y, optimizer=optax.sgd(args.learning_rate),
                         strategies=args.strategies.split(",") if args.strategies else None,
                         device_counts=[int(n) for n in args.device_counts.split(",")],
                         epochs=args.epochs, repeats=args.repeats, l2=args.l2,
                         n_microbatches=args.n_microbatches)
    device = jax.devices()[0]
    print(f"{args.model} on {X.shape[0]} x {X.shape[1]} ({args.data}), {args.epochs} "
          f"full-batch SGD epochs, {jax.device_count()} {device.platform} device(s) "
          f"({device.device_kind})")
    print(format_table(rows))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump([row._asdict() for row in rows], handle, indent=2)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
