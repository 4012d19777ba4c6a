"""``python -m experiments.peers`` from the repository root: the ``optiscale-peers`` command.

The peers and their helpers live in ``optiscale_jax/cli/peers.py`` (see ``optiscale-peers --help``).
"""

from optiscale_jax.cli.peers import (
    MNIST_L2,
    Peer,
    Timing,
    check_same_work,
    floor_one_pass,
    jit_speedup,
    peer_engine,
    peer_numpy_backend,
    peer_numpy_loop,
    peer_optax_scan,
    peer_torch,
    run,
    time_peers,
)

__all__ = ["MNIST_L2", "Peer", "Timing", "check_same_work", "floor_one_pass", "jit_speedup",
           "peer_engine", "peer_numpy_backend", "peer_numpy_loop", "peer_optax_scan",
           "peer_torch", "run", "time_peers"]

if __name__ == "__main__":
    run()
