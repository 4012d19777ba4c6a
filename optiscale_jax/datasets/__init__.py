"""Data sets with honest spectral metadata: MNIST, California Housing, synthetic regression.

Every loader returns metadata with one definition of condition number: that of
the least-squares Hessian X^T X / n, ``(sigma_max / sigma_min)^2``, infinite
when X^T X is singular (see :func:`spectral_metadata`).
"""

from optiscale_jax.datasets._aligned import ALIGNMENT, aligned_copy, as_aligned, empty_aligned, is_aligned
from optiscale_jax.datasets._california import load_california_housing
from optiscale_jax.datasets._download import DEFAULT_MIRRORS, MNIST_FILES
from optiscale_jax.datasets._idx import DataCorruptError, DataFileError
from optiscale_jax.datasets._locate import DATASET_NAMES, locate_dataset
from optiscale_jax.datasets._metadata import cached_singular_values, spectral_metadata, spectrum_key
from optiscale_jax.datasets._mnist import load_mnist
from optiscale_jax.datasets._paths import (
    DATA_DIR_ENV,
    DOWNLOAD_COMMANDS,
    DataNotFoundError,
    data_roots,
    resolve_cache_dir,
    user_cache_dir,
)
from optiscale_jax.datasets._spectral import (
    metadata_from_singular_values,
    rank_tolerance,
    singular_values,
)
from optiscale_jax.datasets._synthetic import (
    SPECTRUM_TYPES,
    Factorization,
    generate_extreme_condition_data,
    generate_highdim_regression,
    hessian_spectrum,
)

__all__ = [
    "ALIGNMENT",
    "aligned_copy",
    "as_aligned",
    "cached_singular_values",
    "empty_aligned",
    "is_aligned",
    "DEFAULT_MIRRORS",
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "DOWNLOAD_COMMANDS",
    "DataCorruptError",
    "DataFileError",
    "DataNotFoundError",
    "data_roots",
    "locate_dataset",
    "Factorization",
    "MNIST_FILES",
    "SPECTRUM_TYPES",
    "generate_extreme_condition_data",
    "generate_highdim_regression",
    "hessian_spectrum",
    "load_california_housing",
    "load_mnist",
    "metadata_from_singular_values",
    "rank_tolerance",
    "resolve_cache_dir",
    "singular_values",
    "spectral_metadata",
    "spectrum_key",
    "user_cache_dir",
]
