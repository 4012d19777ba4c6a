"""``locate_dataset``: find a real data set by the one data-location rule, before any work.

It answers "where would this data set be read from?" without reading it (a script can ask
before it starts its own work). The ``optiscale-*`` commands go further: they load every data
set they need before any run or file change, and the loaders raise the same
:class:`DataNotFoundError`, which says what to do.
"""

from __future__ import annotations

import os
import pathlib

from optiscale_jax.datasets._california import find_california_file, sklearn_cache_file
from optiscale_jax.datasets._mnist import find_mnist_files, incomplete_splits
from optiscale_jax.datasets._paths import DataNotFoundError, not_found_message

DATASET_NAMES = ("mnist", "california_housing")


def locate_dataset(name: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The absolute path a loader will read ``name`` from (a folder of IDX files for MNIST,
    the CSV file or scikit-learn's cached archive for California Housing).

    Looks in ``data_dir`` (else ``$OPTISCALE_DATA_DIR``), then the user cache; California
    Housing also in scikit-learn's data home.

    Raises:
      ValueError: unknown ``name``.
      DataNotFoundError: naming the data set, every place looked in, the flag / variable
        and the download command.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    notes: list[str] = []
    if name == "mnist":
        splits, searched = find_mnist_files(data_dir)
        if splits:
            return next(iter(splits.values()))[0].parent
        notes = incomplete_splits(searched)
    else:
        path, searched = find_california_file(data_dir)
        if path is not None:
            return path
        cached = sklearn_cache_file()
        if cached.is_file():
            return cached
        searched = [*searched, cached]
    raise DataNotFoundError(not_found_message(name, searched, data_dir, notes))
