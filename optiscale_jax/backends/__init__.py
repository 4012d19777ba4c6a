"""The same optimizers and problem math on JAX, NumPy and CuPy: `get_backend(name)`."""

from optiscale_jax.backends._backend import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailableError,
    backend_available,
    cpu_model,
    get_backend,
)

__all__ = ["BACKEND_NAMES", "Backend", "BackendUnavailableError", "backend_available",
           "cpu_model", "get_backend"]
