"""IDX files, the format of MNIST and Fashion-MNIST (plain or gzip-compressed)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from edgeresnet.errors import InputError

_IDX_DTYPES: dict[int, DTypeLike] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# A bound on what one IDX file may unpack to (4 GiB): a gzip "bomb" is refused from its header,
# before anything is decompressed beyond it.
MAX_IDX_BYTES = 4 << 30


def map_idx(path: str | Path) -> np.ndarray:
    """A plain IDX file memory-mapped (read on demand, nothing loaded); a .gz one read whole (its payload
    cannot be addressed without decompressing it), with the same checks as `read_idx`."""
    path = Path(path)
    if path.suffix == ".gz":
        return read_idx(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
                raise InputError(f"{path}: not an IDX file (bad magic number)")
            dims = f.read(4 * magic[3])
            if magic[3] == 0 or len(dims) < 4 * magic[3]:
                raise InputError(f"{path}: IDX header is truncated")
        shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(magic[3]))
        dtype = np.dtype(_IDX_DTYPES[magic[2]])
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        offset = 4 + len(dims)
        size = path.stat().st_size - offset
    except OSError as exc:
        raise InputError(f"{path}: cannot read IDX file ({exc})") from None
    if size < expected:
        raise InputError(f"{path}: IDX payload is {size} bytes, its header promises {expected}")
    if size > expected:
        raise InputError(f"{path}: IDX payload is longer than the {expected} bytes its header promises")
    if expected == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
                raise InputError(f"{path}: not an IDX file (bad magic number)")
            ndim = magic[3]
            dims = f.read(4 * ndim)
            if ndim == 0 or len(dims) < 4 * ndim:
                raise InputError(f"{path}: IDX header is truncated")
            shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
            dtype = np.dtype(_IDX_DTYPES[magic[2]])
            expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if expected > MAX_IDX_BYTES:
                raise InputError(f"{path}: IDX header promises {expected:,} bytes, more than the {MAX_IDX_BYTES:,} allowed")
            payload = f.read(expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a corrupt deflate stream is a zlib.error; a cut one, EOFError.
        raise InputError(f"{path}: cannot read IDX file ({'corrupt or truncated gzip data: ' if path.suffix == '.gz' else ''}{exc})") from None
    if len(payload) < expected:
        raise InputError(f"{path}: IDX payload is {len(payload)} bytes, its header promises {expected}")
    if len(payload) > expected:
        raise InputError(f"{path}: IDX payload is longer than the {expected} bytes its header promises")
    return np.frombuffer(payload, dtype=dtype).reshape(shape)
