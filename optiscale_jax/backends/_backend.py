"""Array backends: JAX (jit, any device) and the NumPy / CuPy reference implementations.

A `Backend` bundles an array namespace `xp` with the few operations that
differ between libraries (moving data, blocking on device work, naming the
device). Its optimizers are the very chains of `optiscale_jax.optimizers`,
built with `namespace=xp`: one implementation of the math for all backends.
"""

from __future__ import annotations

import dataclasses
import importlib
import platform
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optiscale_jax.optimizers import get_optimizer

BACKEND_NAMES: tuple[str, ...] = ("jax", "numpy", "cupy")


class BackendUnavailableError(RuntimeError):
    """A backend was asked for but its library or hardware is missing."""


@dataclasses.dataclass(frozen=True)
class Backend:
    """An array library and the handful of operations the framework needs from it.

    Attributes:
      name: "jax", "numpy" or "cupy".
      xp: the array namespace (`jax.numpy`, `numpy`, `cupy`).
    """

    name: str
    xp: Any
    _to_numpy: Callable[[Any], np.ndarray]
    _synchronize: Callable[[Any], Any]
    _describe: Callable[[], str]

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """`x` as an array of this backend (copied to its device), optionally cast."""
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        """A host NumPy copy of an array of this backend."""
        return self._to_numpy(x)

    def synchronize(self, x: Any = None) -> Any:
        """Blocks until all device work producing `x` (or all queued work) is done; returns x."""
        return self._synchronize(x)

    def optimizer(self, name: str, **hyperparams: Any) -> optax.GradientTransformation:
        """The optimizer `name` on this backend: `init(params)`, `update(grads, state, params)`."""
        namespace = None if self.name == "jax" else self.xp
        return get_optimizer(name, namespace=namespace, **hyperparams)

    def apply_updates(self, params: Any, updates: Any) -> Any:
        """params + updates, leaf by leaf, keeping each parameter's dtype."""
        return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)

    def device_description(self) -> str:
        """Human-readable name of the device this backend computes on."""
        return self._describe()


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else `platform.processor()`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _jax_backend() -> Backend:
    def describe() -> str:
        device = jax.devices()[0]
        return f"jax:{device.platform}:{getattr(device, 'device_kind', device)}"

    return Backend("jax", jnp, lambda x: np.asarray(x),
                   lambda x: jax.block_until_ready(x) if x is not None else
                   jax.effects_barrier() or None, describe)


def _numpy_backend() -> Backend:
    return Backend("numpy", np, lambda x: np.asarray(x), lambda x: x,
                   lambda: f"numpy:cpu:{cpu_model()}")


_CUDA_HINT = ("install the GPU extras with `pip install -r requirements-cuda.txt` "
              "on a machine with an NVIDIA GPU and driver")


def _import_cupy() -> Any:
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as error:
        raise BackendUnavailableError(
            f"backend 'cupy' is not available: CuPy is not installed ({error}); "
            f"{_CUDA_HINT}") from error
    try:
        available = bool(cupy.is_available())
        reason = "no CUDA device is visible"
    except Exception as error:  # any CUDA runtime failure means unavailable
        available, reason = False, f"the CUDA runtime failed: {error}"
    if not available:
        raise BackendUnavailableError(
            f"backend 'cupy' is not available: CuPy is installed but {reason}; {_CUDA_HINT}")
    return cupy


def _cupy_backend() -> Backend:
    cupy = _import_cupy()

    def synchronize(x: Any) -> Any:
        cupy.cuda.get_current_stream().synchronize()
        return x

    def describe() -> str:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        return f"cupy:gpu:{name.decode() if isinstance(name, bytes) else name}"

    return Backend("cupy", cupy, cupy.asnumpy, synchronize, describe)


_BUILDERS: dict[str, Callable[[], Backend]] = {
    "jax": _jax_backend, "numpy": _numpy_backend, "cupy": _cupy_backend}


def _canonical(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in _BUILDERS:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKEND_NAMES)}")
    return name.lower()


def get_backend(name: str) -> Backend:
    """The backend called `name` ("jax", "numpy" or "cupy").

    CuPy is imported only here, only when asked for. Raises ValueError for an
    unknown name and BackendUnavailableError (naming requirements-cuda.txt) when
    CuPy or a GPU is missing.
    """
    return _BUILDERS[_canonical(name)]()


def backend_available(name: str) -> tuple[bool, str]:
    """(True, "") if `get_backend(name)` would work, else (False, the reason)."""
    try:
        get_backend(name)
    except BackendUnavailableError as error:
        return False, str(error)
    return True, ""
