"""edgeresnet/preprocessing.py on images as phones, cameras and editors write them, and its resize options."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeresnet.preprocessing import Preprocessing, class_index_of_folder, folder_name, image_suffixes, is_image_name

RGB = Preprocessing((8, 8), 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


@pytest.fixture
def picture():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (10, 20, 3), dtype=np.uint8)


def test_exif_orientation_is_applied(tmp_path, picture):
    upright = Image.fromarray(picture)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned, tagged to be turned back
    exif = sideways.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    sideways.save(tmp_path / "phone.png", exif=exif)
    upright.save(tmp_path / "upright.png")
    assert np.array_equal(RGB.load_unit(tmp_path / "phone.png"), RGB.load_unit(tmp_path / "upright.png"))


@pytest.mark.parametrize("mode, expected_close", [("CMYK", True), ("P", False), ("RGBA", True), ("LA", False)])
def test_other_colour_modes_become_rgb(tmp_path, picture, mode, expected_close):
    image = Image.fromarray(picture)
    converted = image.convert(mode) if mode != "RGBA" else Image.fromarray(np.dstack([picture, np.full(picture.shape[:2], 90, np.uint8)]))
    path = tmp_path / f"x.{'jpg' if mode == 'CMYK' else 'png'}"
    converted.save(path, **({"transparency": 0} if mode == "P" else {}), **({"quality": 100} if mode == "CMYK" else {}))
    x = RGB.load_unit(path)
    assert x.shape == (8, 8, 1 if mode == "LA" else 3) and 0 <= x.min() and x.max() <= 1
    if expected_close:  # same colours, alpha dropped (as torchvision's loader does)
        reference = RGB.load_unit(_saved(tmp_path, image))
        assert np.abs(x - reference).max() < 0.1


def _saved(folder, image):
    image.save(folder / "ref.png")
    return folder / "ref.png"


@pytest.mark.parametrize("shape", [(1, 1), (1, 3000), (3000, 1), (7, 13)])
def test_odd_sizes_with_and_without_crop(tmp_path, shape):
    Image.fromarray(np.full(shape, 200, np.uint8)).save(tmp_path / "odd.png")
    for p in (RGB, Preprocessing((8, 8), 3, (0.0,) * 3, (1.0,) * 3, resize=10)):
        x = p.load_unit(tmp_path / "odd.png")
        assert x.shape == (8, 8, 1) and np.allclose(x, 200 / 255, atol=1e-5)
        assert p.load_image(tmp_path / "odd.png").shape == (3, 8, 8)


def test_interpolation_and_antialias_change_the_resize(tmp_path):
    stripes = np.zeros((60, 60), np.uint8)  # 7.5 source pixels per output pixel: samples fall between stripes unevenly
    stripes[:, ::2] = 255
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    gray = Preprocessing((8, 8), 1, (0.0,), (1.0,))
    smooth = gray.load_unit(tmp_path / "stripes.png")
    aliased = Preprocessing((8, 8), 1, (0.0,), (1.0,), antialias=False).load_unit(tmp_path / "stripes.png")
    bicubic = Preprocessing((8, 8), 1, (0.0,), (1.0,), interpolation="bicubic").load_unit(tmp_path / "stripes.png")
    assert np.allclose(smooth, 0.5, atol=0.02)  # antialiased: the stripes average out
    assert not np.allclose(aliased, 0.5, atol=0.1)  # sampled: the pattern aliases
    assert not np.array_equal(smooth, bicubic)
    with pytest.raises(ValueError, match="antialias false works with bilinear and nearest"):
        Preprocessing((8, 8), 1, (0.0,), (1.0,), interpolation="bicubic", antialias=False)


def test_old_manifests_without_the_new_fields_read_as_bilinear():
    d = RGB.to_dict()
    del d["interpolation"], d["antialias"]
    assert Preprocessing.from_dict(d) == RGB


@pytest.mark.parametrize("suffix, options", [
    (".tga", {}), (".ico", {}), (".pcx", {}), (".sgi", {}), (".qoi", {}), (".webp", {}), (".bmp", {}), (".tif", {}),
    (".gif", {}), (".ppm", {}), (".jp2", {}), (".avif", {}), (".jpeg", {"quality": 100}), (".png", {}),
])
def test_every_format_pillow_decodes_is_an_image(tmp_path, picture, suffix, options):
    from PIL import features

    needs = {".jp2": "jpg_2000", ".avif": "avif", ".webp": "webp"}.get(suffix)
    if needs and not features.check(needs):
        pytest.skip(f"this Pillow has no {needs}")
    path = tmp_path / f"picture{suffix.upper() if suffix == '.tga' else suffix}"
    Image.fromarray(picture).save(path, **options)
    assert is_image_name(path.name) and suffix in image_suffixes()
    pixels = RGB.load_unit(path)
    assert pixels.shape == (8, 8, 3) and 0.0 <= pixels.min() and pixels.max() <= 1.0


@pytest.mark.parametrize("name", ["notes.txt", "weights.pt", "scan.pdf", "figure.eps", "data.h5", "clip.mpg", "labels.csv"])
def test_files_pillow_cannot_decode_to_pixels_are_not_images(name):
    assert not is_image_name(name)


def test_class_folders_by_name_safe_name_or_index():
    classes = ["T-shirt/top", "Trouser", "Pullover"]
    assert folder_name("T-shirt/top") == "T-shirt_top"
    assert class_index_of_folder("T-shirt_top", classes) == 0  # the class name cannot be a folder name
    assert class_index_of_folder("Trouser", classes) == 1 and class_index_of_folder("2", classes) == 2
    assert class_index_of_folder("Coat", classes) is None and class_index_of_folder("7", classes) is None
    assert class_index_of_folder("t-shirt_top", classes) == 0 and class_index_of_folder("PULLOVER", classes) == 2
    assert class_index_of_folder("a", ["A", "a"]) == 1 and class_index_of_folder("b", ["B", "B "]) is None


@pytest.mark.parametrize("exif", [
    b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\xff\xff\xff\x0f\x06\x00\x00\x00\x00\x00\x00\x00",  # count past the end
    b"Exif\x00\x00II*\x00\xff\xff\xff\x7f",  # first directory past the end
    b"Exif\x00\x00" + bytes(range(50)),
], ids=["count-past-the-end", "directory-past-the-end", "garbage"])
def test_corrupt_exif_decodes_as_stored_without_a_word(tmp_path, picture, exif):
    import subprocess
    import sys

    Image.fromarray(picture).save(tmp_path / "camera.jpg", exif=exif, quality=95)
    Image.fromarray(picture).save(tmp_path / "plain.jpg", quality=95)
    assert np.array_equal(RGB.load_unit(tmp_path / "camera.jpg"), RGB.load_unit(tmp_path / "plain.jpg"))
    code = f"from edgeresnet.preprocessing import CIFAR; CIFAR.load_image({str(tmp_path / 'camera.jpg')!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr  # Pillow's "Corrupt EXIF data" stays quiet
