"""MNIST (LeCun, Cortes & Burges, 1998): 28x28 digit images as 784 features in [0, 1].

Where the images come from, in order:
1. the standard IDX files (``train-*`` / ``t10k-*``, gzipped or not) in the first
   folder that holds any of them among ``<root>/mnist`` and ``<root>`` for each root of
   :func:`optiscale_jax.datasets._paths.data_roots` (``data_dir`` or
   ``$OPTISCALE_DATA_DIR``, then the download cache);
2. tensorflow-datasets, if it is installed (``tfds.load("mnist")``, downloading
   only when allowed);
3. a download of the IDX files from a mirror into the cache, when allowed
   (see ``_download``);
4. otherwise ``FileNotFoundError`` listing the folders searched and how to get the files.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from typing import Any

import numpy as np

from optiscale_jax.datasets import _download
from optiscale_jax.datasets._idx import IMAGES_MAGIC, LABELS_MAGIC, DataFileError, parse_idx, read_bytes
from optiscale_jax.datasets._metadata import build_metadata
from optiscale_jax.datasets._paths import DataNotFoundError, data_roots, download_dir, not_found_message
from optiscale_jax.datasets._split import stratified_subsample, train_test_split
from optiscale_jax.datasets._validation import check_dtype, check_positive_int, check_test_size

N_PIXELS = 784
SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def _split_paths(folder: pathlib.Path, split: str) -> tuple[pathlib.Path, pathlib.Path] | None:
    """(images, labels) paths of ``split`` in ``folder``, or None if either is missing."""
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        stem = f"{SPLIT_PREFIX[split]}-{kind}"
        candidates = [folder / stem, folder / f"{stem}.gz"]
        existing = [p for p in candidates if p.is_file()]
        if not existing:
            return None
        found.append(existing[0])
    return found[0], found[1]


def _search_folders(data_dir) -> list[pathlib.Path]:
    folders = []
    for root in data_roots(data_dir):
        folders += [root / "mnist", root]
    return folders


def find_mnist_files(data_dir=None) -> tuple[dict[str, tuple[pathlib.Path, pathlib.Path]],
                                             list[pathlib.Path]]:
    """Locate IDX files: ``({split: (images, labels)}, folders searched)``.

    The first folder holding at least one complete split wins; every complete
    split in that folder is used.
    """
    searched = _search_folders(data_dir)
    for folder in searched:
        splits = {s: p for s in ("train", "test") if (p := _split_paths(folder, s)) is not None}
        if splits:
            return splits, searched
    return {}, searched


def incomplete_splits(folders: list[pathlib.Path]) -> list[str]:
    """Notes on folders that hold one file of a split without its partner."""
    notes = []
    for folder in folders:
        for prefix in SPLIT_PREFIX.values():
            kinds = ("images-idx3-ubyte", "labels-idx1-ubyte")
            present = [k for k in kinds
                       if (folder / f"{prefix}-{k}").is_file()
                       or (folder / f"{prefix}-{k}.gz").is_file()]
            if len(present) == 1:
                missing = next(k for k in kinds if k not in present)
                notes.append(f"{folder} has {prefix}-{present[0]} but not {prefix}-{missing}")
    return notes


def _read_split(images_path: pathlib.Path, labels_path: pathlib.Path):
    images = parse_idx(read_bytes(images_path), IMAGES_MAGIC, str(images_path))
    labels = parse_idx(read_bytes(labels_path), LABELS_MAGIC, str(labels_path))
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataFileError(
            f"{images_path} holds images of shape {images.shape[1:]}, expected (28, 28)")
    if labels.shape[0] != images.shape[0]:
        raise DataFileError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels; the pair must come from the same split")
    if labels.size and labels.max() > 9:
        raise DataFileError(f"{labels_path} holds label {int(labels.max())}; MNIST "
                                      "labels are digits 0-9: the file is corrupt")
    return images.reshape(-1, N_PIXELS), labels


def _load_with_tfds(download: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits through tensorflow-datasets; raises ImportError when it is not installed."""
    import tensorflow_datasets as tfds  # noqa: PLC0415 (optional dependency: pip install optiscale_jax[tfds])

    kwargs: dict[str, Any] = {"split": ["train", "test"], "batch_size": -1,
                              "as_supervised": True, "download": download}
    if os.environ.get("TFDS_DATA_DIR"):
        kwargs["data_dir"] = os.environ["TFDS_DATA_DIR"]
    train, test = tfds.as_numpy(tfds.load("mnist", **kwargs))
    out = {}
    for split, (images, labels) in (("train", train), ("test", test)):
        out[split] = (np.asarray(images, dtype=np.uint8).reshape(-1, N_PIXELS),
                      np.asarray(labels, dtype=np.uint8))
    return out


def _download_splits(mirror: str | None) -> tuple[dict[str, tuple[pathlib.Path, pathlib.Path]],
                                                  list[str]]:
    """Download every split the mirror serves into the cache; (splits, failure notes)."""
    dest = download_dir() / "mnist"
    urls = _download.mirrors(mirror)
    splits, failures = {}, []
    for split in ("train", "test"):
        try:
            paths = [_download.fetch_file(spec, dest, urls)
                     for spec in _download.MNIST_FILES if spec.split == split]
        except ConnectionError as err:
            failures.append(f"{split} split: {err}")
            continue
        splits[split] = (paths[0], paths[1])
    return splits, failures


def _acquire(data_dir, download: bool | None, mirror: str | None):
    """Raw uint8 images and labels per split, and a description of the source."""
    splits, searched = find_mnist_files(data_dir)
    if splits:
        arrays = {s: _read_split(*paths) for s, paths in splits.items()}
        files = [str(p) for paths in splits.values() for p in paths]
        return arrays, "idx", files
    allowed = _download.download_allowed(download)
    notes = incomplete_splits(searched)
    try:
        return _load_with_tfds(allowed), "tensorflow-datasets", []
    except ImportError:
        notes.append("tensorflow-datasets is not installed")
    except Exception as err:  # tfds raises its own error types when data is absent
        notes.append(f"tensorflow-datasets failed: {type(err).__name__}: {err}")
    if not allowed:
        notes.append(f"download not allowed: pass download=True or set {_download.DOWNLOAD_ENV}=1")
        raise DataNotFoundError(not_found_message("mnist", searched, data_dir, notes))
    splits, failures = _download_splits(mirror)
    if not splits:
        raise DataNotFoundError(not_found_message("mnist", searched, data_dir, notes + failures))
    for failure in failures:
        warnings.warn(f"MNIST download: {failure}; using the splits that downloaded",
                      RuntimeWarning, stacklevel=3)
    arrays = {s: _read_split(*paths) for s, paths in splits.items()}
    files = [str(p) for paths in splits.values() for p in paths]
    return arrays, "download", files


# Over 60 lines: most of it is the docstring (every argument) and the metadata record.
def load_mnist(n_samples: int | None = None, binary_classification: bool = False,
               test_size: float = 0.2, seed: int = 0, data_dir: str | os.PathLike | None = None,
               dtype: Any = np.float32, *, download: bool | None = None,
               mirror: str | None = None):
    """Load MNIST as flat 784-pixel rows scaled to [0, 1].

    All splits found are pooled (training split first), ``n_samples`` rows are
    drawn from the pool by a seeded subsample stratified by digit, and a
    stratified ``test_size`` fraction of those becomes the test set.

    Args:
      n_samples: rows to use in total (train + test); None for all available.
      binary_classification: labels 1 for digits 5-9 and 0 for digits 0-4 (as
        ``dtype``); otherwise the digit 0-9 (int64).
      test_size: fraction in [0, 1) held out as the test set; 0 keeps every row
        in the training set (the test arrays are then empty).
      seed: seed of the subsample and the split.
      data_dir: folder holding ``mnist/`` (or the IDX files); default
        ``$OPTISCALE_DATA_DIR``, then the download cache.
      dtype: floating dtype of X (and of binary labels).
      download: allow downloading (default: ``$OPTISCALE_DOWNLOAD``).
      mirror: base URL of an MNIST mirror (default ``$OPTISCALE_MNIST_MIRROR``,
        then the public mirrors).

    Returns:
      ``X_train, y_train, X_test, y_test, metadata``; metadata holds the
      spectral figures of X_train (see ``spectral_metadata``), the number of
      constant pixels, the splits used and the source.
    """
    dtype = check_dtype(dtype)
    test_size = check_test_size(test_size)
    arrays, origin, files = _acquire(data_dir, download, mirror)
    used = [s for s in ("train", "test") if s in arrays]
    images = np.concatenate([arrays[s][0] for s in used])
    digits = np.concatenate([arrays[s][1] for s in used]).astype(np.int64)
    available = images.shape[0]
    if n_samples is not None:
        n_samples = check_positive_int(n_samples, "n_samples")
        if n_samples > available:
            detail = ", ".join(f"{s}: {arrays[s][0].shape[0]:,}" for s in used)
            raise ValueError(
                f"n_samples={n_samples} but only {available:,} MNIST images are available "
                f"({detail}); use n_samples <= {available}"
                + ("" if "train" in arrays else ", or add the training-split files "
                   "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz) to the data folder"))
        if n_samples < available:
            keep = stratified_subsample(digits, n_samples, seed, "n_samples")
            images, digits = images[keep], digits[keep]
    train_idx, test_idx = train_test_split(digits, test_size, seed)

    X = images.astype(dtype) / dtype.type(255)
    y = (digits >= 5).astype(dtype) if binary_classification else digits
    X_train, X_test, y_train, y_test = X[train_idx], X[test_idx], y[train_idx], y[test_idx]

    counts = {s: int(arrays[s][0].shape[0]) for s in used}
    split_text = " + ".join(f"{s} ({counts[s]:,} images)" for s in used)
    source = {"idx": f"MNIST IDX files, split(s) {split_text}",
              "download": f"MNIST IDX files downloaded to the cache, split(s) {split_text}",
              "tensorflow-datasets": f"tensorflow-datasets 'mnist', split(s) {split_text}"}[origin]
    metadata = build_metadata(
        X_train, n_test=X_test.shape[0],
        task="binary_classification" if binary_classification else "multiclass_classification",
        dtype=dtype, source=source)
    metadata.update({
        "name": "mnist",
        "splits_used": used,
        "split_sizes": counts,
        "files": files,
        "n_classes": 2 if binary_classification else 10,
        "n_constant_features": int(np.sum(np.ptp(X_train, axis=0) == 0)) if len(X_train) else 0,
        "labels": "1 = digits 5-9, 0 = digits 0-4" if binary_classification else "digit 0-9",
    })
    if binary_classification:
        metadata["positive_fraction"] = float(np.mean(y_train)) if len(y_train) else float("nan")
    return X_train, y_train, X_test, y_test, metadata
