"""Data sets as streams of preprocessed batches: memory bounded by the batch, not the data set.

A `Dataset` holds its labels (small) and an `ImageSource` that reads preprocessed
float32 images by index on demand: a memory-mapped or in-memory array (uint8 pixels
are normalized per chunk), or image files decoded by a small thread pool. `batches`
reads one chunk ahead of the consumer, so decoding overlaps the model's compute
(Pillow and NumPy release the GIL while they decode, resize and convert).

The sha256 of a data set is that of its exact tensors: ``"float32(N, C, H, W)"``,
the image bytes in order, then the int64 labels. It is computed on the first full
pass over the data (or on demand), chunk by chunk, and equals the digest of the
whole array held in memory.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import numpy as np

from edgeresnet.errors import InputError
from edgeresnet.preprocessing import ImageRefused
from edgeresnet.schema import DataSummary

# Decoding threads: enough to keep a model fed on a small machine without crowding out its compute.
DECODE_WORKERS = max(2, min(4, os.cpu_count() or 1))
DEFAULT_CHUNK = 32
# A chunk of images is read ahead while the consumer computes on the current one.
READ_AHEAD = 2


def decode_error(file, exc: Exception) -> InputError:
    """An image that does not decode, by name: refused by the preprocessing (its reason), or damaged."""
    if isinstance(exc, ImageRefused):
        return InputError(f"{file}: {exc}")
    return InputError(f"{file}: not a readable image ({exc})")


class ImageSource(ABC):
    """Preprocessed float32 images [C, H, W], read by (ascending) index on demand."""

    dtype = np.dtype(np.float32)

    @property
    @abstractmethod
    def image_shape(self) -> tuple[int, ...]:
        ...

    @abstractmethod
    def __len__(self) -> int:
        ...

    @abstractmethod
    def read(self, index: np.ndarray) -> np.ndarray:
        """The images at `index`, as one contiguous array [len(index), *image_shape]."""

    def submit(self, index: np.ndarray, pool: ThreadPoolExecutor) -> Callable[[], np.ndarray]:
        """Start reading `index` in the pool; the returned call waits for the images."""
        return pool.submit(self.read, index).result

    def paths(self) -> list | None:
        """The file of each image, when they are files."""
        return None

    def content_digests(self, index: np.ndarray) -> list[str]:
        """A digest of the stored content (file bytes or array row) of each image at `index`."""
        return [_digest(np.ascontiguousarray(self.read(np.array([i]))).tobytes()) for i in index]

    def unit_pixels(self, index: np.ndarray, preprocessing) -> np.ndarray | None:
        """The images at `index` before normalization, NHWC in [0, 1] at `preprocessing`'s size and resize
        (files decoded again with it); None when the source holds preprocessed tensors only."""
        return None


class ArraySource(ImageSource):
    """Rows of an array (in memory or memory-mapped); uint8 pixels go through `normalize` per chunk."""

    def __init__(self, array: np.ndarray, normalize: Callable[[np.ndarray], np.ndarray] | None = None):
        self.array = array
        self.normalize = normalize
        first = self._convert(np.asarray(array[:1]))
        self._shape = tuple(first.shape[1:])

    def _convert(self, rows: np.ndarray) -> np.ndarray:
        if self.normalize is not None:
            return self.normalize(rows)
        return np.ascontiguousarray(rows, dtype=np.float32)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self._shape

    def __len__(self) -> int:
        return len(self.array)

    def read(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, np.int64)
        if len(index) and index[-1] - index[0] + 1 == len(index):  # a run: a slice reads a memory map sequentially
            rows = self.array[int(index[0]): int(index[-1]) + 1]
        else:
            rows = self.array[index]
        return self._convert(np.asarray(rows))

    def content_digests(self, index: np.ndarray) -> list[str]:
        return [_digest(np.ascontiguousarray(self.array[int(i)]).tobytes()) for i in index]

    def unit_pixels(self, index: np.ndarray, preprocessing) -> np.ndarray | None:
        if self.normalize is None:
            return None
        return np.asarray(self.array[np.asarray(index, np.int64)], np.float32) / 255.0


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileSource(ImageSource):
    """Image files, each decoded and preprocessed by `load` in the thread pool."""

    def __init__(self, files: list, load: Callable[[Any], np.ndarray], image_shape: tuple[int, ...]):
        self.files = files
        self.load = load
        self._shape = tuple(image_shape)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self._shape

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: np.ndarray) -> np.ndarray:
        return self._stack([self.load(self.files[int(i)]) for i in index])

    def submit(self, index: np.ndarray, pool: ThreadPoolExecutor) -> Callable[[], np.ndarray]:
        futures = [pool.submit(self.load, self.files[int(i)]) for i in index]
        return lambda: self._stack([f.result() for f in futures])

    def paths(self) -> list | None:
        return list(self.files)

    def content_digests(self, index: np.ndarray) -> list[str]:
        digests = []
        for i in index:
            with open(self.files[int(i)], "rb") as f:
                digests.append(hashlib.file_digest(f, "sha256").hexdigest())
        return digests

    def unit_pixels(self, index: np.ndarray, preprocessing) -> np.ndarray | None:
        def unit(file):
            try:
                return preprocessing.load_unit(file)
            except (OSError, ValueError, SyntaxError) as exc:
                raise decode_error(file, exc) from None
        return np.stack([unit(self.files[int(i)]) for i in index])

    def _stack(self, images: list[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, *self._shape), np.float32)
        return np.stack(images).astype(np.float32, copy=False)


class SubsetSource(ImageSource):
    """The rows `index` of another source."""

    def __init__(self, base: ImageSource, index: np.ndarray):
        self.base, self.index = base, np.asarray(index, np.int64)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.base.image_shape

    @property
    def dtype(self):  # type: ignore[override]
        return self.base.dtype

    def __len__(self) -> int:
        return len(self.index)

    def read(self, index: np.ndarray) -> np.ndarray:
        return self.base.read(self.index[np.asarray(index, np.int64)])

    def submit(self, index: np.ndarray, pool: ThreadPoolExecutor) -> Callable[[], np.ndarray]:
        return self.base.submit(self.index[np.asarray(index, np.int64)], pool)

    def paths(self) -> list | None:
        files = self.base.paths()
        return None if files is None else [files[int(i)] for i in self.index]

    def content_digests(self, index: np.ndarray) -> list[str]:
        return self.base.content_digests(self.index[np.asarray(index, np.int64)])

    def unit_pixels(self, index: np.ndarray, preprocessing) -> np.ndarray | None:
        return self.base.unit_pixels(self.index[np.asarray(index, np.int64)], preprocessing)


class _InMemory(ImageSource):
    """An array given whole (the old interface): chunks are views, with its own dtype."""

    def __init__(self, array: np.ndarray):
        self.array = array

    @property
    def dtype(self):  # type: ignore[override]
        return self.array.dtype

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    def __len__(self) -> int:
        return len(self.array)

    def read(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, np.int64)
        if len(index) and index[-1] - index[0] + 1 == len(index):
            return np.ascontiguousarray(self.array[int(index[0]): int(index[-1]) + 1])
        return np.ascontiguousarray(self.array[index])

    def submit(self, index: np.ndarray, pool: ThreadPoolExecutor) -> Callable[[], np.ndarray]:
        chunk = self.read(index)
        return lambda: chunk


class Dataset:
    """Preprocessed images (read on demand from an `ImageSource`, or an array given whole) and their labels."""

    def __init__(self, images: np.ndarray | ImageSource, labels: np.ndarray | None, source: str,
                 class_names: tuple[str, ...] = (), sha256: str | None = None, labels_from: str | None = None):
        self.source_images = images if isinstance(images, ImageSource) else _InMemory(np.asarray(images))
        self.labels = labels  # int64 [N], or None when the source has none
        self.source = source
        self.class_names = tuple(class_names)  # the class-folder (or labels-file) names, when labels came from them
        self.labels_from = labels_from  # where the labels came from, when they did not come with the array
        self._sha256 = sha256

    def __len__(self) -> int:
        return len(self.source_images)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.source_images.image_shape)

    @property
    def image_bytes(self) -> int:
        return int(np.prod(self.source_images.image_shape)) * self.source_images.dtype.itemsize

    def batches(self, size: int = DEFAULT_CHUNK, workers: int = DECODE_WORKERS, hash: bool = True) -> Iterator[np.ndarray]:
        """The images in order, `size` at a time (the last chunk may be shorter), read ahead in a thread pool.

        A full pass also computes the data set's sha256 when it is not known yet (unless `hash` is False).
        """
        if size < 1:
            raise ValueError(f"chunk size must be at least 1, not {size}")
        digest = None if self._sha256 is not None or not hash else self._start_digest()
        starts = range(0, len(self), size)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgeresnet-read") as pool:
            pending: deque[Callable[[], np.ndarray]] = deque()
            try:
                for start in starts:
                    pending.append(self.source_images.submit(np.arange(start, min(start + size, len(self))), pool))
                    if len(pending) > READ_AHEAD:
                        chunk = pending.popleft()()
                        if digest is not None:
                            digest.update(np.ascontiguousarray(chunk).tobytes())
                        yield chunk
                while pending:
                    chunk = pending.popleft()()
                    if digest is not None:
                        digest.update(np.ascontiguousarray(chunk).tobytes())
                    yield chunk
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        if digest is not None:
            self._sha256 = self._finish_digest(digest)

    def take(self, index: np.ndarray) -> np.ndarray:
        """The images at `index` (a small sample), as one array."""
        index = np.asarray(index, np.int64)
        chunks = list(self.subset(index).batches(DEFAULT_CHUNK, hash=False))
        if not chunks:
            return np.zeros((0, *self.source_images.image_shape), self.source_images.dtype)
        return np.concatenate(chunks)

    def subset(self, index: np.ndarray, source: str | None = None) -> "Dataset":
        """The rows `index` (ascending), read lazily from the same source."""
        index = np.asarray(index, np.int64)
        labels = None if self.labels is None else self.labels[index]
        return Dataset(SubsetSource(self.source_images, index), labels, source or self.source, self.class_names,
                       labels_from=self.labels_from)

    @property
    def files(self) -> list | None:
        """The image file of each row, for data read from files (None for arrays)."""
        return self.source_images.paths()

    def content_digests(self, index: np.ndarray | None = None) -> list[str]:
        """A digest of the source content (file bytes, or the array row as stored) of each row (at `index`)."""
        return self.source_images.content_digests(np.arange(len(self)) if index is None else np.asarray(index, np.int64))

    def unit_pixels(self, index: np.ndarray, preprocessing) -> np.ndarray | None:
        """Rows `index` before normalization (NHWC in [0, 1]) under `preprocessing`'s geometry, if the source has pixels."""
        return self.source_images.unit_pixels(np.asarray(index, np.int64), preprocessing)

    @property
    def images(self) -> np.ndarray:
        """Every image at once: for small data (tests, tools); the pipeline streams `batches` instead."""
        if isinstance(self.source_images, _InMemory):
            return self.source_images.array
        return self.take(np.arange(len(self)))

    def _start_digest(self):
        digest = hashlib.sha256()
        digest.update(f"{self.source_images.dtype}{self.shape}".encode())
        return digest

    def _finish_digest(self, digest) -> str:
        if self.labels is not None:
            digest.update(np.ascontiguousarray(self.labels.astype(np.int64)).tobytes())
        return digest.hexdigest()

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            for _ in self.batches():
                pass
        assert self._sha256 is not None  # a full pass over the data sets it
        return self._sha256

    def describe(self) -> DataSummary:
        return DataSummary(self.source, len(self), self.sha256, self.labels is not None)
