"""Data sets with honest spectral metadata: MNIST, California Housing, synthetic regression."""

from optiscale_jax.datasets._spectral import (
    metadata_from_singular_values,
    rank_tolerance,
    singular_values,
    spectral_metadata,
)

__all__ = [
    "metadata_from_singular_values",
    "rank_tolerance",
    "singular_values",
    "spectral_metadata",
]
