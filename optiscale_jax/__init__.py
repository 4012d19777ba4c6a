"""optiscale_jax: a JAX-native framework for scaling and benchmarking first-order optimizers.

The most used names are importable from here (``from optiscale_jax import get_optimizer``);
they are loaded on first use, so importing one subpackage (e.g. ``optiscale_jax.datasets``)
does not load the others.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the subpackage that defines it
_EXPORTS = {
    "get_optimizer": "optiscale_jax.optimizers",
    "resolve_optimizer": "optiscale_jax.optimizers",
    "OPTIMIZER_NAMES": "optiscale_jax.optimizers",
    "make_problem": "optiscale_jax.problems",
    "LargeScaleBenchmark": "optiscale_jax.benchmark",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Loads an exported name's subpackage on first use (PEP 562)."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'optiscale_jax' has no attribute {name!r}")
