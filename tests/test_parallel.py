"""ParallelTrainer on 8 virtual CPU devices: linear models, mini-batches, padding, errors.

Plain SGD is the real test (Adam's update is invariant to a gradient scale, so it
would hide an N-times gradient); Adam is checked too. The reference is the
engine's own single-device ``run(problem, ...)``, independent of the parallel
code. The MLP under every strategy is in ``test_sharded.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optiscale_jax.datasets import load_mnist
from optiscale_jax.parallel import (
    STRATEGIES,
    MLPSpec,
    ParallelTrainer,
    bubble_fraction,
    make_layout,
    make_loss,
    measure_bubble_fraction,
    train,
)
from optiscale_jax.problems import make_problem
from optiscale_jax.training import run

N_ROWS = 1024
L2 = 1e-4
LINEAR_EPOCHS = 30
OPTIMIZERS = {"sgd": lambda: optax.sgd(0.5), "adam": lambda: optax.adam(1e-2)}
LINEAR_LAYOUTS = [("data_parallel", None), ("fsdp", None), ("model_parallel", None),
                  ("data_model_parallel", (2, 4)), ("fsdp_model_parallel", (4, 2))]


@pytest.fixture(scope="session")
def mnist_binary(data_dir):
    X, y, *_ = load_mnist(n_samples=N_ROWS, binary_classification=True, test_size=0.0,
                          data_dir=data_dir)
    assert X.shape == (N_ROWS, 784)
    return np.asarray(X, np.float32), np.asarray(y, np.float32)


@pytest.fixture(scope="session")
def logistic_problem(mnist_binary):
    return make_problem("logistic", *mnist_binary, l2=L2)


@pytest.fixture(scope="session")
def linear_reference(logistic_problem):
    return {name: run(logistic_problem, make(), epochs=LINEAR_EPOCHS).params
            for name, make in OPTIMIZERS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("strategy,mesh_shape,optimizer", [
    (strategy, mesh_shape, "sgd") for strategy, mesh_shape in LINEAR_LAYOUTS] + [
    ("fsdp_model_parallel", (4, 2), "adam")])
def test_logistic_regression_matches_single_device(mnist_binary, linear_reference, strategy,
                                                  mesh_shape, optimizer):
    trainer = ParallelTrainer(8, strategy, OPTIMIZERS[optimizer](), model="logistic", l2=L2,
                              epochs=LINEAR_EPOCHS, mesh_shape=mesh_shape).fit(*mnist_binary)
    assert trainer.layout_.n_devices == 8
    reference = linear_reference[optimizer]
    assert np.max(np.abs(reference)) > 1e-2  # the run moved far from w0 = 0
    np.testing.assert_allclose(trainer.coef_, reference, rtol=0, atol=1e-5)
    if optimizer == "sgd":
        assert np.linalg.norm(trainer.coef_ - reference) / np.linalg.norm(reference) < 1e-6
    assert trainer.history_[-1] < trainer.history_[0]


@pytest.mark.slow
def test_minibatch_data_parallel_matches_single_device(logistic_problem, mnist_binary):
    """Batches of 300 rows and a last one of 124, none a multiple of 8: padded exactly."""
    reference = run(logistic_problem, optax.sgd(0.5), epochs=2, batch_size=300, seed=3).params
    trainer = ParallelTrainer(8, "data_parallel", optax.sgd(0.5), l2=L2, epochs=2,
                              batch_size=300, seed=3).fit(*mnist_binary)
    np.testing.assert_allclose(trainer.coef_, reference, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_lower_level_train_softmax_problem(data_dir):
    """train(Problem, transform, layout): 10-class softmax (int labels, (d, k) weights)."""
    X, digits, *_ = load_mnist(n_samples=N_ROWS, test_size=0.0, data_dir=data_dir)
    problem = make_problem("softmax", X, digits, l2=L2)
    reference = run(problem, optax.sgd(0.5), epochs=10).params
    result = train(problem, optax.sgd(0.5), make_layout("data_model_parallel", 8, (4, 2)),
                   epochs=10)
    assert result.params.shape == (784, 10) and np.max(np.abs(reference)) > 1e-2
    np.testing.assert_allclose(result.params, reference, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_uneven_rows_and_features_are_padded_exactly():
    """53 rows over 2 data shards and 13 features over 4 model shards: same loss and gradient."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(53, 13)).astype(np.float32)
    labels = rng.integers(0, 3, 53)
    for kind, y in (("logistic", (labels > 0).astype(np.float32)), ("softmax", labels)):
        problem = make_problem(kind, X, y, l2=0.1)
        w = jnp.asarray(rng.normal(size=problem.param_shape), jnp.float32)
        expected = jax.jit(jax.value_and_grad(problem.loss))(w, jnp.asarray(X), jnp.asarray(y))
        layout = make_layout("data_model_parallel", 8, (2, 4))
        loss = make_loss(problem, layout, label_dtype=jnp.asarray(y).dtype)
        value, grad = jax.jit(jax.value_and_grad(loss))(w, jnp.asarray(X), jnp.asarray(y))
        np.testing.assert_allclose(value, expected[0], rtol=1e-6)
        np.testing.assert_allclose(grad, expected[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("n_micro,mesh_shape", [(32, (1, 8)), (3, (2, 4)), (1, (4, 2))])
def test_bubble_fraction_counted_on_the_mesh(n_micro, mesh_shape):
    layout = make_layout("data_pipeline_parallel", 8, mesh_shape)
    stages = mesh_shape[1]
    counted = measure_bubble_fraction(layout, n_micro)
    assert counted == pytest.approx(bubble_fraction(n_micro, stages), abs=1e-12)
    assert counted == pytest.approx((stages - 1) / (n_micro + stages - 1), abs=1e-12)


def test_strategies_listed():
    assert set(STRATEGIES) == {"data_parallel", "fsdp", "model_parallel", "pipeline_parallel",
                               "data_model_parallel", "data_pipeline_parallel", "fsdp_model_parallel"}


@pytest.mark.parametrize("kwargs,message", [
    (dict(n_devices=9), "n_devices=9 but only 8"),
    (dict(n_devices=0), "positive int"),
    (dict(strategy="tensor_parallel"), "unknown strategy 'tensor_parallel'; choose one of"),
    (dict(strategy="pipeline_parallel"), "linear 'logistic' model has a single layer"),
    (dict(strategy="data_parallel", mesh_shape=(2, 4)), "for a 2-d split use"),
    (dict(strategy="data_model_parallel", n_devices=8, mesh_shape=(3, 2)), "product equal"),
    (dict(strategy="pipeline_parallel", model=MLPSpec(784, 32, n_blocks=3)),
     "n_blocks=3 hidden width->width layers over 8 stages"),
    (dict(strategy="model_parallel", model=MLPSpec(784, 12, n_blocks=1)),
     "width=12 hidden units over 8 devices"),
    (dict(strategy="pipeline_parallel", model=MLPSpec(784, 32, n_blocks=8), n_microbatches=0),
     "n_microbatches must be a positive int"),
    (dict(model="poisson"), "model='poisson' is invalid"),
])
def test_bad_input_is_rejected_with_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ParallelTrainer(**kwargs)


def test_mlp_data_checked(mnist_binary):
    X, y = mnist_binary
    with pytest.raises(ValueError, match=r"expects \(n, 10\)"):
        ParallelTrainer(2, "data_parallel", model=MLPSpec(10, 8, 0), epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"0 / 1 labels, got values \[0.0, 2.0\]"):
        ParallelTrainer(2, "data_parallel", model=MLPSpec(784, 8, 0), epochs=1).fit(X, 2 * y)
