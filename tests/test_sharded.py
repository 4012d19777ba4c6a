"""Sharded training state on 8 virtual CPU devices: memory per device and exactness.

Every strategy trains the same MLP from the same initial weights; the reference is
a plain jitted optax loop on one device (independent of the parallel code). The
bytes per device are read off the trained arrays' shards and compared with the
unsharded sizes (``leaf.size x itemsize``) and with ``estimate_parallel_memory``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optiscale_jax.datasets import load_mnist
from optiscale_jax.parallel import (
    STRATEGIES,
    MLPSpec,
    ParallelTrainer,
    estimate_parallel_memory,
    init_mlp_params,
    make_layout,
    make_loss,
    measure_memory,
    mlp_loss,
)
from optiscale_jax.problems import make_problem
from optiscale_jax.profiling import per_device_bytes, sharded_memory

N_ROWS = 1020  # not a multiple of 8: rows are padded with weight 0
MLP = MLPSpec(n_features=784, width=32, n_blocks=8, l2=1e-4)
LAYOUTS = {"data_parallel": None, "fsdp": None, "model_parallel": None, "pipeline_parallel": None,
           "data_model_parallel": (2, 4), "data_pipeline_parallel": (2, 4),
           "fsdp_model_parallel": (2, 4)}
# SGD with momentum over 30 epochs, Adam over 10 (Adam's sign-like steps amplify float32
# rounding once the loss is small, so it is compared over fewer steps and a looser bound).
OPTIMIZERS = {"momentum": (lambda: optax.sgd(0.05, momentum=0.9), 30, 1e-6),
              "adam": (lambda: optax.adam(1e-3), 10, 1e-5)}


@pytest.fixture(scope="module")
def data(data_dir):
    X, y, *_ = load_mnist(n_samples=1024, binary_classification=True, test_size=0.0,
                          data_dir=data_dir)
    return np.asarray(X, np.float32)[:N_ROWS], np.asarray(y, np.float32)[:N_ROWS]


def _plain_loop(X, y, transform, epochs):
    params = init_mlp_params(MLP, seed=0)
    state = transform.init(params)

    @jax.jit
    def step(params, state):
        grad = jax.grad(mlp_loss)(params, X, y, MLP.l2)
        updates, state = transform.update(grad, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(epochs):
        params, state = step(params, state)
    return params


@pytest.fixture(scope="module")
def runs(data):
    """{(optimizer, strategy): fitted trainer}, plus the single-device references."""
    X, y = data
    out = {}
    for name, (make, epochs, _) in OPTIMIZERS.items():
        out[name, "reference"] = _plain_loop(jnp.asarray(X), jnp.asarray(y), make(), epochs)
        for strategy, mesh_shape in LAYOUTS.items():
            out[name, strategy] = ParallelTrainer(8, strategy, make(), model=MLP, epochs=epochs,
                                                  mesh_shape=mesh_shape).fit(X, y)
    return out


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(leaf, np.float64)) for leaf in jax.tree.leaves(tree)])


def test_every_strategy_is_listed():
    assert set(LAYOUTS) == set(STRATEGIES)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("strategy", sorted(LAYOUTS))
def test_strategy_equals_single_device(runs, strategy, optimizer):
    """||w - w_ref|| / ||w_ref|| below 1e-6 (SGD + momentum, 30 epochs) / 1e-5 (Adam, 10)."""
    reference, trainer = runs[optimizer, "reference"], runs[optimizer, strategy]
    moved = np.linalg.norm(_flat(reference) - _flat(init_mlp_params(MLP, 0)))
    assert moved > 1e-2 * np.linalg.norm(_flat(reference))
    error = np.linalg.norm(_flat(trainer.params_) - _flat(reference)) / np.linalg.norm(_flat(reference))
    assert error < OPTIMIZERS[optimizer][2], error
    assert trainer.history_[-1] < trainer.history_[0]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("strategy", ["fsdp", "model_parallel", "fsdp_model_parallel"])
def test_parameters_and_state_split_eight_ways(runs, data, strategy, optimizer):
    """Per device <= 1/8 of the replicated params + optimizer state (+1% padding), measured
    from the arrays' shards after training; gradients split the same way; the estimate
    made before training equals the measurement."""
    trainer = runs[optimizer, strategy]
    with_grads = (strategy, optimizer) == ("fsdp_model_parallel", "adam")  # one gradient compile
    memory = measure_memory(trainer, *data) if with_grads else measure_memory(trainer)
    replicated = memory.replicated_bytes("params", "opt_state")
    per_device = memory.max_per_device("params", "opt_state")
    assert replicated == 2 * 4 * 33_601 + (4 if optimizer == "adam" else 0) + 4 * 33_601 * (
        optimizer == "adam")  # params, then m (momentum) or m, v and the step count (Adam)
    assert per_device <= 1.01 * replicated / 8, (per_device, replicated)
    estimate = estimate_parallel_memory(MLP, OPTIMIZERS[optimizer][0](), strategy,
                                        LAYOUTS[strategy], n_devices=8, n_rows=N_ROWS)
    assert estimate.params + estimate.opt_state == per_device
    assert estimate.replicated_params + estimate.replicated_opt_state == replicated
    if with_grads:
        assert memory.max_per_device("grads") <= 1.01 * memory.replicated_bytes("grads") / 8
        assert estimate.grads == memory.max_per_device("grads")
        assert estimate.data == memory.max_per_device("data")  # 1020 rows: replicated, not split


@pytest.mark.slow
def test_replicated_strategy_holds_everything_everywhere(runs):
    memory = measure_memory(runs["adam", "data_parallel"])
    assert memory.max_per_device("params", "opt_state") == memory.replicated_bytes("params", "opt_state")
    assert len(memory.parts["params"]) == 8


@pytest.mark.slow
def test_pipeline_stages_hold_only_their_layers(runs):
    """On the (2, 4) mesh, the devices of stage s hold hidden layers 2s, 2s+1 (and their
    Adam moments), nothing of the other stages."""
    trainer = runs["adam", "data_pipeline_parallel"]
    mesh = trainer.layout_.mesh
    stage_of = {device: s for row in mesh.devices for s, device in enumerate(row)}
    hidden = [trainer.state_.params.w_hidden]
    adam = trainer.state_.opt_state[0]
    hidden += [adam.mu.w_hidden, adam.nu.w_hidden]
    for array in hidden:
        assert array.shape == (8, 32, 32)
        for shard in array.addressable_shards:
            layers = range(*shard.index[0].indices(8))
            assert list(layers) == [2 * stage_of[shard.device], 2 * stage_of[shard.device] + 1]
            assert shard.data.nbytes == array.nbytes // 4


@pytest.mark.slow
def test_uneven_fsdp_split_is_padded_exactly():
    """13 features over an fsdp axis of 8: w is stored zero-padded to 16 rows, 2 per device;
    the loss and its gradient equal the unsharded ones."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(53, 13)).astype(np.float32)
    labels = rng.integers(0, 3, 53)
    for kind, y, strategy, mesh_shape in (
            ("logistic", (labels > 0).astype(np.float32), "fsdp", None),
            ("softmax", labels, "fsdp_model_parallel", (2, 4))):
        problem = make_problem(kind, X, y, l2=0.1)
        w = jnp.asarray(rng.normal(size=problem.param_shape), jnp.float32)
        expected = jax.jit(jax.value_and_grad(problem.loss))(w, jnp.asarray(X), jnp.asarray(y))
        if True:
            layout = make_layout(strategy, 8, mesh_shape)
            loss = make_loss(problem, layout, label_dtype=jnp.asarray(y).dtype)
            value, grad = jax.jit(jax.value_and_grad(loss))(w, jnp.asarray(X), jnp.asarray(y))
            np.testing.assert_allclose(value, expected[0], rtol=1e-6)
            np.testing.assert_allclose(grad, expected[1], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_linear_fsdp_trains_and_predicts():
    """A 2-epoch fsdp logistic regression: coefficients in their own shape, stored split,
    predict / score (accuracy) consistent with the coefficients."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 13)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    trainer = ParallelTrainer(8, "fsdp", "sgd", hyperparams={"learning_rate": 0.5},
                              model="logistic", epochs=2).fit(X, y)
    assert trainer.coef_.shape == (13,)
    stored = trainer.state_.params
    assert stored.shape == (16,) and {s.data.shape for s in stored.addressable_shards} == {(2,)}
    expected = (X.astype(np.float64) @ trainer.coef_ >= 0).astype(int)
    np.testing.assert_array_equal(trainer.predict(X), expected)
    assert trainer.score(X, y) == pytest.approx(np.mean(expected == y))


def test_regressor_scores_r2():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)).astype(np.float32)
    y = X @ np.arange(1.0, 6.0) + 0.1 * rng.normal(size=64)
    trainer = ParallelTrainer(4, "fsdp", "sgd", hyperparams={"learning_rate": 0.1},
                              model="least_squares", epochs=3).fit(X, y)
    prediction = X.astype(np.float64) @ trainer.coef_
    r2 = 1 - np.sum((y - prediction) ** 2) / np.sum((y - y.mean()) ** 2)
    assert trainer.score(X, y) == pytest.approx(r2)


@pytest.mark.parametrize("kwargs,message", [
    (dict(strategy="fsdp_model_parallel", mesh_shape=(2, 4), model=MLPSpec(784, 34, 4)),
     "width=34 hidden units over 4 devices"),
    (dict(strategy="fsdp_model_parallel", mesh_shape=(4, 2), model=MLPSpec(784, 4, 4)),
     r"fsdp cannot split a parameter of shape \(4,\) over the data axis of size 4"),
    (dict(strategy="fsdp", mesh_shape=(2, 4)), "for a 2-d split use strategy='fsdp_model_parallel'"),
    (dict(n_devices=64, strategy="fsdp"), "XLA_FLAGS=--xla_force_host_platform_device_count=64"),
])
def test_bad_layouts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ParallelTrainer(**kwargs)


def test_non_binary_labels_point_at_softmax():
    X = np.zeros((8, 3), np.float32)
    with pytest.raises(ValueError, match="Use model='softmax'"):
        ParallelTrainer(2, "fsdp", model="logistic", epochs=1).fit(X, np.arange(8) % 3)
    with pytest.raises(ValueError, match="for more classes use model='softmax'"):
        ParallelTrainer(2, "fsdp", model=MLPSpec(3, 4, 0), epochs=1).fit(X, np.arange(8) % 3)


def test_auto_model_reads_string_classes_and_predicts_them():
    """model='auto' with three string classes: softmax, labels decoded by predict."""
    rng = np.random.default_rng(0)
    centers = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    index = np.arange(48) % 3
    X = (centers[index] + 0.3 * rng.normal(size=(48, 2))).astype(np.float32)
    y = np.array(["cat", "dog", "emu"])[index]
    trainer = ParallelTrainer(4, "fsdp", "sgd", hyperparams={"learning_rate": 0.5}, model="auto",
                              epochs=20).fit(X, y)
    assert trainer.coef_.shape == (2, 3) and list(trainer.classes_) == ["cat", "dog", "emu"]
    expected = np.array(["cat", "dog", "emu"])[np.argmax(X.astype(np.float64) @ trainer.coef_, axis=1)]
    np.testing.assert_array_equal(trainer.predict(X), expected)
    assert trainer.score(X, y) == pytest.approx(np.mean(expected == y)) == 1.0


def test_per_device_bytes_from_shards():
    """A (64, 3) float32 array split over 8 devices: 96 B on each; replicated: 768 B on each."""
    layout = make_layout("fsdp", 8)
    x = np.arange(64 * 3, dtype=np.float32).reshape(64, 3)
    split = jax.device_put(x, NamedSharding(layout.mesh, P("data")))
    whole = jax.device_put(x, NamedSharding(layout.mesh, P()))
    assert set(per_device_bytes(split).values()) == {96} and len(per_device_bytes(split)) == 8
    report = sharded_memory(split=split, whole=whole, host=np.zeros(10))
    assert report.max_per_device("split") == 96 and report.max_per_device("whole") == 768
    assert report.total("split") == 768 and report.total("whole") == 8 * 768
    assert report.replicated_bytes("split", "whole") == 2 * 768
    assert report.parts["host"] == {} and report.device_stats == []  # CPU devices report no stats
