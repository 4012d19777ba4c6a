"""Datasets: spectral metadata, MNIST and California Housing loaders, bad files and arguments."""

import gzip
import io
import pathlib
import shutil
import sys
import tarfile

import numpy as np
import pytest
import scipy.linalg
import sklearn.datasets._california_housing as skcal
import threadpoolctl
from sklearn.datasets import fetch_california_housing

from optiscale_jax.datasets import (
    DataCorruptError,
    DataFileError,
    DataNotFoundError,
    data_roots,
    load_california_housing,
    load_mnist,
    locate_dataset,
    metadata_from_singular_values,
    spectral_metadata,
)
from optiscale_jax.datasets._download import MNIST_FILES, verify
from optiscale_jax.datasets._idx import read_bytes


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Multi-threaded BLAS stalls on a shared 2-core machine; one thread is far faster here."""
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield

METADATA_KEYS = {"n_train", "n_test", "n_features", "condition_number", "rank",
                 "condition_number_nonzero", "L", "mu", "task", "dtype", "source"}


@pytest.fixture(autouse=True)
def _no_tfds(monkeypatch):
    """tensorflow-datasets is not installed here; make sure a stray install cannot interfere."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


# ---------------------------------------------------------------- spectral metadata


def test_spectral_metadata_matches_hessian_eigenvalues():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)) * np.array([1, 2, 3, 4, 5, 50.0])
    meta = spectral_metadata(X)
    eig = np.linalg.eigvalsh(X.T @ X / 200)  # independent: the Hessian itself
    assert meta["condition_number"] == pytest.approx(eig[-1] / eig[0], rel=1e-10)
    assert meta["condition_number_nonzero"] == pytest.approx(eig[-1] / eig[0], rel=1e-10)
    assert meta["L"] == pytest.approx(eig[-1], rel=1e-12)
    assert meta["mu"] == pytest.approx(eig[0], rel=1e-10)
    assert meta["rank"] == 6 and not meta["singular"]


def test_spectral_metadata_singular_cases():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 4))
    X = np.column_stack([X, X[:, 0] + X[:, 1], np.zeros(50)])  # rank 4 of 6
    meta = spectral_metadata(X)
    assert meta["rank"] == 4 and meta["singular"]
    assert meta["condition_number"] == float("inf") and meta["mu"] == 0.0
    s = np.linalg.svd(X[:, :4], compute_uv=False)
    eig = np.linalg.eigvalsh(X.T @ X)
    nonzero = eig[eig > 1e-9 * eig[-1]]
    assert meta["condition_number_nonzero"] == pytest.approx(nonzero[-1] / nonzero[0], rel=1e-8)
    assert meta["sigma_max"] >= s[0]
    # n < d is always singular
    wide = spectral_metadata(rng.normal(size=(3, 8)))
    assert wide["rank"] == 3 and wide["condition_number"] == float("inf")
    assert np.isfinite(wide["condition_number_nonzero"])


def test_rank_tolerance_is_relative():
    """A singular value below sigma_max * max(n, d) * eps64 counts as zero; above, it does not."""
    tol_factor = 100 * np.finfo(np.float64).eps
    below = metadata_from_singular_values(np.array([1.0, 0.5 * tol_factor]), 100, 2)
    above = metadata_from_singular_values(np.array([1.0, 2.0 * tol_factor]), 100, 2)
    assert below["rank"] == 1 and below["condition_number"] == float("inf")
    assert above["rank"] == 2 and above["condition_number"] == pytest.approx(
        (1 / (2 * tol_factor)) ** 2)
    scaled = metadata_from_singular_values(np.array([1e6, 1e6 * 0.5 * tol_factor]), 100, 2)
    assert scaled["rank"] == 1


def test_spectral_metadata_rejects_bad_matrices():
    with pytest.raises(ValueError, match="NaN or Inf"):
        spectral_metadata(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        spectral_metadata(np.ones(3))


# ---------------------------------------------------------------- MNIST


def _raw_mnist(data_dir: pathlib.Path):
    """Images and digits read straight from the gzip files (independent of the loader)."""
    with gzip.open(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz") as fh:
        images = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz") as fh:
        digits = np.frombuffer(fh.read(), np.uint8, offset=8)
    return images, digits


@pytest.fixture(scope="session")
def mnist_full(data_dir):
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        return load_mnist(binary_classification=True, test_size=0.0, data_dir=data_dir,
                          dtype=np.float64)


@pytest.mark.slow
def test_mnist_full_test_split_and_its_singular_spectrum(mnist_full, data_dir):
    X, y, X_test, y_test, meta = mnist_full
    images, digits = _raw_mnist(data_dir)
    assert X.shape == (10_000, 784) and X_test.shape == (0, 784) and y_test.shape == (0,)
    np.testing.assert_array_equal(X, images / 255.0)
    np.testing.assert_array_equal(y, (digits >= 5).astype(float))
    assert X.min() == 0.0 and X.max() == 1.0
    assert METADATA_KEYS <= set(meta)
    assert meta["n_train"] == 10_000 and meta["n_test"] == 0 and meta["n_features"] == 784
    assert meta["splits_used"] == ["test"] and "test (10,000 images)" in meta["source"]
    assert meta["task"] == "binary_classification" and meta["dtype"] == "float64"
    # README facts, each measured independently here
    constant = int(np.sum(images.max(axis=0) == images.min(axis=0)))
    assert constant == 116 == meta["n_constant_features"]
    assert meta["rank"] == 661
    assert meta["condition_number"] == float("inf") and meta["mu"] == 0.0
    # nonzero spectrum by another algorithm: QR of the non-constant columns, then SVD of R
    R = scipy.linalg.qr(X[:, images.max(axis=0) > 0], mode="r")[0]
    s = scipy.linalg.svd(R[:R.shape[1]], compute_uv=False, lapack_driver="gesvd")
    s = s[s > s[0] * 10_000 * np.finfo(float).eps]
    assert s.size == 661
    assert meta["condition_number_nonzero"] == pytest.approx((s[0] / s[-1]) ** 2, rel=1e-6)
    assert np.sqrt(meta["condition_number_nonzero"]) == pytest.approx(4.4e6, rel=0.02)
    assert meta["L"] == pytest.approx(s[0] ** 2 / 10_000, rel=1e-10)
    assert meta["positive_fraction"] == pytest.approx(0.4861)


def test_mnist_stratified_seeded_subsample(data_dir):
    images, digits = _raw_mnist(data_dir)
    X_tr, y_tr, X_te, y_te, meta = load_mnist(n_samples=2000, test_size=0.25, seed=3,
                                              data_dir=data_dir)
    assert X_tr.dtype == np.float32 and y_tr.dtype == np.int64
    assert X_tr.shape == (1500, 784) and X_te.shape == (500, 784)
    assert meta["n_train"] == 1500 and meta["n_test"] == 500
    expected = np.bincount(digits, minlength=10) / digits.size
    for labels, n in ((y_tr, 1500), (y_te, 500)):
        assert np.all(np.abs(np.bincount(labels, minlength=10) - expected * n) <= 1.5)
    # every returned row is a real image with its own label; train and test are disjoint
    lookup = {row.tobytes(): int(d) for row, d in zip(images, digits)}
    rows = np.rint(np.vstack([X_tr, X_te]) * 255).astype(np.uint8)
    labels = np.concatenate([y_tr, y_te])
    assert all(lookup[r.tobytes()] == lab for r, lab in zip(rows, labels))
    assert len({r.tobytes() for r in rows}) == 2000
    again = load_mnist(n_samples=2000, test_size=0.25, seed=3, data_dir=data_dir)
    np.testing.assert_array_equal(again[0], X_tr)
    other = load_mnist(n_samples=2000, test_size=0.25, seed=4, data_dir=data_dir)
    assert not np.array_equal(other[0], X_tr)


def test_mnist_reads_uncompressed_idx_files(tmp_path, data_dir, mnist_full):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(read_bytes(data_dir / "mnist" / f"{name}.gz"))
    X, y, *_ = load_mnist(binary_classification=True, test_size=0.0, data_dir=tmp_path,
                          dtype=np.float64)
    np.testing.assert_array_equal(X, mnist_full[0])
    np.testing.assert_array_equal(y, mnist_full[1])


def test_real_test_split_matches_published_checksums(data_dir):
    for spec in MNIST_FILES:
        if spec.split == "test":
            data = read_bytes(data_dir / "mnist" / f"{spec.name}.gz")
            verify(data, spec, spec.name)  # raises on mismatch
            assert len(data) == spec.n_bytes


def _copy_split(data_dir, dest):
    folder = dest / "mnist"
    folder.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data_dir / "mnist" / name, folder / name)
    return folder


def test_mnist_bad_idx_magic(tmp_path, data_dir):
    folder = _copy_split(data_dir, tmp_path)
    shutil.copy(folder / "t10k-labels-idx1-ubyte.gz", folder / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataFileError, match="magic number 2049, expected 2051"):
        load_mnist(data_dir=tmp_path)


def test_mnist_truncated_gzip(tmp_path, data_dir):
    folder = _copy_split(data_dir, tmp_path)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50_000])
    with pytest.raises(DataFileError, match="not a valid gzip file.*truncated or corrupt"):
        load_mnist(data_dir=tmp_path)


def test_mnist_truncated_idx_payload(tmp_path, data_dir):
    folder = _copy_split(data_dir, tmp_path)
    raw = read_bytes(folder / "t10k-labels-idx1-ubyte.gz")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(raw[:-10])
    with pytest.raises(DataFileError, match="holds 9998 bytes but its IDX header"):
        load_mnist(data_dir=tmp_path)


def test_mnist_missing_files_lists_paths_and_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTISCALE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPTISCALE_DOWNLOAD", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(data_dir=tmp_path / "empty")
    message = str(info.value)
    assert str(tmp_path / "empty" / "mnist") in message
    assert str(tmp_path / "cache" / "data" / "mnist") in message
    assert "tensorflow-datasets is not installed" in message
    assert "download=True" in message and "OPTISCALE_DATA_DIR" in message


def test_mnist_half_a_split_is_named(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("OPTISCALE_CACHE_DIR", str(tmp_path / "cache"))
    folder = _copy_split(data_dir, tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="has t10k-images-idx3-ubyte but not "
                                                "t10k-labels-idx1-ubyte"):
        load_mnist(data_dir=tmp_path, download=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_samples": 10_001}, r"n_samples=10001 but only 10,000 MNIST images.*training-split"),
    ({"n_samples": 0}, "n_samples must be a positive integer, got 0"),
    ({"n_samples": -5}, "n_samples must be a positive integer"),
    ({"n_samples": 2.5}, "n_samples must be a positive integer, got 2.5"),
    ({"n_samples": True}, "n_samples must be a positive integer"),
    ({"n_samples": 5}, "too small to keep all 10 classes"),
    ({"test_size": 1.0}, r"test_size must be a fraction in \[0, 1\)"),
    ({"test_size": -0.1}, "test_size must be finite and >= 0"),
    ({"n_samples": 40, "test_size": 0.1}, "too few to hold each of the 10 classes"),
    ({"dtype": np.int32}, "floating dtype"),
])
def test_mnist_bad_arguments(kwargs, match, data_dir):
    with pytest.raises(ValueError, match=match):
        load_mnist(data_dir=data_dir, **kwargs)


# ---------------------------------------------------------------- California Housing


def _raw_california(data_dir):
    return np.loadtxt(data_dir / "california_housing" / "cal_housing.data", delimiter=",",
                      skiprows=1)


@pytest.fixture
def sklearn_archive(monkeypatch, tmp_path, data_dir):
    """scikit-learn's fetcher fed the StatLib file as its archive (no network): its own code
    then derives the 8 features, so the comparison is against scikit-learn's definitions."""
    raw = _raw_california(data_dir)
    body = "\n".join(",".join(f"{v:f}" for v in row) for row in raw).encode()

    def fake_fetch_remote(remote, dirname=None, **kwargs):
        path = pathlib.Path(dirname) / remote.filename
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo("CaliforniaHousing/cal_housing.data")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        return str(path)

    monkeypatch.setattr(skcal, "_fetch_remote", fake_fetch_remote)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sklearn_home"))
    return skcal


def test_california_features_equal_scikit_learn_row_for_row(sklearn_archive, data_dir, tmp_path,
                                                            monkeypatch):
    X_sk, y_sk = fetch_california_housing(return_X_y=True)
    X, y, X_te, _, meta = load_california_housing(data_dir=data_dir, test_size=0.0,
                                                  standardize=False, dtype=np.float64)
    assert X.shape == (20_640, 8) and X_te.shape == (0, 8)
    np.testing.assert_allclose(X, X_sk, rtol=1e-12)
    np.testing.assert_allclose(y, y_sk, rtol=1e-12)
    assert meta["feature_names"] == ["MedInc", "HouseAge", "AveRooms", "AveBedrms",
                                     "Population", "AveOccup", "Latitude", "Longitude"]
    assert "StatLib" in meta["source"]
    # no local file: the loader falls back to scikit-learn's fetcher (download allowed)
    monkeypatch.setenv("OPTISCALE_CACHE_DIR", str(tmp_path / "cache"))
    X_fb, y_fb, *_, meta_fb = load_california_housing(data_dir=tmp_path / "none",
                                                      test_size=0.0, standardize=False,
                                                      download=True, dtype=np.float64)
    assert meta_fb["source"] == "sklearn.datasets.fetch_california_housing"
    np.testing.assert_allclose(X_fb, X, rtol=1e-12)


def test_california_missing_everywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sklearn_home"))
    monkeypatch.setenv("OPTISCALE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError) as caught:
        load_california_housing(data_dir=tmp_path / "none", download=False)
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    for expected in ("data set 'california_housing' not found", str(tmp_path / "none"),
                     str(tmp_path / "sklearn_home" / "cal_housing.pkz"), "--data_dir=DIR",
                     "OPTISCALE_DATA_DIR=DIR", "load_california_housing(download=True)"):
        assert expected in message
    with pytest.raises(DataNotFoundError, match="california_housing"):
        locate_dataset("california_housing", tmp_path / "none")


def test_california_standardized_condition_number(data_dir):
    X, y, _, _, meta = load_california_housing(data_dir=data_dir, test_size=0.0,
                                               dtype=np.float64)
    assert meta["n_train"] == 20_640 and meta["n_features"] == 8 and meta["rank"] == 8
    kappa_independent = np.linalg.cond(X) ** 2  # numpy's 2-norm condition number of X, squared
    assert meta["condition_number"] == pytest.approx(kappa_independent, rel=1e-10)
    assert round(meta["condition_number"], 1) == 44.5
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(X.std(axis=0), 1.0, rtol=1e-12)
    assert y.mean() == pytest.approx(2.0686, abs=1e-4)
    assert meta["task"] == "regression" and METADATA_KEYS <= set(meta)
    raw = load_california_housing(data_dir=data_dir, test_size=0.0, standardize=False)[4]
    assert np.sqrt(raw["condition_number"]) == pytest.approx(1.0e4, rel=0.05)


def test_california_split_uses_training_statistics(data_dir):
    X_tr, y_tr, X_te, y_te, meta = load_california_housing(data_dir=data_dir, seed=1,
                                                           dtype=np.float64)
    assert (X_tr.shape[0], X_te.shape[0]) == (16_512, 4_128)
    assert meta["n_train"] == 16_512 and meta["n_test"] == 4_128
    np.testing.assert_allclose(X_tr.mean(axis=0), 0.0, atol=1e-10)
    assert np.abs(X_te.mean(axis=0)).max() > 1e-4  # test rows are scaled with train statistics
    raw_X, _, *_ = load_california_housing(data_dir=data_dir, test_size=0.0, standardize=False,
                                           dtype=np.float64)
    restored = X_te * np.array(meta["feature_std"]) + np.array(meta["feature_mean"])
    raw_rows = {np.round(r, 6).tobytes() for r in raw_X}
    assert all(np.round(r, 6).tobytes() in raw_rows for r in restored[:50])


def _write_csv(tmp_path, rows, header=True):
    folder = tmp_path / "california_housing"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ([",".join(["longitude", "latitude", "housing_median_age", "total_rooms",
                        "total_bedrooms", "population", "households", "median_income",
                        "median_house_value"])] if header else [])
    lines += [",".join(str(v) for v in row) for row in rows]
    (folder / "cal_housing.data").write_text("\n".join(lines) + "\n")


_ROWS = [[-122.2 - i, 37.8 + i, 41 + i, 880 + 10 * i, 129 + i, 322 + 3 * i, 126 + i,
          8.3 - 0.1 * i, 452600 - 1000 * i] for i in range(12)]


def test_california_headerless_statlib_file(tmp_path):
    _write_csv(tmp_path, _ROWS, header=False)
    X, y, *_ = load_california_housing(data_dir=tmp_path, test_size=0.0, standardize=False,
                                       dtype=np.float64)
    row = _ROWS[3]
    np.testing.assert_allclose(X[3], [row[7], row[2], row[3] / row[6], row[4] / row[6], row[5],
                                      row[5] / row[6], row[1], row[0]])
    assert y[3] == pytest.approx(row[8] / 1e5)


def test_california_csv_with_nan_names_row_and_column(tmp_path):
    rows = [list(r) for r in _ROWS]
    rows[4][4] = "nan"
    _write_csv(tmp_path, rows)
    with pytest.raises(DataFileError, match="data row 5, column 'total_bedrooms' = nan"):
        load_california_housing(data_dir=tmp_path)


def test_california_csv_with_empty_field_or_wrong_columns(tmp_path):
    rows = [list(r) for r in _ROWS]
    rows[2][3] = ""
    _write_csv(tmp_path, rows)
    with pytest.raises(DataFileError, match="not a numeric comma-separated file"):
        load_california_housing(data_dir=tmp_path)
    _write_csv(tmp_path, [r[:8] for r in _ROWS], header=False)
    with pytest.raises(DataFileError, match="has 8 columns, expected 9"):
        load_california_housing(data_dir=tmp_path)


@pytest.mark.parametrize("content, match", [
    (b"\xff\xfe-122.2,37.8\n", "is not UTF-8 text"),
    (b"", "is empty"),
    (b"longitude,latitude,housing_median_age,total_rooms,total_bedrooms,population,"
     b"households,median_income,median_house_value\n", "has a header but no data rows"),
])
def test_undecodable_or_empty_california_file_names_the_file(tmp_path, content, match):
    folder = tmp_path / "california_housing"
    folder.mkdir()
    (folder / "cal_housing.data").write_bytes(content)
    with pytest.raises(DataCorruptError, match=match) as caught:
        load_california_housing(data_dir=tmp_path)
    assert str(folder / "cal_housing.data") in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_one_location_rule_relative_paths_absolute_messages(data_dir, tmp_path, monkeypatch):
    """Argument, else OPTISCALE_DATA_DIR, else the user cache; a relative path is taken from
    the current directory when it is read and shown absolute."""
    monkeypatch.setenv("OPTISCALE_CACHE_DIR", str(tmp_path / "cache"))
    assert locate_dataset("mnist", data_dir) == data_dir / "mnist"
    monkeypatch.chdir(data_dir.parent)
    assert locate_dataset("mnist", data_dir.name) == data_dir / "mnist"     # relative argument
    monkeypatch.setenv("OPTISCALE_DATA_DIR", data_dir.name)                 # relative variable
    assert locate_dataset("california_housing") == data_dir / "california_housing" / \
        "cal_housing.data"
    assert data_roots(None) == [data_dir, tmp_path / "cache" / "data"]
    monkeypatch.chdir(tmp_path)                                             # read again: moved
    with pytest.raises(DataNotFoundError) as caught:
        locate_dataset("mnist")
    message = str(caught.value)
    assert f"$OPTISCALE_DATA_DIR = {tmp_path / data_dir.name}" in message
    assert str(tmp_path / "cache" / "data" / "mnist") in message
    assert "load_mnist(download=True)" in message and "--data_dir=DIR" in message
    with pytest.raises(DataNotFoundError, match="data set 'mnist' not found"):
        load_mnist(download=False)
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        locate_dataset("cifar")


def test_both_loaders_default_to_float32(data_dir):
    X_m, *_ = load_mnist(n_samples=200, data_dir=data_dir)
    X_c, y_c, *_ = load_california_housing(data_dir=data_dir)
    assert X_m.dtype == X_c.dtype == y_c.dtype == np.float32
