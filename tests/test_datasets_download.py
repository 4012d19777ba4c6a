"""MNIST acquisition order and the download path, tested against a real HTTP server on 127.0.0.1.

The server (a thread running ``http.server``) serves the real test-split files,
a corrupted copy (valid gzip, wrong content) and a truncated gzip.
"""

import functools
import gzip
import hashlib
import http.server
import shutil
import sys
import threading
import types

import numpy as np
import pytest
import threadpoolctl

from optiscale_jax.datasets import DataFileError, DataNotFoundError, load_mnist


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Multi-threaded BLAS stalls on a shared 2-core machine; one thread is far faster here."""
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


class _Server:
    def __init__(self, root):
        self.requests = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, fmt, *args):  # keep the test output quiet; record instead
                log.append(self.path)

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, data_dir):
    """Folders good/ (real test split), corrupt/ (one pixel changed) and truncated/."""
    root = tmp_path_factory.mktemp("mirror")
    names = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    for folder in ("good", "corrupt", "truncated"):
        (root / folder).mkdir()
        for name in names:
            shutil.copy(data_dir / "mnist" / name, root / folder / name)
    raw = bytearray(gzip.decompress((root / "corrupt" / names[0]).read_bytes()))
    raw[5000] ^= 0xFF  # one pixel: same size, valid IDX header, wrong checksum
    (root / "corrupt" / names[0]).write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    whole = (root / "truncated" / names[0]).read_bytes()
    (root / "truncated" / names[0]).write_bytes(whole[: len(whole) // 2])
    server = _Server(root)
    yield server
    server.close()


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    """No local files, a private cache, tensorflow-datasets absent, downloads not pre-allowed."""
    monkeypatch.setenv("OPTISCALE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPTISCALE_DOWNLOAD", raising=False)
    monkeypatch.delenv("OPTISCALE_MNIST_MIRROR", raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now raises ImportError
    (tmp_path / "empty").mkdir()
    return tmp_path


def _cache_files(tmp_path):
    folder = tmp_path / "cache" / "data" / "mnist"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_download_from_local_mirror_then_reuse_cache(mirror, empty_env, data_dir):
    mirror.requests.clear()
    with pytest.warns(RuntimeWarning, match="(?s)train split: could not download "
                                            "train-images-idx3-ubyte.gz.*404"):
        X, y, _, _, meta = load_mnist(binary_classification=True, test_size=0.0,
                                      data_dir=empty_env / "empty", download=True,
                                      mirror=f"{mirror.url}/good")
    assert X.shape == (10_000, 784) and meta["splits_used"] == ["test"]
    assert meta["source"].startswith("MNIST IDX files downloaded to the cache")
    assert meta["rank"] == 661 and meta["condition_number"] == float("inf")
    assert "/good/t10k-images-idx3-ubyte.gz" in mirror.requests
    assert _cache_files(empty_env) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    cached = empty_env / "cache" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
    assert hashlib.md5(gzip.decompress(cached.read_bytes())).hexdigest() == \
        "2646ac647ad5339dbf082846283269ea"
    # second call: found in the cache, no request, even with downloads off
    mirror.requests.clear()
    X2, *_, meta2 = load_mnist(binary_classification=True, test_size=0.0,
                               data_dir=empty_env / "empty", download=False)
    assert mirror.requests == [] and meta2["source"].startswith("MNIST IDX files, split(s) test")
    np.testing.assert_array_equal(X2, X)


def test_mirror_and_permission_from_environment(mirror, empty_env, monkeypatch):
    monkeypatch.setenv("OPTISCALE_MNIST_MIRROR", f"{mirror.url}/good/")
    monkeypatch.setenv("OPTISCALE_DOWNLOAD", "1")
    mirror.requests.clear()
    with pytest.warns(RuntimeWarning):
        X, *_ = load_mnist(n_samples=1000, data_dir=empty_env / "empty")
    assert X.shape == (800, 784)
    assert "/good/t10k-labels-idx1-ubyte.gz" in mirror.requests


@pytest.mark.parametrize("folder, match", [
    ("corrupt", r"checksum mismatch for http://127\.0\.0\.1:\d+/corrupt/t10k-images-idx3-ubyte"
                r"\.gz: MD5 of the uncompressed content is [0-9a-f]{32}, expected "
                r"2646ac647ad5339dbf082846283269ea"),
    ("truncated", "not a valid gzip file"),
])
def test_corrupt_download_is_detected_and_not_cached(mirror, empty_env, folder, match):
    with pytest.raises(DataFileError, match=match):
        load_mnist(data_dir=empty_env / "empty", download=True, mirror=f"{mirror.url}/{folder}")
    assert f"/{folder}/t10k-images-idx3-ubyte.gz" in mirror.requests
    leftovers = _cache_files(empty_env)
    assert "t10k-images-idx3-ubyte.gz" not in leftovers
    assert not [name for name in leftovers if "part" in name]


def test_no_download_without_permission(mirror, empty_env):
    mirror.requests.clear()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(data_dir=empty_env / "empty", mirror=f"{mirror.url}/good")
    message = str(info.value)
    assert "download not allowed" in message and "tensorflow-datasets is not installed" in message
    assert str(empty_env / "empty" / "mnist") in message
    assert mirror.requests == []


def test_unreachable_mirror_lists_failures(empty_env):
    with pytest.raises(FileNotFoundError, match=r"(?s)could not download.*127\.0\.0\.1:9/"):
        load_mnist(data_dir=empty_env / "empty", download=True, mirror="http://127.0.0.1:9/")


def _fake_tfds(calls, data_dir, fail=False):
    """A stand-in for tensorflow_datasets with the real call signature of tfds.load."""
    with gzip.open(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz") as fh:
        images = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read(), np.uint8, offset=8).astype(np.int64)

    def load(name, *, split, batch_size, as_supervised, download, **kwargs):
        calls.append({"name": name, "split": split, "batch_size": batch_size,
                      "as_supervised": as_supervised, "download": download})
        if fail:
            raise AssertionError("Dataset mnist: could not find data in ~/tensorflow_datasets")
        return [(images[:3000], labels[:3000]), (images[3000:], labels[3000:])]

    return types.SimpleNamespace(load=load, as_numpy=lambda tree: tree)


def test_tfds_is_used_before_download_when_installed(mirror, empty_env, monkeypatch, data_dir):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(calls, data_dir))
    mirror.requests.clear()
    X, y, _, _, meta = load_mnist(test_size=0.0, data_dir=empty_env / "empty", download=True,
                                  mirror=f"{mirror.url}/good")
    assert calls == [{"name": "mnist", "split": ["train", "test"], "batch_size": -1,
                      "as_supervised": True, "download": True}]
    assert mirror.requests == []  # tfds came first
    assert meta["source"].startswith("tensorflow-datasets") and meta["splits_used"] == [
        "train", "test"]
    assert meta["split_sizes"] == {"train": 3000, "test": 7000} and X.shape == (10_000, 784)


def test_tfds_failure_falls_back_to_download(mirror, empty_env, monkeypatch, data_dir):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(calls, data_dir, fail=True))
    with pytest.warns(RuntimeWarning):
        *_, meta = load_mnist(n_samples=500, data_dir=empty_env / "empty", download=True,
                              mirror=f"{mirror.url}/good")
    assert calls and calls[0]["download"] is True
    assert meta["source"].startswith("MNIST IDX files downloaded")
    # with downloads off and an empty cache, the tfds error is reported among the reasons
    monkeypatch.setenv("OPTISCALE_CACHE_DIR", str(empty_env / "other_cache"))
    with pytest.raises(FileNotFoundError, match="tensorflow-datasets failed: AssertionError"):
        load_mnist(data_dir=empty_env / "nowhere", download=False)


def test_tfds_absent_is_a_real_import_error(monkeypatch, tmp_path):
    """The guarded import path runs for real: without the package the import fails and the
    loader says so among the places it tried."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    monkeypatch.setenv("OPTISCALE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match="tensorflow-datasets is not installed"):
        load_mnist(data_dir=tmp_path / "nowhere", download=False)
