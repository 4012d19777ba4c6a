"""optiscale_jax optimizers inside Flax: nnx.Optimizer and linen TrainState, equal to optax.adam."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from flax.training import train_state

from optiscale_jax import optimizers

N_STEPS = 10


def batches():
    rng = np.random.default_rng(0)
    return [(jnp.asarray(rng.normal(size=(16, 6)), jnp.float32),
             jnp.asarray(rng.integers(0, 3, size=16))) for _ in range(N_STEPS)]


class NnxMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(6, 8, rngs=rngs)
        self.out = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def train_nnx(tx) -> list[float]:
    model = NnxMLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer, x, y)) for x, y in batches()]
    return losses + [np.asarray(model.out.kernel[...])]


@pytest.mark.slow
def test_nnx_mlp_trains_with_our_adam_step_for_step_like_optax():
    ours = train_nnx(optimizers.adam(1e-2))
    theirs = train_nnx(optax.adam(1e-2))
    np.testing.assert_allclose(ours[:-1], theirs[:-1], rtol=1e-6)
    np.testing.assert_allclose(ours[-1], theirs[-1], rtol=1e-5, atol=1e-7)
    assert ours[N_STEPS - 1] < ours[0]  # it trains


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(3)(jax.nn.relu(linen.Dense(8)(x)))


def train_linen(tx) -> list:
    model = LinenMLP()
    params = model.init(jax.random.key(0), jnp.zeros((1, 6)))["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    @jax.jit
    def step(state, x, y):
        def loss_fn(params):
            logits = state.apply_fn({"params": params}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for x, y in batches():
        state, loss = step(state, x, y)
        losses.append(float(loss))
    return losses, state.params


@pytest.mark.slow
def test_linen_train_state_trains_with_our_adam_step_for_step_like_optax():
    ours, ours_params = train_linen(optimizers.adam(1e-2))
    theirs, their_params = train_linen(optax.adam(1e-2))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(ours_params), jax.tree.leaves(their_params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    assert ours[-1] < ours[0]
