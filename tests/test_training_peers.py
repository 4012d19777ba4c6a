"""optiscale-peers (optiscale_jax/cli/peers.py): every peer trains the same model with the same Adam, so their
times compare identical work."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from optiscale_jax.cli import peers
from optiscale_jax.problems import make_problem


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["logistic", "least_squares"])
def test_peers_reach_the_same_final_loss(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)).astype(np.float32)
    score = X @ rng.normal(size=5)
    y = (score > 0).astype(np.float64) if kind == "logistic" else score
    l2 = peers.MNIST_L2 if kind == "logistic" else 0.0
    problem = make_problem(kind, X, y, l2=l2)
    epochs = 30
    contenders = [peers.peer_engine(problem, epochs), peers.peer_numpy_backend(problem, epochs),
                  peers.peer_optax_scan(kind, X, y, l2, epochs),
                  peers.peer_numpy_loop(kind, X, y, l2, epochs),
                  peers.peer_torch(kind, X, y, l2, epochs)]
    timings = peers.time_peers(contenders, epochs, repeats=1)
    spread = peers.check_same_work(timings, rtol=1e-5)
    assert spread <= 1e-5
    assert all(t.seconds_per_epoch > 0 for t in timings if isinstance(t, peers.Timing))
    if importlib.util.find_spec("torch") is not None:
        assert isinstance(timings[-1], peers.Timing)
    else:
        assert timings[-1] == "torch: not installed"
    with pytest.raises(ValueError, match="disagree"):
        peers.check_same_work([timings[0], timings[0]._replace(final_loss=2 * timings[0].final_loss)])
