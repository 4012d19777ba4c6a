"""optiscale_jax: a JAX-native framework for scaling and benchmarking first-order optimizers."""

__version__ = "0.1.0"
