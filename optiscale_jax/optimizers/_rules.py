"""The update rules, written once against an array namespace `xp`.

Each function acts on one leaf (an array) and is pure. `xp` is `jax.numpy` for
the JAX transforms and `numpy` / `cupy` for the reference backends, so the three
backends run the same arithmetic in the same order. Results are cast back to the
gradient's dtype so that a float64 hyperparameter never promotes float32 state.

Notation: g gradient, t = count + 1 the step number (1-based), p parameters.
"""

from __future__ import annotations

from typing import Any

Array = Any


def momentum_direction(g: Array, trace: Array, decay: Any, nesterov: bool) -> tuple[Array, Array]:
    """Heavy-ball trace m <- g + decay * m; direction m (or g + decay * m for Nesterov).

    Returns (direction, new_trace). Matches `optax.trace`.
    """
    new_trace = (g + decay * trace).astype(g.dtype)
    direction = (g + decay * new_trace).astype(g.dtype) if nesterov else new_trace
    return direction, new_trace


def bias_correction(moment: Array, decay: Any, step: Array, xp: Any) -> Array:
    """moment / (1 - decay^t): removes the bias of a zero-initialised moving average."""
    correction = 1 - decay ** step
    return moment / xp.asarray(correction).astype(moment.dtype)


def adam_direction(
    g: Array, mu: Array, nu: Array, step: Array, b1: Any, b2: Any, eps: Any, eps_root: Any,
    nesterov: bool, xp: Any,
) -> tuple[Array, Array, Array]:
    """Adam (Kingma & Ba 2015) direction; NAdam (Dozat 2016) when `nesterov`.

    mu <- b1 mu + (1 - b1) g;  nu <- b2 nu + (1 - b2) g^2;
    direction = mu_hat / (sqrt(nu_hat + eps_root) + eps) with mu_hat = mu / (1 - b1^t),
    nu_hat = nu / (1 - b2^t). NAdam uses mu_hat = b1 mu/(1 - b1^(t+1)) + (1 - b1) g/(1 - b1^t).
    Returns (direction, mu, nu).
    """
    new_mu = ((1 - b1) * g + b1 * mu).astype(g.dtype)
    new_nu = ((1 - b2) * (g * g) + b2 * nu).astype(g.dtype)
    if nesterov:
        mu_hat = (b1 * bias_correction(new_mu, b1, step + 1, xp)
                  + (1 - b1) * bias_correction(g, b1, step, xp))
    else:
        mu_hat = bias_correction(new_mu, b1, step, xp)
    nu_hat = bias_correction(new_nu, b2, step, xp)
    direction = (mu_hat / (xp.sqrt(nu_hat + eps_root) + eps)).astype(g.dtype)
    return direction, new_mu, new_nu


def rms_direction(g: Array, nu: Array, decay: Any, eps: Any, xp: Any) -> tuple[Array, Array]:
    """RMSProp (Hinton 2012): nu <- decay nu + (1 - decay) g^2; direction g / sqrt(nu + eps)."""
    new_nu = ((1 - decay) * (g * g) + decay * nu).astype(g.dtype)
    direction = (g / xp.sqrt(new_nu + eps)).astype(g.dtype)
    return direction, new_nu


def adagrad_direction(g: Array, sum_of_squares: Array, eps: Any, xp: Any) -> tuple[Array, Array]:
    """Adagrad (Duchi et al. 2011): s <- s + g^2; direction g / sqrt(s + eps) (0 where s = 0)."""
    new_sum = (g * g + sum_of_squares).astype(g.dtype)
    safe = xp.where(new_sum > 0, new_sum, xp.ones_like(new_sum))
    scale = xp.where(new_sum > 0, 1 / xp.sqrt(safe + eps), xp.zeros_like(new_sum))
    return (scale * g).astype(g.dtype), new_sum


def decayed_weights(direction: Array, p: Array, weight_decay: Any) -> Array:
    """Decoupled weight decay (Loshchilov & Hutter 2019): direction + weight_decay * p."""
    return (direction + weight_decay * p).astype(direction.dtype)


def scaled_by_learning_rate(direction: Array, learning_rate: Any, xp: Any) -> Array:
    """The update -learning_rate * direction (descent), in the direction's dtype."""
    return xp.asarray(-learning_rate).astype(direction.dtype) * direction
