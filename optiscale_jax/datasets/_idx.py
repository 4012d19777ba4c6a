"""Reading the IDX file format of MNIST (LeCun et al.), gzipped or not.

An IDX file is a big-endian header ``0x00 0x00 <type> <ndim>`` followed by
``ndim`` 32-bit dimension sizes and the data. MNIST uses unsigned bytes
(type 0x08): images have magic 2051 (3-D: count, 28, 28), labels magic 2049
(1-D: count).
"""

from __future__ import annotations

import gzip
import hashlib
import pathlib
import zlib

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


class DataCorruptError(ValueError):
    """A data file exists but cannot be decoded, or is corrupt or inconsistent; the message
    names the file (absolute path) and the fix."""


DataFileError = DataCorruptError   # the earlier name of the same exception


def read_bytes(path: pathlib.Path) -> bytes:
    """The (uncompressed) content of ``path``; ``.gz`` files are decompressed.

    Raises:
      DataFileError: a truncated or corrupt gzip stream, naming the file and the fix.
    """
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise DataFileError(
            f"{path} is not a valid gzip file ({type(err).__name__}: {err}); the file is "
            "truncated or corrupt: delete it and download it again") from None


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def parse_idx(data: bytes, expected_magic: int, source: str) -> np.ndarray:
    """Parse IDX bytes of unsigned-byte data into a uint8 array of the header's shape.

    Args:
      data: the uncompressed file content.
      expected_magic: 2051 for images, 2049 for labels.
      source: a name for error messages (the file path).

    Raises:
      DataFileError: wrong magic number, or a size that does not match the header.
    """
    if len(data) < 4:
        raise DataFileError(f"{source} is {len(data)} bytes long, too short for an IDX header; "
                            "delete it and download it again")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
        raise DataFileError(
            f"{source} has IDX magic number {magic}, expected {expected_magic} for MNIST {kind}; "
            "the file is not an MNIST IDX file or is corrupt: delete it and download it again")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFileError(f"{source} ends inside its IDX header; delete it and download it again")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataFileError(
            f"{source} holds {len(data)} bytes but its IDX header {shape} implies {expected}; "
            "the file is truncated or corrupt: delete it and download it again")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
