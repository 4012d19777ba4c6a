"""Complete optimizers: a direction, optional decoupled weight decay, then -learning_rate.

Every factory takes the keywords of the optax 0.2.8 alias of the same name, in the
same order, with the same defaults (except that the learning rate has a default
here) and the same update arithmetic; `momentum` and `nesterov` are
`sgd(momentum=...)` and `sgd(momentum=..., nesterov=True)` under their own names.
Each validates the hyperparameters it can see (concrete numbers) and accepts traced
values and optax schedules for the learning rate (and AdamW's weight decay).

`namespace`: the array module (`None` = `jax.numpy`). The NumPy / CuPy reference
backends build the very same chains with `namespace=numpy` / `cupy`.
"""

from __future__ import annotations

from typing import Any

import optax

from optiscale_jax.optimizers import _transforms as t
from optiscale_jax.optimizers._validation import (
    check_dtype,
    check_flag,
    check_learning_rate,
    check_non_negative,
    check_optional_unit_interval,
    check_unit_interval,
)


def sgd(learning_rate: t.LearningRate = 0.01, momentum: Any = None, nesterov: bool = False,
        accumulator_dtype: Any = None, *, namespace: Any = None) -> optax.GradientTransformation:
    """Stochastic gradient descent: p <- p - lr * g; with momentum mu: m <- g + mu m, p <- p - lr m.

    Args:
      learning_rate: step size lr >= 0 (float, traced array or schedule of the step).
      momentum: mu in [0, 1), or None for plain gradient descent.
      nesterov: with momentum, step along g + mu m (Sutskever et al. 2013) instead of m.
      accumulator_dtype: dtype of the stored m (None: the parameters' dtype).
      namespace: array module; None for JAX.

    Equals `optax.sgd` with the same arguments. PyTorch's `SGD(momentum=mu)` uses the same
    recursion (dampening 0).
    """
    check_learning_rate(learning_rate, "sgd")
    check_optional_unit_interval("momentum", momentum, "sgd")
    check_flag("nesterov", nesterov, "sgd")
    accumulator_dtype = check_dtype("accumulator_dtype", accumulator_dtype, "sgd",
                                    for_jax=namespace is None)
    lr = t.scale_by_learning_rate(learning_rate, namespace=namespace)
    if momentum is None:
        return optax.chain(lr)
    return optax.chain(t.scale_by_momentum(momentum, nesterov, accumulator_dtype, namespace=namespace), lr)


def momentum(learning_rate: t.LearningRate = 0.01, momentum: Any = 0.9, accumulator_dtype: Any = None,
             *, namespace: Any = None) -> optax.GradientTransformation:
    """Heavy-ball momentum (Polyak 1964): m <- g + mu m; p <- p - lr m.

    Equals `optax.sgd(lr, momentum=mu)`.
    """
    check_unit_interval("momentum", momentum, "momentum")
    return sgd(learning_rate, momentum, False, accumulator_dtype, namespace=namespace)


def nesterov(learning_rate: t.LearningRate = 0.01, momentum: Any = 0.9, accumulator_dtype: Any = None,
             *, namespace: Any = None) -> optax.GradientTransformation:
    """Nesterov momentum (Sutskever et al. 2013 form): m <- g + mu m; p <- p - lr (g + mu m).

    Equals `optax.sgd(lr, momentum=mu, nesterov=True)`.
    """
    check_unit_interval("momentum", momentum, "nesterov")
    return sgd(learning_rate, momentum, True, accumulator_dtype, namespace=namespace)


def _adam_direction(name: str, learning_rate: Any, b1: Any, b2: Any, eps: Any, eps_root: Any,
                    mu_dtype: Any, nesterov: Any, namespace: Any) -> optax.GradientTransformation:
    """Validates Adam's hyperparameters and builds its direction."""
    check_learning_rate(learning_rate, name)
    check_unit_interval("b1", b1, name)
    check_unit_interval("b2", b2, name)
    check_non_negative("eps", eps, name)
    check_non_negative("eps_root", eps_root, name)
    mu_dtype = check_dtype("mu_dtype", mu_dtype, name, for_jax=namespace is None)
    nesterov = check_flag("nesterov", nesterov, name)
    return t.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, namespace=namespace)


def adam(learning_rate: t.LearningRate = 1e-3, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
         eps_root: Any = 0.0, mu_dtype: Any = None, *, nesterov: bool = False,
         namespace: Any = None) -> optax.GradientTransformation:
    """Adam (Kingma & Ba 2015); NAdam (Dozat 2016) with `nesterov=True`.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) |g|^2;  t = step number (1, 2, ...);
    p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t) + eps_root) + eps).
    `mu_dtype`: dtype of the stored m (None: the parameters' dtype).
    Equals `optax.adam`; PyTorch's `Adam` puts eps the same place (outside the sqrt).
    """
    return optax.chain(_adam_direction("adam", learning_rate, b1, b2, eps, eps_root, mu_dtype,
                                       nesterov, namespace),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))


def nadam(learning_rate: t.LearningRate = 1e-3, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
          eps_root: Any = 0.0, mu_dtype: Any = None, *, nesterov: bool = True,
          namespace: Any = None) -> optax.GradientTransformation:
    """NAdam (Dozat 2016): Adam whose bias-corrected first moment looks one step ahead,

    m_hat = b1 m / (1-b1^(t+1)) + (1-b1) g / (1-b1^t). Equals `optax.nadam`
    (`adam(..., nesterov=True)`).
    """
    return optax.chain(_adam_direction("nadam", learning_rate, b1, b2, eps, eps_root, mu_dtype,
                                       nesterov, namespace),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))


def adamw(learning_rate: t.LearningRate = 1e-3, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
          eps_root: Any = 0.0, mu_dtype: Any = None, weight_decay: Any = 1e-4, mask: Any = None, *,
          nesterov: bool = False, namespace: Any = None) -> optax.GradientTransformation:
    """AdamW (Loshchilov & Hutter 2019): p <- p - lr * (adam_direction + weight_decay * p).

    `weight_decay` may be a schedule; `mask` (a pytree of booleans or a function of the
    parameters returning one) selects the leaves that decay. `nesterov=True` is NAdamW.
    Warning: the decay is scaled by the learning rate, as in optax and PyTorch;
    the default weight_decay is optax's 1e-4 (PyTorch's default is 1e-2).
    """
    direction = _adam_direction("adamw", learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov,
                                namespace)
    check_non_negative("weight_decay", weight_decay, "adamw", schedule_ok=True)
    return optax.chain(direction, t.add_decayed_weights(weight_decay, mask, namespace=namespace),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))


def rmsprop(learning_rate: t.LearningRate = 1e-3, decay: Any = 0.9, eps: Any = 1e-8,
            initial_scale: Any = 0.0, eps_in_sqrt: bool = True, centered: bool = False,
            momentum: Any = None, nesterov: bool = False, bias_correction: bool = False, *,
            namespace: Any = None) -> optax.GradientTransformation:
    """RMSProp (Hinton 2012): v <- decay v + (1-decay) |g|^2 (v_0 = initial_scale);
    p <- p - lr g / sqrt(v + eps).

    Variants, as in `optax.rmsprop`: `eps_in_sqrt=False` divides by sqrt(v) + eps
    (PyTorch's placement); `centered=True` subtracts the squared moving average of g
    under the root (Graves 2013); `bias_correction=True` divides the moving averages
    by 1 - decay^t; `momentum` mu applies a trace to the lr-scaled step (after the
    learning rate, as optax: m <- -lr d + mu m), `nesterov` its look-ahead form.
    PyTorch's `RMSprop` defaults to decay (alpha) 0.99 and eps outside the root.
    """
    check_learning_rate(learning_rate, "rmsprop")
    check_unit_interval("decay", decay, "rmsprop")
    check_non_negative("eps", eps, "rmsprop")
    check_non_negative("initial_scale", initial_scale, "rmsprop")
    check_optional_unit_interval("momentum", momentum, "rmsprop")
    flags = [check_flag(name, value, "rmsprop") for name, value in (
        ("eps_in_sqrt", eps_in_sqrt), ("centered", centered), ("nesterov", nesterov),
        ("bias_correction", bias_correction))]
    eps_in_sqrt, centered, nesterov, bias_correction = flags
    scale = t.scale_by_stddev if centered else t.scale_by_rms
    parts = [scale(decay, eps, initial_scale, eps_in_sqrt, bias_correction, namespace=namespace),
             t.scale_by_learning_rate(learning_rate, namespace=namespace)]
    if momentum is not None:
        parts.append(t.scale_by_momentum(momentum, nesterov, namespace=namespace))
    return optax.chain(*parts)


def adagrad(learning_rate: t.LearningRate = 0.01, initial_accumulator_value: Any = 0.1,
            eps: Any = 1e-7, *, namespace: Any = None) -> optax.GradientTransformation:
    """Adagrad (Duchi et al. 2011): s <- s + |g|^2 (s_0 = 0.1);  p <- p - lr g / sqrt(s + eps).

    Equals `optax.adagrad`.
    """
    check_learning_rate(learning_rate, "adagrad")
    check_non_negative("initial_accumulator_value", initial_accumulator_value, "adagrad")
    check_non_negative("eps", eps, "adagrad")
    return optax.chain(t.scale_by_adagrad(initial_accumulator_value, eps, namespace=namespace),
                       t.scale_by_learning_rate(learning_rate, namespace=namespace))
