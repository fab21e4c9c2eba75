"""Fashion-MNIST as Debian's `dataset-fashion-mnist` package installs it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeresnet.errors import InputError, MissingDependency

from .idx import read_idx

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
ROOT_ENV = "EDGERESNET_FASHION_MNIST"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def dataset_root(root: str | Path | None = None) -> Path:
    return Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise MissingDependency(
        f"Fashion-MNIST file {stem}[.gz] not found in {root}: install it with "
        f"'apt-get install dataset-fashion-mnist' or point {ROOT_ENV} at the IDX files"
    )


def load_fashion_mnist(split: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of the 'train' or 'test' split."""
    if split not in _FILES:
        raise InputError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}")
    folder = dataset_root(root)
    images_file, labels_file = (_find(folder, stem) for stem in _FILES[split])
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(f"{folder}: Fashion-MNIST {split} images and labels do not match")
    return images, labels.astype(np.int64)
