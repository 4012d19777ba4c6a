"""Complete optimizers: a direction, optional decoupled weight decay, then -learning_rate.

Every factory validates the hyperparameters it can see (concrete numbers), and
accepts traced values and optax schedules for the learning rate. The update
formulas equal optax 0.2.8's `sgd`, `sgd(momentum=...)`, `adam`, `adamw`,
`nadam`, `rmsprop` and `adagrad` with the same hyperparameters.

`namespace`: the array module (`None` = `jax.numpy`). The NumPy / CuPy reference
backends build the very same chains with `namespace=numpy` / `cupy`.
"""

from __future__ import annotations

from typing import Any

import optax

from optiscale_jax.optimizers import _transforms as t
from optiscale_jax.optimizers._validation import check_learning_rate, check_non_negative, check_unit_interval


def sgd(learning_rate: t.LearningRate = 0.01, *, namespace: Any = None) -> optax.GradientTransformation:
    """Plain gradient descent: p <- p - lr * g.

    Args:
      learning_rate: step size lr >= 0 (float, traced array or schedule of the step).
      namespace: array module; None for JAX.

    Example:
      >>> tx = sgd(0.1); state = tx.init(params); updates, state = tx.update(grads, state)
    """
    check_learning_rate(learning_rate, "sgd")
    return optax.chain(t.scale_by_learning_rate(learning_rate, namespace=namespace))


def momentum(learning_rate: t.LearningRate = 0.01, momentum: Any = 0.9, *,
             namespace: Any = None) -> optax.GradientTransformation:
    """Heavy-ball momentum (Polyak 1964): m <- g + mu m; p <- p - lr m.

    Equals `optax.sgd(lr, momentum=mu)`. PyTorch's `SGD(momentum=mu)` uses the same
    recursion (dampening 0).
    """
    check_learning_rate(learning_rate, "momentum")
    check_unit_interval("momentum", momentum, "momentum")
    return optax.chain(t.scale_by_momentum(momentum, nesterov=False, namespace=namespace),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))


def nesterov(learning_rate: t.LearningRate = 0.01, momentum: Any = 0.9, *,
             namespace: Any = None) -> optax.GradientTransformation:
    """Nesterov momentum (Sutskever et al. 2013 form): m <- g + mu m; p <- p - lr (g + mu m).

    Equals `optax.sgd(lr, momentum=mu, nesterov=True)`.
    """
    check_learning_rate(learning_rate, "nesterov")
    check_unit_interval("momentum", momentum, "nesterov")
    return optax.chain(t.scale_by_momentum(momentum, nesterov=True, namespace=namespace),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))


def _check_adam(name: str, learning_rate: Any, b1: Any, b2: Any, eps: Any, eps_root: Any) -> None:
    check_learning_rate(learning_rate, name)
    check_unit_interval("b1", b1, name)
    check_unit_interval("b2", b2, name)
    check_non_negative("eps", eps, name)
    check_non_negative("eps_root", eps_root, name)


def adam(learning_rate: t.LearningRate = 1e-3, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
         eps_root: Any = 0.0, *, namespace: Any = None) -> optax.GradientTransformation:
    """Adam (Kingma & Ba 2015).

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t) + eps_root) + eps).
    Equals `optax.adam`; PyTorch's `Adam` puts eps the same place (outside the sqrt).
    """
    _check_adam("adam", learning_rate, b1, b2, eps, eps_root)
    return optax.chain(t.scale_by_adam(b1, b2, eps, eps_root, namespace=namespace),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))


def nadam(learning_rate: t.LearningRate = 1e-3, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
          eps_root: Any = 0.0, *, namespace: Any = None) -> optax.GradientTransformation:
    """NAdam (Dozat 2016): Adam with a Nesterov look-ahead on the first moment. Equals `optax.nadam`."""
    _check_adam("nadam", learning_rate, b1, b2, eps, eps_root)
    return optax.chain(t.scale_by_adam(b1, b2, eps, eps_root, nesterov=True, namespace=namespace),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))


def adamw(learning_rate: t.LearningRate = 1e-3, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
          eps_root: Any = 0.0, weight_decay: Any = 1e-4, *,
          namespace: Any = None) -> optax.GradientTransformation:
    """AdamW (Loshchilov & Hutter 2019): p <- p - lr * (adam_direction + weight_decay * p).

    Warning: the decay is scaled by the learning rate, as in optax and PyTorch;
    the default weight_decay is optax's 1e-4 (PyTorch's default is 1e-2).
    """
    _check_adam("adamw", learning_rate, b1, b2, eps, eps_root)
    check_non_negative("weight_decay", weight_decay, "adamw")
    return optax.chain(t.scale_by_adam(b1, b2, eps, eps_root, namespace=namespace),
                       t.add_decayed_weights(weight_decay),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))


def rmsprop(learning_rate: t.LearningRate = 1e-3, decay: Any = 0.9, eps: Any = 1e-8, *,
            namespace: Any = None) -> optax.GradientTransformation:
    """RMSProp (Hinton 2012): v <- decay v + (1-decay) g^2;  p <- p - lr g / sqrt(v + eps).

    Equals `optax.rmsprop` (eps inside the square root, v_0 = 0). PyTorch's
    `RMSprop` puts eps outside the root and defaults to decay (alpha) 0.99.
    """
    check_learning_rate(learning_rate, "rmsprop")
    check_unit_interval("decay", decay, "rmsprop")
    check_non_negative("eps", eps, "rmsprop")
    return optax.chain(t.scale_by_rms(decay, eps, namespace=namespace),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))


def adagrad(learning_rate: t.LearningRate = 0.01, initial_accumulator_value: Any = 0.1,
            eps: Any = 1e-7, *, namespace: Any = None) -> optax.GradientTransformation:
    """Adagrad (Duchi et al. 2011): s <- s + g^2 (s_0 = 0.1);  p <- p - lr g / sqrt(s + eps).

    Equals `optax.adagrad`.
    """
    check_learning_rate(learning_rate, "adagrad")
    check_non_negative("initial_accumulator_value", initial_accumulator_value, "adagrad")
    check_non_negative("eps", eps, "adagrad")
    return optax.chain(t.scale_by_adagrad(initial_accumulator_value, eps, namespace=namespace),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))
