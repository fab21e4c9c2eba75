import gzip
import os
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from edgeresnet.calibration import open_dataset
from edgeresnet.errors import InputError, MissingDependency
from edgeresnet.models import get_entry
from edgeresnet.preprocessing import CIFAR

FMNIST = get_entry("resnet20-fmnist").preprocessing


def _write_idx(path, array):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_builtin_fashion_mnist_is_sampled_deterministically():
    a = open_dataset("fashion-mnist", FMNIST, limit=100, seed=3)
    b = open_dataset("fashion-mnist:train", FMNIST, limit=100, seed=3)
    c = open_dataset("fashion-mnist", FMNIST, limit=100, seed=4)
    assert a.images.shape == (100, 1, 28, 28) and a.labels.shape == (100,)
    assert a.sha256 == b.sha256 != c.sha256
    full = open_dataset("fashion-mnist:test", FMNIST)
    assert len(full) == 10_000 and full.source == "fashion-mnist:test"
    # Normalized with the model's own mean/std: pixel 0 maps to -mean/std.
    assert np.isclose(full.images.min(), -FMNIST.mean[0] / FMNIST.std[0], atol=1e-5)


def test_image_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("Bag", "Trouser"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 30), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    data = open_dataset(str(tmp_path), FMNIST)
    assert data.images.shape == (6, 1, 28, 28)
    # Sub-folders named after the model's classes take the model's class indices.
    assert sorted(set(data.labels.tolist())) == sorted([FMNIST.class_names.index("Bag"), FMNIST.class_names.index("Trouser")])


def test_rgb_images_get_imagenet_style_resize_and_crop(tmp_path):
    Image.new("RGB", (64, 48), (255, 0, 0)).save(tmp_path / "red.jpg")
    data = open_dataset(str(tmp_path), CIFAR)
    assert data.images.shape == (1, 3, 32, 32) and data.labels is None
    expected_red = (1.0 - CIFAR.mean[0]) / CIFAR.std[0]
    assert abs(float(data.images[0, 0].mean()) - expected_red) < 0.05


def test_arrays_npy_and_npz(tmp_path):
    floats = np.random.default_rng(0).standard_normal((10, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", floats)
    assert np.array_equal(open_dataset(str(tmp_path / "x.npy"), FMNIST).images, floats)
    pixels = np.random.default_rng(0).integers(0, 255, (10, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=pixels, labels=np.arange(10))
    data = open_dataset(str(tmp_path / "d.npz"), FMNIST, limit=4, seed=1)
    assert data.images.shape == (4, 1, 28, 28) and len(data.labels) == 4


def test_idx_files_with_labels_beside_them(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (12, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "my-images-idx3-ubyte.gz", pixels)
    _write_idx(tmp_path / "my-labels-idx1-ubyte.gz", np.arange(12, dtype=np.uint8) % 10)
    data = open_dataset(str(tmp_path / "my-images-idx3-ubyte.gz"), FMNIST)
    assert data.images.shape == (12, 1, 28, 28) and data.labels.tolist() == [i % 10 for i in range(12)]


@pytest.mark.parametrize("make,message", [
    (lambda p: p.mkdir(), "no images found"),
    (lambda p: (p.mkdir(), (p / "a.png").write_text("not an image")), "not a readable image"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((3, 3, 28, 28), np.float32)), "shape"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((3, 1, 28, 28), np.int16)), "dtype int16"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((0, 1, 28, 28), np.float32)), "empty"),
    (lambda p: np.save(p.with_suffix(".npy"), np.full((2, 1, 28, 28), np.nan, np.float32)), "NaN"),
    (lambda p: p.with_name("d-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00"), "truncated"),
])
def test_bad_data_names_the_file(tmp_path, make, message):
    target = tmp_path / "d"
    make(target)
    spec = next(p for p in tmp_path.iterdir())
    with pytest.raises(InputError, match=message) as err:
        open_dataset(str(spec), FMNIST)
    assert str(spec) in str(err.value)


def test_missing_dataset_names_the_apt_package(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGERESNET_FASHION_MNIST", str(tmp_path))
    with pytest.raises(MissingDependency, match="apt-get install dataset-fashion-mnist"):
        open_dataset("fashion-mnist", FMNIST, limit=1)


def test_zero_samples_is_refused():
    with pytest.raises(InputError, match="at least 1"):
        open_dataset("fashion-mnist", FMNIST, limit=0)


def _class_folders(root, names, count=1, empty=()):
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(root / name / f"{i}.png")
    for name in empty:
        (root / name).mkdir(parents=True)


@pytest.mark.parametrize("names, empty, preprocessing, expected", [
    # folders named by class index: numeric order, '10' after '9'
    ([str(i) for i in range(12)], (), replace(FMNIST, class_names=()), {str(i): i for i in range(12)}),
    # an empty class folder keeps its place in the sorted names
    (["apple", "cherry"], ("banana",), CIFAR, {"apple": 0, "cherry": 2}),
    # the model's class names, their folder-safe form, and indices
    (["T-shirt_top", "Bag", "9"], (), FMNIST, {"T-shirt_top": 0, "Bag": 8, "9": 9}),
])
def test_class_folders_as_users_name_them(tmp_path, names, empty, preprocessing, expected):
    _class_folders(tmp_path, names, empty=empty)
    data = open_dataset(str(tmp_path), preprocessing)
    files = sorted(tmp_path.glob("*/0.png"))  # the order the folder is read in
    by_folder = {f.parent.name: int(label) for f, label in zip(files, data.labels)}
    assert by_folder == expected
    if empty:
        assert "without images: banana" in data.labels_from and data.class_names == ("apple", "banana", "cherry")


@pytest.mark.parametrize("folders, message", [
    (["Bag", "Trouser", "Sneakers"], "class folder.s. Sneakers are neither one of the model's 10 class names"),  # "Sneaker"
    (["Bag", "8", "Trouser"], "class folders 8, Bag are the same class of the model"),
])
def test_class_folders_that_do_not_name_the_models_classes_one_to_one_are_refused(tmp_path, folders, message):
    _class_folders(tmp_path, folders)
    with pytest.raises(InputError, match=message):
        open_dataset(str(tmp_path), FMNIST)


def test_splits_one_level_too_deep_are_refused_not_labelled_by_split(tmp_path):
    for split in ("train", "val"):
        _class_folders(tmp_path / split, ["Bag", "Trouser"])
    with pytest.raises(InputError, match=r"folders train, val each hold the same class folders \(Bag, Trouser\).*pass one"):
        open_dataset(str(tmp_path), FMNIST)
    assert open_dataset(str(tmp_path / "val"), FMNIST).labels.tolist() == [8, 1]
    # Classes with sub-folders of their own (breeds under each animal) stay labelled by the top folder.
    _class_folders(tmp_path / "animals" / "cat", ["siamese", "persian"])
    _class_folders(tmp_path / "animals" / "dog", ["beagle", "pug"])
    assert open_dataset(str(tmp_path / "animals"), CIFAR).labels.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("name, message", [("IMG_0001.HEIC", "pillow-heif"), ("DSC_0001.NEF", "camera raw"),
                                           ("logo.svg", "does not decode")])
def test_photos_pillow_cannot_decode_are_refused_not_skipped(tmp_path, name, message):
    _class_folders(tmp_path, ["Bag"])
    (tmp_path / "Bag" / name).write_bytes(b"\x00" * 64)
    for spec in (tmp_path, tmp_path / "Bag" / name):
        with pytest.raises(InputError, match=f"{name}: .*{message}"):
            open_dataset(str(spec), FMNIST)


@pytest.mark.parametrize("make, kind", [(lambda p: os.symlink(p.parent / "gone.png", p), "a broken symbolic link"),
                                        (lambda p: os.mkfifo(p), "a pipe, socket or device")])
def test_an_image_name_that_is_no_regular_file_is_refused_not_skipped_or_opened(tmp_path, make, kind):
    _class_folders(tmp_path, ["Bag", "Trouser"])
    make(tmp_path / "Bag" / "odd.png")
    with pytest.raises(InputError, match=f"odd.png: not a regular file \\({kind}\\)"):
        open_dataset(str(tmp_path), FMNIST)
