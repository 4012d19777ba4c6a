"""Streaming problems with an exact population objective, at any dimension.

Samples ``x = V Lambda^1/2 z`` with ``z ~ N(0, I_d)``, so ``Cov(x) = Sigma = V Lambda V^T``.
``V = diag(s2) C^T diag(s1)`` with random signs ``s1, s2`` and ``C`` the orthonormal DCT-II:
orthogonal, applied in O(d log d) by ``jax.scipy.fft.idct/dct(norm="ortho")``, never stored.
Targets: least squares ``y = x.w* + sigma eps`` with population risk
``F(w) = 1/2 (w - w*)^T Sigma (w - w*) + sigma^2 / 2``; logistic ``y ~ Bernoulli(sigmoid(x.w*))``
with ``F(w) = E[softplus(x.w) - y x.w]``, minimised at ``w*`` (well specified), where
``F(w*) = E[softplus(s) - sigmoid(s) s]``, ``s ~ N(0, w*^T Sigma w*)`` (1-D Gauss-Hermite), and
``F(w)`` in general is a 2-D Gaussian integral over ``(x.w, x.w*)`` (tensor Gauss-Hermite).

No x is ever formed: with ``u = Lambda^1/2 V^T w`` (one transform), ``x_i.w = z_i.u``, and
a batch gradient ``mean_i x_i r_i = V Lambda^1/2 (mean_i z_i r_i)`` (one inverse transform).
Step t draws its ``z`` from ``fold_in(key, t)`` inside the compiled program: memory O(B d).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.fft import dct, idct

from optiscale_jax.training.steps_to_target import noise_estimates

__all__ = [
    "SPECTRA",
    "StreamingProblem",
    "check_spectrum",
    "gauss_hermite_expectation",
    "logistic_f_star",
    "make_streaming",
    "spectrum",
]

SPECTRA = ("exponential", "power")
_QUADRATURE_NODES = 80


def check_spectrum(kind: str, dim: int, kappa: float) -> None:
    """Raises ValueError naming the bad value and the fix (before any work)."""
    if kind not in SPECTRA:
        raise ValueError(f"unknown spectrum {kind!r}; choose one of: {', '.join(SPECTRA)}")
    if isinstance(dim, bool) or int(dim) != dim or dim < 2:
        raise ValueError(f"streaming dim must be an integer >= 2, got {dim!r}")
    if not (isinstance(kappa, (int, float)) and np.isfinite(kappa) and 1.0 <= kappa <= 1e12):
        raise ValueError(
            f"condition number kappa must be a finite number in [1, 1e12] "
            f"(lambda_max / lambda_min), got {kappa!r}"
        )


def spectrum(kind: str, dim: int, kappa: float) -> np.ndarray:
    """Eigenvalues of Sigma, decreasing from 1 to exactly ``1/kappa`` (float64).

    exponential: ``lambda_i = kappa^(-i/(d-1))``; power: ``lambda_i = (i+1)^-a`` with ``a = ln kappa / ln d``.
    """
    check_spectrum(kind, dim, kappa)
    i = np.arange(int(dim), dtype=np.float64)
    if kind == "exponential":
        values = float(kappa) ** (-i / (dim - 1))
    else:
        values = (i + 1.0) ** (-np.log(kappa) / np.log(dim))
    values[-1] = 1.0 / float(kappa)
    return values


def gauss_hermite_expectation(f, scale: float, nodes: int = _QUADRATURE_NODES) -> float:
    """``E f(s)`` for ``s ~ N(0, scale^2)`` by Gauss-Hermite quadrature (float64 NumPy)."""
    x, w = np.polynomial.hermite.hermgauss(nodes)
    return float(np.sum(w * f(np.sqrt(2.0) * scale * x)) / np.sqrt(np.pi))


def logistic_f_star(signal_variance: float, nodes: int = _QUADRATURE_NODES) -> float:
    """``F(w*) = E[softplus(s) - sigmoid(s) s]`` with ``s ~ N(0, signal_variance)``."""

    def integrand(s):
        return np.logaddexp(0.0, s) - s / (1.0 + np.exp(-s))

    return gauss_hermite_expectation(integrand, float(np.sqrt(signal_variance)), nodes)


class Batch(NamedTuple):
    """One streaming batch: ``z`` (B, d) and the label noise ``e`` (B,) (Gaussian or uniform)."""

    z: jax.Array
    e: jax.Array


@dataclasses.dataclass(frozen=True)
class StreamingProblem:
    """A streaming least-squares or logistic problem; see the module docstring for the math."""

    kind: str  # "least_squares" or "logistic"
    eigenvalues: np.ndarray  # lambda, (d,), float64
    signs: np.ndarray  # (2, d) of +-1
    w_star: np.ndarray  # (d,), float64
    noise_std: float = 0.0  # sigma (least squares)

    @property
    def dim(self) -> int:
        return int(self.eigenvalues.size)

    # --- the transform V and its transpose (O(d log d)) ---
    def apply_v(self, u: jax.Array) -> jax.Array:
        """``V u`` for u of shape (..., d)."""
        s1, s2 = (jnp.asarray(s, u.dtype) for s in self.signs)
        return s2 * idct(s1 * u, norm="ortho", axis=-1)

    def apply_vt(self, v: jax.Array) -> jax.Array:
        """``V^T v`` for v of shape (..., d)."""
        s1, s2 = (jnp.asarray(s, v.dtype) for s in self.signs)
        return s1 * dct(s2 * v, norm="ortho", axis=-1)

    def whiten(self, w: jax.Array) -> jax.Array:
        """``Lambda^1/2 V^T w``: ``x.w = z.whiten(w)``."""
        return jnp.sqrt(jnp.asarray(self.eigenvalues, w.dtype)) * self.apply_vt(w)

    # --- sampling and the mini-batch gradient ---
    def sample(self, key: jax.Array, batch_size: int, dtype=jnp.float32) -> Batch:
        """``z ~ N(0, I)`` (B, d) and the label noise: N(0, 1) (least squares) or U(0, 1) (logistic).

        One ``jax.random.normal`` call of shape (B, d + 1) (each call site of the generator costs
        about a second of compile time); the uniform is ``Phi(n)`` of the extra normal column.
        """
        noise = jax.random.normal(key, (batch_size, self.dim + 1), dtype)
        e = noise[:, -1] if self.kind == "least_squares" else jax.scipy.special.ndtr(noise[:, -1])
        return Batch(noise[:, :-1], e)

    def _residuals(self, w: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
        """``(r_i, x_i.w)``: the per-example derivative of the loss in ``x_i.w``."""
        a = batch.z @ self.whiten(w)
        b = batch.z @ self.whiten(jnp.asarray(self.w_star, w.dtype))
        if self.kind == "least_squares":
            return a - b - self.noise_std * batch.e, a
        y = (batch.e < jax.nn.sigmoid(b)).astype(w.dtype)
        return jax.nn.sigmoid(a) - y, a

    def batch_gradient(self, w: jax.Array, batch: Batch) -> jax.Array:
        """``mean_i x_i r_i = V Lambda^1/2 (z^T r / B)``: one transform each way."""
        r, _ = self._residuals(w, batch)
        root = jnp.sqrt(jnp.asarray(self.eigenvalues, w.dtype))
        return self.apply_v(root * (r @ batch.z) / batch.z.shape[0])

    def noise_statistics(self, w: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
        """Unbiased ``(tr Sigma_g, |G|^2)`` from the per-example gradients ``g_i = V Lambda^1/2 z_i r_i``.

        ``|g_i|^2 = r_i^2 |Lambda^1/2 z_i|^2`` (V orthogonal), so no per-example gradient is formed.
        """
        r, _ = self._residuals(w, batch)
        lam = jnp.asarray(self.eigenvalues, w.dtype)
        per_example = jnp.mean(r * r * ((batch.z * batch.z) @ lam))
        mean_grad = jnp.sqrt(lam) * (r @ batch.z) / batch.z.shape[0]
        return noise_estimates(per_example, jnp.sum(mean_grad * mean_grad), batch.z.shape[0])

    # --- the exact population objective ---
    def f_star(self) -> float:
        """The population minimum ``F(w*)`` (float64)."""
        if self.kind == "least_squares":
            return 0.5 * self.noise_std**2
        return logistic_f_star(float(np.sum(self.eigenvalues * self._whitened_star() ** 2)))

    def _whitened_star(self) -> np.ndarray:
        with jax.enable_x64(True):
            return np.asarray(self.apply_vt(jnp.asarray(self.w_star, jnp.float64)))

    def population_loss(self, w: jax.Array) -> jax.Array:
        """``F(w)``, exact for least squares, Gauss-Hermite (80 x 80 nodes) for logistic."""
        u = self.whiten(w)
        u_star = self.whiten(jnp.asarray(self.w_star, w.dtype))
        if self.kind == "least_squares":
            diff = u - u_star
            return 0.5 * jnp.sum(diff * diff) + 0.5 * self.noise_std**2
        return _logistic_population(jnp.sum(u * u), jnp.sum(u * u_star), jnp.sum(u_star * u_star))

    def population_gradient(self, w: jax.Array) -> jax.Array:
        """``grad F(w)`` (least squares: ``Sigma (w - w*)``; logistic by autodiff of the quadrature)."""
        return jax.grad(self.population_loss)(w)


def _logistic_population(var_a: jax.Array, cov: jax.Array, var_b: jax.Array) -> jax.Array:
    """``E[softplus(a) - sigmoid(b) a]`` for zero-mean Gaussian (a, b), by tensor Gauss-Hermite.

    ``b = sb x1``, ``a = (cov/sb) x1 + sqrt(var_a - cov^2/var_b) x2`` with independent standard x1, x2.
    """
    x, wts = np.polynomial.hermite.hermgauss(_QUADRATURE_NODES)
    x = jnp.asarray(np.sqrt(2.0) * x, var_a.dtype)
    wts = jnp.asarray(wts / np.sqrt(np.pi), var_a.dtype)
    sb = jnp.sqrt(jnp.maximum(var_b, 1e-30))
    rest = jnp.sqrt(jnp.maximum(var_a - cov * cov / jnp.maximum(var_b, 1e-30), 0.0))
    b = sb * x[:, None]
    a = (cov / sb) * x[:, None] + rest * x[None, :]
    values = jax.nn.softplus(a) - jax.nn.sigmoid(b) * a
    return jnp.sum(wts[:, None] * wts[None, :] * values)


def make_streaming(
    kind: str,
    dim: int,
    *,
    spectrum_kind: str = "power",
    kappa: float = 100.0,
    noise_std: float = 0.5,
    signal: float = 2.0,
    seed: int = 0,
) -> StreamingProblem:
    """A streaming problem with ``w* = V Lambda^-1/2 u`` scaled so that ``w*^T Sigma w* = signal^2``.

    ``u`` is a fixed random direction, so the signal is spread over the whole spectrum.
    """
    if kind not in ("least_squares", "logistic"):
        raise ValueError(f"streaming kind must be 'least_squares' or 'logistic', got {kind!r}")
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std!r}")
    if not (np.isfinite(signal) and signal > 0):
        raise ValueError(f"signal (the standard deviation of x.w*) must be finite and > 0, got {signal!r}")
    lam = spectrum(spectrum_kind, dim, kappa)
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(2, int(dim)))
    u = rng.standard_normal(int(dim))
    u *= signal / np.linalg.norm(u)
    problem = StreamingProblem(kind, lam, signs, np.zeros(int(dim)), float(noise_std))
    with jax.enable_x64(True):
        w_star = np.asarray(problem.apply_v(jnp.asarray(u / np.sqrt(lam))))
    return dataclasses.replace(problem, w_star=w_star)
