"""Calibration and evaluation data: readers behind one interface, chosen by what the user passes.

`open_dataset(spec, preprocessing)` accepts
  * ``fashion-mnist`` (the training split) or ``fashion-mnist:train|test``: the built-in set;
  * a folder of images in any format Pillow decodes (8 or 16 bits per channel), optionally one sub-folder
    per class (see `folder_classes`); images
    both at the top level and in class folders are refused, as the labels would be ambiguous;
  * a ``.npy`` array, or a ``.npz`` with ``images`` (or ``x``) and optionally ``labels`` (or ``y``):
    float32 already preprocessed [N, C, H, W], or uint8 pixels [N, H, W(, C)] preprocessed here.
    A float array with no negative value whose maximum is more than twice (plus one) the largest
    value the model's preprocessing can produce is refused: that is raw 0..255 pixels saved as
    float, which the model would take as preprocessed;
  * an IDX images file (MNIST format, optionally .gz); a labels file beside it named with
    ``labels`` instead of ``images`` supplies labels.

Sampling is deterministic: `limit` images drawn by a seeded permutation, in source order.
Every dataset carries the sha256 of its exact tensors, recorded in reports and manifests.

Nothing is decoded or held whole (`edgeresnet.calibration.stream`): a `Dataset` keeps its
labels and reads preprocessed batches on demand; `.npy` files and plain IDX files are
memory-mapped, as are the members of an uncompressed `.npz` (`np.savez`); a compressed
`.npz` member or a `.gz` IDX file is read whole as raw pixels (uint8: a quarter of the
float32 size), and folders are decoded by a small thread pool while the model computes.
Headers are checked when the data set is opened (every image file's, so a non-image or a
decompression bomb fails at once); a file that is damaged beyond its header fails, with
its name, when the stream reaches it.
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from edgeresnet.errors import InputError
from edgeresnet.preprocessing import (MAX_IMAGE_PIXELS, ImageRefused, Preprocessing, class_index_of_folder, folder_name,
                                      is_image_name)

from .fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from .fashion_mnist import load_fashion_mnist
from .idx import map_idx, read_idx
from .labels import beside, labels_of, read_labels
from .stream import DECODE_WORKERS, ArraySource, Dataset, FileSource, ImageSource, SubsetSource, decode_error

# Photos this Pillow cannot decode, found among images: refused by name rather than skipped.
_CONVERT = "convert them to PNG or JPEG"
UNDECODED = {**dict.fromkeys((".heic", ".heif"), f"HEIC photos (iPhone) need the pillow-heif plug-in, or {_CONVERT}"),
             **dict.fromkeys((".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf"), f"a camera raw file; {_CONVERT}"),
             **dict.fromkeys((".jxl", ".exr", ".hdr", ".svg"), f"an image format Pillow does not decode; {_CONVERT}")}
NO_IMAGES = "no images found (no file with the extension of an image format Pillow reads, hidden files aside)"


def sample_indices(total: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).permutation(total)[:limit])


def _check_shape(shape: tuple[int, ...], preprocessing: Preprocessing, source: str) -> None:
    if len(shape) != 4 or tuple(shape[1:]) != preprocessing.input_shape:
        raise InputError(
            f"{source}: preprocessed array has shape {tuple(shape)}, the model takes [N, "
            f"{', '.join(map(str, preprocessing.input_shape))}]"
        )


def preprocessed_range(preprocessing: Preprocessing) -> tuple[float, float]:
    """The smallest and largest value the model's preprocessing can give a pixel in [0, 1]."""
    mean, std = np.asarray(preprocessing.mean), np.asarray(preprocessing.std)
    ends = np.concatenate([(0.0 - mean) / std, (preprocessing.pixel_scale - mean) / std])
    return float(ends.min()), float(ends.max())


def _check_floats(data: Dataset, preprocessing: Preprocessing, source: str) -> None:
    """One pass over float data, chunk by chunk (it also hashes it): no NaN/Inf, and not raw 0..255 pixels.

    Float arrays are taken as preprocessed; raw 0..255 pixels saved as float are not, and would score ~chance.
    """
    low, high = np.inf, -np.inf
    for chunk in data.batches(256):
        if not np.isfinite(chunk).all():
            raise InputError(f"{source}: array holds NaN or Inf values")
        low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
    _, expected_high = preprocessed_range(preprocessing)
    if low >= 0 and high > 2 * expected_high + 1:
        raise InputError(
            f"{source}: float values {low:g}..{high:g} look like raw 0..255 pixels, but the model's preprocessing "
            f"gives at most {expected_high:.3g}; save uint8 pixels to have them preprocessed, or preprocess them")


def _pixel_source(pixels: np.ndarray, index: np.ndarray, preprocessing: Preprocessing, source: str) -> ImageSource:
    """uint8 pixels [N, H, W(, C)], normalized chunk by chunk as they are read; refused at once when they do not fit."""
    def normalize(rows: np.ndarray) -> np.ndarray:
        try:
            return preprocessing.normalize_uint8(rows)
        except ValueError as exc:
            raise InputError(f"{source}: {exc}") from None

    if pixels.ndim not in (3, 4):
        raise InputError(f"{source}: uint8 pixels must be [N, H, W] or [N, H, W, C], not {list(pixels.shape)}")
    return SubsetSource(ArraySource(pixels, normalize), index)


def _read_builtin(spec: str, preprocessing: Preprocessing, limit, seed) -> Dataset:
    split = spec.partition(":")[2] or "train"
    images, labels = load_fashion_mnist(split)
    index = sample_indices(len(images), limit, seed)
    return Dataset(_pixel_source(images, index, preprocessing, spec), labels[index], f"fashion-mnist:{split}")


def _probe_image(file: Path) -> None:
    """The header only: a file that is no image, or a decompression bomb, fails before any decoding."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise ImageRefused(f"{img.width}x{img.height} is larger than {MAX_IMAGE_PIXELS:,} pixels; "
                                       f"refused as a possible decompression bomb")
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputError(f"{file}: larger than {MAX_IMAGE_PIXELS:,} pixels; refused as a possible decompression bomb") from None
    except ImageRefused as exc:
        raise InputError(f"{file}: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{file}: not a readable image ({exc})") from None


def _image_loader(preprocessing: Preprocessing) -> Callable[[Path], np.ndarray]:
    def load(file: Path) -> np.ndarray:
        try:
            return preprocessing.load_image(file)
        except (OSError, ValueError, SyntaxError) as exc:
            raise decode_error(file, exc) from None
    return load


def image_files(folder: Path) -> list[Path]:
    """The image files under `folder`, sorted; hidden files and folders (.DS_Store, .ipynb_checkpoints, macOS's
    ._ files) are skipped, symlinked folders followed (each real folder once)."""
    found: list[Path] = []
    seen: set[str] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        images = [Path(root) / n for n in sorted(names) if not n.startswith(".") and is_image_name(n)]
        odd = next((p for p in images if not p.is_file()), None)
        if odd is not None:  # skipped, it would change the data set without a word; opened, a pipe would block
            kind = "a broken symbolic link" if odd.is_symlink() and not odd.exists() else "a pipe, socket or device"
            raise InputError(f"{odd}: not a regular file ({kind})")
        found.extend(images)
        undecoded = next((n for n in sorted(names) if not n.startswith(".") and not is_image_name(n)
                          and n.lower().endswith(tuple(UNDECODED))), None)
        if undecoded is not None:
            raise InputError(f"{Path(root) / undecoded}: {UNDECODED[Path(undecoded).suffix.lower()]}; leaving such images "
                             f"out would change the data set without a word")
    return sorted(found)


def _read_folder(path: Path, preprocessing: Preprocessing, limit, seed, labels_file: Path | None = None) -> Dataset:
    files = image_files(path)
    if not files:
        raise InputError(f"{path}: {NO_IMAGES}")

    def class_of(file: Path) -> str | None:  # the top-level folder under `path`, however deep the file
        parts = file.relative_to(path).parts
        return parts[0] if len(parts) > 1 else None

    classes = sorted({c for c in map(class_of, files) if c is not None})
    at_root = [p for p in files if class_of(p) is None]
    if labels_file is None and not classes:
        labels_file = beside(path)
    table = read_labels(labels_file, path, files, preprocessing.class_names) if labels_file is not None else None
    if table is None and classes and at_root:
        raise InputError(f"{path}: {len(at_root)} image(s) at the top level (e.g. {at_root[0].name}) beside "
                         f"{len(classes)} class folder(s); move them into a class folder for labelled data, "
                         f"or keep only loose images for unlabelled data")
    if table is None and len(classes) == 1 and all(len(p.relative_to(path).parts) > 2 for p in files):
        # One folder holding everything is a wrapper (an archive's top folder), not one class.
        return _read_folder(path / classes[0], preprocessing, limit, seed)
    if table is None and len(classes) > 1 and all(len(p.relative_to(path).parts) > 2 for p in files):
        _refuse_splits(path, files, classes)
    labelled = table is not None or bool(classes)
    labels_from: str | None
    labels: np.ndarray | None
    if table is not None:
        class_names, labels_from = table.class_names, f"{table.file} (by {table.by})"
    elif labelled:
        empty = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in classes)
        class_index, class_names, labels_from = folder_classes(path, sorted([*classes, *empty]), preprocessing.class_names)
        if empty:
            labels_from += f"; {len(empty)} class folder(s) without images: {', '.join(empty[:5])}"
    else:
        class_names, labels_from = (), None
    chosen = [files[i] for i in sample_indices(len(files), limit, seed)]
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
        for _ in pool.map(_probe_image, chosen):  # in order: the first bad file is the one named
            pass
    if table is not None:
        labels = labels_of(table, chosen)
    else:
        labels = np.array([class_index[str(class_of(p))] for p in chosen], np.int64) if labelled else None
    source = FileSource(chosen, _image_loader(preprocessing), preprocessing.input_shape)
    return Dataset(source, labels, str(path), class_names, labels_from=labels_from)


def _refuse_splits(path: Path, files: list[Path], tops: list[str]) -> None:
    """Folders one level too deep (train/cat, train/dog, val/cat, val/dog) would label every image by its split: when
    every top folder holds the same sub-folders, those are the classes, and the user means one of the top folders."""
    inner = {top: {p.relative_to(path).parts[1] for p in files if p.relative_to(path).parts[0] == top} for top in tops}
    shared = set.intersection(*inner.values())
    if len(shared) > 1 and all(names == shared for names in inner.values()):
        raise InputError(f"{path}: its folders {', '.join(tops[:4])} each hold the same class folders "
                         f"({', '.join(sorted(shared)[:4])}{' ...' if len(shared) > 4 else ''}); they look like splits, "
                         f"not classes: pass one of them (e.g. {path / tops[-1]})")


def folder_classes(path: Path, folders: list[str], model_class_names: tuple[str, ...]
                   ) -> tuple[dict[str, int], tuple[str, ...], str]:
    """The class index of each class folder, the class names, and how they were found.

    With the model's class names: each folder by its class name, the name made folder-safe ('T-shirt_top' for
    'T-shirt/top') or its class index; a folder that is none of these is refused when others are (its label
    would be a guess). Otherwise folders named 0, 1, 2 ... are class indices (in numeric order: '10' after '9'),
    and any other names are taken in sorted order, empty folders included so that no class shifts.
    """
    if model_class_names:
        index = {name: class_index_of_folder(name, model_class_names) for name in folders}
        unknown = [name for name, i in index.items() if i is None]
        found = {name: i for name, i in index.items() if i is not None}
        twice = sorted(name for name, i in found.items() if list(found.values()).count(i) > 1)
        if twice:
            raise InputError(f"{path}: class folders {', '.join(twice[:4])} are the same class of the model; merge them")
        if not unknown:
            return found, tuple(model_class_names), "class folders (by the model's class names or indices)"
        if found:
            known = ", ".join(folder_name(n) for n in model_class_names[:6])
            raise InputError(f"{path}: class folder(s) {', '.join(unknown[:5])} are neither one of the model's "
                             f"{len(model_class_names)} class names ({known}{' ...' if len(model_class_names) > 6 else ''}) "
                             f"nor a class index, while the other folders are; rename them")
    if all(name.isdigit() for name in folders):
        return {name: int(name) for name in folders}, (), "class folders (named by class index)"
    return {name: i for i, name in enumerate(folders)}, tuple(folders), "class folders (sorted folder names)"


def _read_files(paths: list[Path], preprocessing: Preprocessing, limit: int | None) -> Dataset:
    """Image files and folders given together: every image, unlabelled, in sorted file order; `limit`: the first ones."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise InputError(f"{path}: {NO_IMAGES}")
            files.extend(found)
        elif is_image_name(path.name):
            files.append(path)
        elif path.suffix.lower() in UNDECODED:
            raise InputError(f"{path}: {UNDECODED[path.suffix.lower()]}")
        else:
            raise InputError(f"{path}: not an image file (no image format Pillow reads has its extension) or a folder "
                             f"of images; arrays and IDX files are given alone")
    files = sorted(dict.fromkeys(files))[:limit]
    for file in files:
        _probe_image(file)
    source = FileSource(files, _image_loader(preprocessing), preprocessing.input_shape)
    return Dataset(source, None, ", ".join(map(str, paths)) if len(paths) < 4 else f"{len(files)} image files")


def _npz_member(path: Path, archive, key: str) -> np.ndarray:
    """An .npz member memory-mapped when it is stored uncompressed (np.savez), else read whole."""
    info = archive.zip.getinfo(f"{key}.npy") if hasattr(archive, "zip") else None
    if info is None or info.compress_type != zipfile.ZIP_STORED:
        return archive[key]
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
        f.seek(start)
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(f))
        offset = f.tell()
    if dtype.hasobject:
        return archive[key]  # refused by np.load's allow_pickle=False, with its own message
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _read_array(path: Path, preprocessing: Preprocessing, limit, seed) -> Dataset:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                key = next((k for k in ("images", "x", "arr_0") if k in archive), None)
                if key is None:
                    raise InputError(f"{path}: .npz needs an 'images' (or 'x') array; it has {', '.join(archive.files) or 'none'}")
                images = _npz_member(path, archive, key)
                label_key = next((k for k in ("labels", "y") if k in archive), None)
                labels = archive[label_key] if label_key else None
        else:
            images, labels = np.load(path, mmap_mode="r", allow_pickle=False), None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a readable NumPy array ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if images.size == 0:
        raise InputError(f"{path}: the array is empty")
    if labels is not None and (labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer)):
        raise InputError(f"{path}: labels must be integers, one per image")
    index = sample_indices(len(images), limit, seed)
    labels = None if labels is None else np.asarray(labels[index]).astype(np.int64)
    if images.dtype == np.uint8:
        data = Dataset(_pixel_source(images, index, preprocessing, str(path)), labels, str(path))
        _check_shape(data.shape, preprocessing, str(path))
        return data
    if images.dtype not in (np.float32, np.float64, np.float16):
        raise InputError(f"{path}: array dtype {images.dtype} is neither uint8 pixels nor float32 preprocessed tensors")
    _check_shape(images.shape, preprocessing, str(path))
    data = Dataset(SubsetSource(ArraySource(images), index), labels, str(path))
    _check_floats(data, preprocessing, str(path))
    return data


def _read_idx_file(path: Path, preprocessing: Preprocessing, limit, seed) -> Dataset:
    pixels = map_idx(path)
    if pixels.ndim not in (3, 4) or pixels.dtype != np.uint8:
        raise InputError(f"{path}: IDX images must be uint8 [N, H, W] or [N, H, W, C], not {pixels.dtype} {list(pixels.shape)}")
    if len(pixels) == 0:
        raise InputError(f"{path}: the IDX file holds no images")
    labels = None
    labels_file = path.with_name(path.name.replace("images", "labels").replace("idx3", "idx1"))
    if labels_file != path and labels_file.is_file():
        labels = read_idx(labels_file).astype(np.int64)
        if labels.shape != (len(pixels),):
            raise InputError(f"{labels_file}: {len(labels)} labels for {len(pixels)} images")
    index = sample_indices(len(pixels), limit, seed)
    return Dataset(_pixel_source(pixels, index, preprocessing, str(path)), None if labels is None else labels[index], str(path))


Reader = Callable[[Path, Preprocessing, "int | None", int], Dataset]


def _choose_reader(path: Path) -> Reader:
    name = path.name.lower()
    if path.is_dir():
        return _read_folder
    if name.endswith((".npy", ".npz")):
        return _read_array
    if "idx" in name or name.endswith("-ubyte") or name.endswith("-ubyte.gz"):
        return _read_idx_file
    if path.suffix.lower() in UNDECODED:
        raise InputError(f"{path}: {UNDECODED[path.suffix.lower()]}")
    raise InputError(f"{path}: unknown data format; pass a folder of images, a .npy/.npz array, an IDX file or 'fashion-mnist'")


def open_dataset(spec: str, preprocessing: Preprocessing, limit: int | None = None, seed: int = 0,
                 labels: str | Path | None = None) -> Dataset:
    """Read (a deterministic sample of) a data source, preprocessed for the model; `labels`: a CSV/TSV of
    filename,label for a folder of images (see labels.py)."""
    if limit is not None and limit < 1:
        raise InputError(f"the number of samples must be at least 1, not {limit}")
    if spec == "fashion-mnist" or spec.startswith("fashion-mnist:"):
        if labels is not None:
            raise InputError("--labels goes with a folder of images, not the built-in data set")
        return _read_builtin(spec, preprocessing, limit, seed)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: no such file or folder (and not a built-in data set such as 'fashion-mnist')")
    if labels is not None:
        if not path.is_dir():
            raise InputError(f"--labels goes with a folder of images, not {path}")
        if not Path(labels).is_file():
            raise InputError(f"{labels}: labels file not found")
        return _read_folder(path, preprocessing, limit, seed, Path(labels))
    if path.is_file() and is_image_name(path.name):
        return _read_files([path], preprocessing, limit)
    return _choose_reader(path)(path, preprocessing, limit, seed)


def open_inputs(specs: list[str], preprocessing: Preprocessing, limit: int | None = None) -> Dataset:
    """What `run --input` takes: one data source (a folder, an array, an IDX file, the built-in set), or image
    files and folders together; the first `limit` inputs in sorted file order."""
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}")
    if len(specs) == 1 and not (Path(specs[0]).is_file() and is_image_name(specs[0])):
        data = open_dataset(specs[0], preprocessing)
        return data if limit is None or limit >= len(data) else data.subset(np.arange(limit))
    missing = [s for s in specs if not Path(s).exists()]
    if missing:
        raise InputError(f"{missing[0]}: no such file or folder")
    return _read_files([Path(s) for s in specs], preprocessing, limit)


__all__ = ["Dataset", "FASHION_MNIST_CLASSES", "ImageSource", "image_files", "map_idx", "open_dataset", "open_inputs", "read_idx", "sample_indices"]
