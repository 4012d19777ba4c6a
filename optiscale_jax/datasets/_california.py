"""California Housing (Pace & Barry, 1997; the StatLib file): 20,640 block groups, 8 features.

The features and target are scikit-learn's (``fetch_california_housing``),
derived from the raw census columns:

    MedInc = median_income            HouseAge = housing_median_age
    AveRooms = total_rooms / households          AveBedrms = total_bedrooms / households
    Population = population           AveOccup = population / households
    Latitude = latitude               Longitude = longitude
    target MedHouseVal = median_house_value / 100,000

Source, in order: a local ``cal_housing.data`` / ``cal_housing.csv`` (comma
separated; with a header naming the columns, or headerless in the StatLib
column order) under ``<root>/california_housing`` or ``<root>`` for each data
root; else ``sklearn.datasets.fetch_california_housing`` (which downloads only
when allowed).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from optiscale_jax.datasets._download import download_allowed
from optiscale_jax.datasets._idx import DataCorruptError, DataFileError
from optiscale_jax.datasets._metadata import build_metadata
from optiscale_jax.datasets._paths import DataNotFoundError, absolute, data_roots, not_found_message
from optiscale_jax.datasets._split import train_test_split
from optiscale_jax.datasets._validation import check_dtype, check_test_size

FEATURE_NAMES = ("MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup",
                 "Latitude", "Longitude")
TARGET_NAME = "MedHouseVal"
# Column order of the StatLib file (and of the headerless file in scikit-learn's archive).
RAW_COLUMNS = ("longitude", "latitude", "housing_median_age", "total_rooms", "total_bedrooms",
               "population", "households", "median_income", "median_house_value")
FILE_NAMES = ("cal_housing.data", "cal_housing.csv")


def find_california_file(data_dir=None) -> tuple[pathlib.Path | None, list[pathlib.Path]]:
    """The first local California Housing file, and every path searched."""
    searched = []
    for root in data_roots(data_dir):
        for folder in (root / "california_housing", root):
            for name in FILE_NAMES:
                path = folder / name
                searched.append(path)
                if path.is_file():
                    return path, searched
    return None, searched


def read_raw_columns(path: pathlib.Path) -> dict[str, np.ndarray]:
    """The nine raw columns of a StatLib-style CSV file, by name, in float64.

    Raises:
      DataFileError: unreadable numbers, a wrong column count, NaN/Inf or zero households.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
            second = fh.readline()
    except UnicodeDecodeError as err:
        raise DataCorruptError(
            f"{absolute(path)} is not UTF-8 text ({err.reason} at byte {err.start}); it is not "
            "the StatLib cal_housing.data (comma-separated numbers): restore or re-download it"
        ) from None
    if not first.strip():
        raise DataCorruptError(f"{absolute(path)} is empty; restore the StatLib "
                               "cal_housing.data (20,640 rows of 9 comma-separated numbers)")
    has_header = any(c.isalpha() for c in first.replace("nan", "").replace("NaN", ""))
    if has_header:
        names = [c.strip().strip('"').lower() for c in first.split(",")]
        missing = [c for c in RAW_COLUMNS if c not in names]
        if missing:
            raise DataFileError(f"{path} header lacks column(s) {missing}; expected the "
                                f"StatLib columns {list(RAW_COLUMNS)}")
        order = [names.index(c) for c in RAW_COLUMNS]
        if not second.strip():
            raise DataCorruptError(f"{absolute(path)} has a header but no data rows; restore "
                                   "the StatLib cal_housing.data (20,640 rows)")
    else:
        names, order = list(RAW_COLUMNS), list(range(len(RAW_COLUMNS)))
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1 if has_header else 0, ndmin=2)
    except ValueError as err:
        raise DataFileError(f"{path} is not a numeric comma-separated file ({err}); restore "
                            "the original StatLib cal_housing.data") from None
    if table.shape[1] != len(names):
        raise DataFileError(f"{path} has {table.shape[1]} columns, expected {len(names)} "
                            f"({', '.join(RAW_COLUMNS)})")
    table = table[:, order]
    bad = ~np.isfinite(table)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataFileError(
            f"{path} has {int(bad.sum())} missing or non-finite value(s), first in data row "
            f"{row + 1}, column '{RAW_COLUMNS[col]}' = {table[row, col]}; restore the original "
            "file (the StatLib data has no missing values) or drop those rows")
    columns = {name: table[:, i] for i, name in enumerate(RAW_COLUMNS)}
    if np.any(columns["households"] <= 0):
        row = int(np.argmax(columns["households"] <= 0))
        raise DataFileError(f"{path} data row {row + 1} has households = "
                            f"{columns['households'][row]}; per-household averages need "
                            "households > 0")
    return columns


def features_from_raw(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8 features (``FEATURE_NAMES`` order) and target from the raw columns."""
    households = columns["households"]
    X = np.column_stack([
        columns["median_income"],
        columns["housing_median_age"],
        columns["total_rooms"] / households,
        columns["total_bedrooms"] / households,
        columns["population"],
        columns["population"] / households,
        columns["latitude"],
        columns["longitude"],
    ])
    y = columns["median_house_value"] / 100_000.0
    return X, y


def sklearn_cache_file() -> pathlib.Path:
    """Where scikit-learn's fetcher caches the data set (``$SCIKIT_LEARN_DATA`` or
    ``~/scikit_learn_data``, file ``cal_housing.pkz``), absolute."""
    home = os.environ.get("SCIKIT_LEARN_DATA", "~/scikit_learn_data")
    return absolute(home) / "cal_housing.pkz"


def _from_sklearn(download: bool) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import fetch_california_housing  # noqa: PLC0415 (heavy; only without a local file)

    X, y = fetch_california_housing(return_X_y=True, download_if_missing=download)
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)


def load_california_housing(data_dir: str | os.PathLike | None = None, test_size: float = 0.2,
                            standardize: bool = True, seed: int = 0, dtype: Any = np.float32,
                            *, download: bool | None = None):
    """Load California Housing: 8 features, target in units of $100,000.

    Args:
      data_dir: folder holding ``california_housing/cal_housing.data`` (or the file);
        default ``$OPTISCALE_DATA_DIR``, then the user cache; else scikit-learn's fetcher.
      test_size: fraction in [0, 1) held out (seeded shuffle); 0 keeps all rows for training.
      standardize: centre and scale each feature by the training rows' mean and
        standard deviation (ddof = 0), applied to both sets. The target is not scaled.
      seed: seed of the split.
      dtype: floating dtype of X and y.
      download: let scikit-learn download the data when no local file exists
        (default ``$OPTISCALE_DOWNLOAD``).

    Returns:
      ``X_train, y_train, X_test, y_test, metadata`` (spectral figures of X_train).
    """
    dtype = check_dtype(dtype)
    test_size = check_test_size(test_size)
    path, searched = find_california_file(data_dir)
    if path is not None:
        X, y = features_from_raw(read_raw_columns(path))
        source = f"StatLib California Housing file {path}"
    else:
        allowed = download_allowed(download)
        try:
            X, y = _from_sklearn(allowed)
        except OSError as err:
            raise DataNotFoundError(not_found_message(
                "california_housing", [*searched, sklearn_cache_file()], data_dir,
                [f"scikit-learn: {err}"])) from None
        source = "sklearn.datasets.fetch_california_housing"
    train_idx, test_idx = train_test_split(None, test_size, seed, n_rows=X.shape[0])
    X_train, X_test, y_train, y_test = X[train_idx], X[test_idx], y[train_idx], y[test_idx]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    if standardize:
        if np.any(std == 0):
            raise ValueError(f"feature(s) {[FEATURE_NAMES[i] for i in np.flatnonzero(std == 0)]} "
                             "are constant on the training rows; use standardize=False")
        X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    X_train, X_test = X_train.astype(dtype), X_test.astype(dtype)
    y_train, y_test = y_train.astype(dtype), y_test.astype(dtype)
    metadata = build_metadata(X_train, n_test=X_test.shape[0], task="regression", dtype=dtype,
                              source=source)
    metadata.update({
        "name": "california_housing",
        "feature_names": list(FEATURE_NAMES),
        "target_name": TARGET_NAME,
        "standardized": bool(standardize),
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "target_mean": float(y_train.mean()),
        "n_rows_total": int(X.shape[0]),
    })
    return X_train, y_train, X_test, y_test, metadata
