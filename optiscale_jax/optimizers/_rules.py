"""The update rules, written once against an array namespace `xp`.

Each function acts on one leaf (an array) and is pure. `xp` is `jax.numpy` for
the JAX transforms and `numpy` / `cupy` for the reference backends, so the three
backends run the same arithmetic in the same order as optax 0.2.8.

Dtypes follow optax: a direction has the promoted dtype of the gradient and the
state it reads (a Python-float hyperparameter never promotes); a new state leaf
is cast back to the dtype of the old one, so the state's structure and dtypes
never change from step to step (no recompilation, stable under `lax.cond`).

Complex parameters: second moments accumulate |g|^2 = Re(conj(g) g), as optax's
`numerics.abs_sq`; the first moment and the direction stay complex.

Notation: g gradient, t = count + 1 the step number (1-based), p parameters.
"""

from __future__ import annotations

from typing import Any

Array = Any
INT32_MAX = 2**31 - 1


def abs_sq(x: Array, xp: Any) -> Array:
    """|x|^2 elementwise, real: x * x for real x, Re(conj(x) x) for complex x."""
    if xp.iscomplexobj(x):
        return (xp.conj(x) * x).real
    return x * x


def safe_increment(count: Array, xp: Any) -> Array:
    """count + 1 for an int32 step counter, staying at 2^31 - 1 instead of wrapping.

    Adds 0 at the maximum rather than clamping count + 1, so no value ever overflows
    (NumPy would warn, JAX would wrap to -2^31). Same values as `optax.safe_increment`.
    """
    below = xp.asarray(count < INT32_MAX).astype(count.dtype)
    return (count + below).astype(count.dtype)


def _promoted(xp: Any, *arrays: Array) -> Any:
    """The dtype optax's arithmetic gives these arrays (hyperparameters being weak)."""
    return xp.result_type(*(a.dtype for a in arrays))


def momentum_direction(g: Array, trace: Array, decay: Any, nesterov: bool,
                       xp: Any) -> tuple[Array, Array]:
    """Heavy-ball trace m <- g + decay * m; direction m (Nesterov: g + decay * m_new).

    Returns (direction, new_trace), the trace in its own (accumulator) dtype.
    Matches `optax.trace`.
    """
    dtype = _promoted(xp, g, trace)
    new_trace = (g + decay * trace).astype(dtype)
    direction = (g + decay * new_trace).astype(dtype) if nesterov else new_trace
    return direction, new_trace.astype(trace.dtype)


def bias_correction(moment: Array, decay: Any, step: Array, xp: Any) -> Array:
    """moment / (1 - decay^t): removes the bias of a zero-initialised moving average.

    1 - decay^t is formed in the precision the powers give and only then cast to the
    moment's dtype (in bfloat16, decay^t would round to 1 and divide by zero).
    """
    correction = 1 - decay ** step
    return moment / xp.asarray(correction).astype(moment.dtype)


def adam_direction(
    g: Array, mu: Array, nu: Array, count: Array, b1: Any, b2: Any, eps: Any, eps_root: Any,
    nesterov: bool, xp: Any,
) -> tuple[Array, Array, Array]:
    """Adam (Kingma & Ba 2015) direction; NAdam (Dozat 2016) when `nesterov`.

    mu <- b1 mu + (1 - b1) g;  nu <- b2 nu + (1 - b2) |g|^2;
    direction = mu_hat / (sqrt(nu_hat + eps_root) + eps) with mu_hat = mu / (1 - b1^t),
    nu_hat = nu / (1 - b2^t), t = `count` (already incremented). NAdam uses
    mu_hat = b1 mu / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t).
    Returns (direction, mu, nu), mu and nu in the dtypes of the old state.
    """
    new_mu = ((1 - b1) * g + b1 * mu).astype(_promoted(xp, g, mu))
    new_nu = ((1 - b2) * abs_sq(g, xp) + b2 * nu).astype(_promoted(xp, g, nu))
    if nesterov:
        mu_hat = (b1 * bias_correction(new_mu, b1, safe_increment(count, xp), xp)
                  + (1 - b1) * bias_correction(g, b1, count, xp))
    else:
        mu_hat = bias_correction(new_mu, b1, count, xp)
    nu_hat = bias_correction(new_nu, b2, count, xp)
    direction = (mu_hat / (xp.sqrt(nu_hat + eps_root) + eps)).astype(_promoted(xp, g, mu, nu))
    return direction, new_mu.astype(mu.dtype), new_nu.astype(nu.dtype)


def _rms_scale(second_moment: Array, eps: Any, eps_in_sqrt: bool, xp: Any) -> Array:
    """1 / sqrt(v + eps) (`eps_in_sqrt`, optax's default) or 1 / (sqrt(v) + eps) (PyTorch's)."""
    if eps_in_sqrt:
        return 1 / xp.sqrt(second_moment + eps)
    return 1 / (xp.sqrt(second_moment) + eps)


def rms_direction(g: Array, nu: Array, count: Array | None, decay: Any, eps: Any,
                  eps_in_sqrt: bool, xp: Any) -> tuple[Array, Array]:
    """RMSProp (Hinton 2012): nu <- decay nu + (1 - decay) |g|^2; direction g / sqrt(nu_hat + eps).

    nu_hat = nu / (1 - decay^t) when a step `count` is given (bias correction), else nu.
    Returns (direction, nu). Matches `optax.scale_by_rms`.
    """
    new_nu = ((1 - decay) * abs_sq(g, xp) + decay * nu).astype(_promoted(xp, g, nu))
    nu_hat = new_nu if count is None else bias_correction(new_nu, decay, count, xp)
    direction = (_rms_scale(nu_hat, eps, eps_in_sqrt, xp) * g).astype(_promoted(xp, g, nu))
    return direction, new_nu.astype(nu.dtype)


def centered_rms_direction(g: Array, mu: Array, nu: Array, count: Array | None, decay: Any,
                           eps: Any, eps_in_sqrt: bool, xp: Any) -> tuple[Array, Array, Array]:
    """Centered RMSProp (Graves 2013): g / sqrt(nu_hat - |mu_hat|^2 + eps).

    mu <- decay mu + (1 - decay) g, nu <- decay nu + (1 - decay) |g|^2; the hats are
    bias-corrected when a step `count` is given. Matches `optax.scale_by_stddev`.
    Returns (direction, mu, nu).
    """
    new_mu = ((1 - decay) * g + decay * mu).astype(_promoted(xp, g, mu))
    new_nu = ((1 - decay) * abs_sq(g, xp) + decay * nu).astype(_promoted(xp, g, nu))
    if count is None:
        mu_hat, nu_hat = new_mu, new_nu
    else:
        mu_hat = bias_correction(new_mu, decay, count, xp)
        nu_hat = bias_correction(new_nu, decay, count, xp)
    scale = _rms_scale(nu_hat - abs_sq(mu_hat, xp), eps, eps_in_sqrt, xp)
    direction = (scale * g).astype(_promoted(xp, g, mu, nu))
    return direction, new_mu.astype(mu.dtype), new_nu.astype(nu.dtype)


def adagrad_direction(g: Array, sum_of_squares: Array, eps: Any, xp: Any) -> tuple[Array, Array]:
    """Adagrad (Duchi et al. 2011): s <- s + |g|^2; direction g / sqrt(s + eps) (0 where s = 0)."""
    new_sum = (abs_sq(g, xp) + sum_of_squares).astype(_promoted(xp, g, sum_of_squares))
    positive = new_sum.real > 0
    safe = xp.where(positive, new_sum, xp.ones_like(new_sum))
    scale = xp.where(positive, 1 / xp.sqrt(safe + eps), xp.zeros_like(new_sum))
    direction = (scale * g).astype(_promoted(xp, g, sum_of_squares))
    return direction, new_sum.astype(sum_of_squares.dtype)


def decayed_weights(direction: Array, p: Array, weight_decay: Any, xp: Any) -> Array:
    """Decoupled weight decay (Loshchilov & Hutter 2019): direction + weight_decay * p."""
    return (direction + weight_decay * p).astype(_promoted(xp, direction, p))


def scaled_by_learning_rate(direction: Array, learning_rate: Any, xp: Any) -> Array:
    """The update -learning_rate * direction (descent), in the direction's dtype."""
    return xp.asarray(-learning_rate).astype(direction.dtype) * direction
