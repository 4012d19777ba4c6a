"""One process of a multi-process data-parallel run: the launch recipe, runnable.

Start one copy per process (per host, or per GPU), each with its own id:

    python -m optiscale_jax.parallel.worker --coordinator_address=HOST0:1234 \\
        --num_processes=2 --process_id=0 --output=/tmp/coef_0.npy   # on host 0
    python -m optiscale_jax.parallel.worker --coordinator_address=HOST0:1234 \\
        --num_processes=2 --process_id=1 --output=/tmp/coef_1.npy   # on host 1

Each process loads MNIST-binary (digits 0-4 vs 5-9; or ``--data=file.npz``), keeps the first ``--n_rows``
rows, takes its own contiguous block of ``n_rows / num_processes`` rows, and
trains L2 logistic regression with plain SGD over every process's devices
(``--strategy``: data_parallel replicates the coefficients, fsdp splits them and
their optimizer state so that each process stores only its devices' shards). Every
process ends with the same coefficients (saved with ``np.save`` when ``--output``
is given) and prints the parameter bytes its devices hold.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator_address", default=None,
                        help="host:port of process 0 (omit all three for cluster auto-detection)")
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None)
    parser.add_argument("--coordinator_bind_address", default=None,
                        help="address process 0 listens on (e.g. 127.0.0.1:1234 on one machine)")
    parser.add_argument("--heartbeat_timeout_s", type=int, default=100)
    parser.add_argument("--initialization_timeout_s", type=int, default=300)
    parser.add_argument("--strategy", default="data_parallel")
    parser.add_argument("--n_rows", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--learning_rate", type=float, default=0.5)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--data_dir", default=None, help="default: $OPTISCALE_DATA_DIR")
    parser.add_argument("--data", default=None,
                        help=".npz with arrays X, y to use instead of MNIST (first n_rows rows)")
    parser.add_argument("--output", default=None, help=".npy file for the final coefficients")
    return parser.parse_args(argv)


def local_block(n_rows: int, process_id: int, num_processes: int) -> slice:
    """This process's contiguous block of rows; n_rows must divide evenly."""
    if n_rows % num_processes:
        raise ValueError(f"n_rows={n_rows} does not divide over {num_processes} processes; "
                         f"use a multiple of {num_processes}")
    size = n_rows // num_processes
    return slice(process_id * size, (process_id + 1) * size)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Imports here, not at the top: jax.distributed must start before any other JAX work
    # in this process, and importing the package may already create arrays.
    from optiscale_jax.parallel.distributed import (  # noqa: PLC0415
        initialize_distributed,
        shutdown_distributed,
    )
    info = initialize_distributed(
        args.coordinator_address, args.num_processes, args.process_id,
        coordinator_bind_address=args.coordinator_bind_address,
        heartbeat_timeout_s=args.heartbeat_timeout_s,
        initialization_timeout_s=args.initialization_timeout_s)

    import numpy as np  # noqa: PLC0415
    import optax  # noqa: PLC0415

    from optiscale_jax.parallel.trainer import ParallelTrainer  # noqa: PLC0415
    from optiscale_jax.profiling.sharding_memory import logical_bytes, per_device_bytes  # noqa: PLC0415

    if args.data:
        with np.load(args.data) as data:
            X, y = data["X"][:args.n_rows], data["y"][:args.n_rows]
    else:
        from optiscale_jax.datasets import load_mnist  # noqa: PLC0415
        X, y, *_ = load_mnist(n_samples=args.n_rows, binary_classification=True, test_size=0.0,
                              data_dir=args.data_dir)
    if len(X) < args.n_rows:
        raise ValueError(f"n_rows={args.n_rows} but the data has {len(X)} rows")
    rows = local_block(args.n_rows, info.process_id, info.process_count)
    trainer = ParallelTrainer(None, args.strategy, optax.sgd(args.learning_rate),
                              model="logistic", l2=args.l2, epochs=args.epochs)
    trainer.fit(np.asarray(X)[rows], np.asarray(y)[rows])
    held = per_device_bytes(trainer.state_.params)  # this process's devices only
    print(f"process {info.process_id}/{info.process_count}: {info.global_device_count} devices, "
          f"final loss {trainer.history_[-1]:.8f}, parameter bytes held here "
          f"{sum(held.values())} of {logical_bytes(trainer.state_.params)} on {len(held)} devices",
          flush=True)
    if args.output:
        np.save(args.output, trainer.coef_)
    shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
