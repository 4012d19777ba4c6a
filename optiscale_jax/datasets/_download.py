"""Downloading the MNIST IDX files from a configurable mirror, verified by MD5.

Each file is fetched to a temporary file in the destination folder, its
*uncompressed* content is checked against the published MD5 and the IDX
header, and only then renamed into place (``os.replace``). A failed or corrupt
download leaves nothing in the cache.

Mirror: the ``mirror`` argument, else ``$OPTISCALE_MNIST_MIRROR``, else
:data:`DEFAULT_MIRRORS` in order. Downloading happens only when allowed: the
``download`` argument, else ``$OPTISCALE_DOWNLOAD`` set to 1/true/yes.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import NamedTuple

from optiscale_jax.datasets._idx import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    DataFileError,
    md5_hex,
    parse_idx,
    read_bytes,
)

MIRROR_ENV = "OPTISCALE_MNIST_MIRROR"
DOWNLOAD_ENV = "OPTISCALE_DOWNLOAD"
DEFAULT_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)


class MnistFile(NamedTuple):
    """One standard MNIST file: its name (without ``.gz``), split, IDX magic, uncompressed
    size in bytes and the MD5 of the uncompressed content."""

    name: str
    split: str
    magic: int
    n_bytes: int
    md5: str


# Uncompressed MD5s as published with the data set (the same values appear in the
# download scripts of many projects; the test-split values are also in shared/data/README.md
# and were checked against the real files).
MNIST_FILES = (
    MnistFile("train-images-idx3-ubyte", "train", IMAGES_MAGIC, 47_040_016,
              "6bbc9ace898e44ae57da46a324031adb"),
    MnistFile("train-labels-idx1-ubyte", "train", LABELS_MAGIC, 60_008,
              "a25bea736e30d166cdddb491f175f624"),
    MnistFile("t10k-images-idx3-ubyte", "test", IMAGES_MAGIC, 7_840_016,
              "2646ac647ad5339dbf082846283269ea"),
    MnistFile("t10k-labels-idx1-ubyte", "test", LABELS_MAGIC, 10_008,
              "27ae3e4e09519cfbb04c329615203637"),
)


def download_allowed(download: bool | None) -> bool:
    """``download`` if given, else whether ``$OPTISCALE_DOWNLOAD`` is 1/true/yes."""
    if download is not None:
        return bool(download)
    return os.environ.get(DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def mirrors(mirror: str | None) -> tuple[str, ...]:
    """The mirror base URLs to try, in order."""
    chosen = mirror or os.environ.get(MIRROR_ENV)
    if chosen:
        return (chosen if chosen.endswith("/") else chosen + "/",)
    return DEFAULT_MIRRORS


def verify(data: bytes, spec: MnistFile, source: str) -> None:
    """Check uncompressed content against the published size, MD5 and IDX header.

    Raises:
      DataFileError: naming the source, the expected and the actual checksum.
    """
    digest = md5_hex(data)
    if digest != spec.md5:
        raise DataFileError(
            f"checksum mismatch for {source}: MD5 of the uncompressed content is {digest}, "
            f"expected {spec.md5} ({len(data)} bytes, expected {spec.n_bytes}); the download "
            "is corrupt or the mirror serves a different file: try again or choose another "
            f"mirror (mirror= or ${MIRROR_ENV})")
    parse_idx(data, spec.magic, source)


def fetch_file(spec: MnistFile, dest_dir: pathlib.Path, mirror_urls: Iterable[str],
               timeout_s: float = 60.0) -> pathlib.Path:
    """Download ``spec`` (as ``<name>.gz``) into ``dest_dir``; return the verified path.

    Tries each mirror in turn. HTTP/network errors move on to the next mirror; a
    checksum mismatch is raised at once (nothing is kept).

    Raises:
      DataFileError: the download does not match the published MD5 or IDX header.
      ConnectionError: no mirror could deliver the file (lists each failure).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{spec.name}.gz"
    failures = []
    for base in mirror_urls:
        url = f"{base}{spec.name}.gz"
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part.gz", dir=dest_dir)
        tmp = pathlib.Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
            verify(read_bytes(tmp), spec, url)
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            failures.append(f"{url}: {err}")
        finally:
            if tmp.exists():
                tmp.unlink()
    raise ConnectionError(f"could not download {spec.name}.gz from any mirror:\n  "
                          + "\n  ".join(failures))
