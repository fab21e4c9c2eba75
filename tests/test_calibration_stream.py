"""Streamed data sets (issue 14): the same tensors and hashes as reading everything at once, memory bounded by
the batch, batched calibration on a dynamic-batch copy, and a damaged file met mid-stream."""

import hashlib
import io
import tracemalloc

import numpy as np
import onnx
import pytest
from PIL import Image

from edgeresnet.calibration import Dataset, open_dataset, sample_indices
from edgeresnet.calibration.fashion_mnist import load_fashion_mnist
from edgeresnet.calibrators import calibrate, create_calibrator, tensors_to_calibrate
from edgeresnet.errors import InputError
from edgeresnet.models import get_entry
from edgeresnet.preprocessing import IMAGENET, Preprocessing
from edgeresnet.quant_scheme import calibration_options
from edgeresnet.runners import dynamic_batch_copy

from helpers import run_cli

FMNIST = get_entry("resnet20-fmnist").preprocessing


def in_memory_sha256(images: np.ndarray, labels: np.ndarray | None) -> str:
    """The digest as the readers computed it when they held the whole data set (before streaming)."""
    digest = hashlib.sha256()
    digest.update(f"{images.dtype}{images.shape}".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    if labels is not None:
        digest.update(np.ascontiguousarray(labels.astype(np.int64)).tobytes())
    return digest.hexdigest()


def _photo_folder(folder, count=14, corrupt_at=None):
    rng = np.random.default_rng(1)
    for i in range(count):
        cls = folder / ("Bag" if i % 2 else "Coat")
        cls.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(buffer, "JPEG")
        data = buffer.getvalue()
        if i == corrupt_at:
            data = data[: len(data) * 2 // 3]  # header intact, scan data cut: fails only when decoded
        (cls / f"{i:03d}.jpg").write_bytes(data)


@pytest.mark.parametrize("limit", [None, 5])
def test_folder_streams_the_same_tensors_and_hash(tmp_path, limit):
    _photo_folder(tmp_path)
    data = open_dataset(str(tmp_path), IMAGENET, limit=limit, seed=2)
    files = sorted(tmp_path.rglob("*.jpg"))
    chosen = [files[i] for i in sample_indices(len(files), limit, 2)]
    expected = np.stack([IMAGENET.load_image(f) for f in chosen])
    labels = np.array([0 if f.parent.name == "Bag" else 1 for f in chosen])
    assert data.sha256 == in_memory_sha256(expected, labels)
    assert np.array_equal(np.concatenate(list(data.batches(3))), expected)
    assert data.labels.tolist() == labels.tolist() and data.class_names == ("Bag", "Coat")


def test_npy_npz_and_fashion_mnist_hash_as_before(tmp_path):
    floats = np.random.default_rng(0).standard_normal((40, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", floats)
    index = sample_indices(40, 13, 5)
    assert open_dataset(str(tmp_path / "x.npy"), FMNIST, limit=13, seed=5).sha256 == in_memory_sha256(floats[index], None)

    pixels = np.random.default_rng(1).integers(0, 255, (40, 28, 28), dtype=np.uint8)
    for save in (np.savez, np.savez_compressed):  # stored members are memory-mapped, compressed ones read whole
        save(tmp_path / "p.npz", images=pixels, labels=np.arange(40) % 10)
        data = open_dataset(str(tmp_path / "p.npz"), FMNIST, limit=13, seed=5)
        assert data.sha256 == in_memory_sha256(FMNIST.normalize_uint8(pixels[index]), index % 10)

    images, labels = load_fashion_mnist("test")
    index = sample_indices(len(images), 300, 7)
    data = open_dataset("fashion-mnist:test", FMNIST, limit=300, seed=7)
    assert data.sha256 == in_memory_sha256(FMNIST.normalize_uint8(images[index]), labels[index])


def test_a_full_pass_hashes_once_and_a_broken_pass_does_not(tmp_path):
    images = np.random.default_rng(0).standard_normal((10, 1, 28, 28)).astype(np.float32)
    data = Dataset(images, np.arange(10), "array")
    for chunk in data.batches(4):
        break  # abandoned: no digest from a partial pass
    assert data._sha256 is None
    list(data.batches(4))
    assert data._sha256 == in_memory_sha256(images, np.arange(10))


def test_reading_a_large_memory_mapped_array_holds_one_batch(tmp_path):
    """A 4,000-image uint8 .npy (197 MB as preprocessed float32) is read in batches of 8 without materializing it:
    the peak is a few batches (read ahead, normalization temporaries), not the data set."""
    count, side = 4000, 64
    pre = Preprocessing(input_size=(side, side), channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    pixels = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(count, side, side, 3))
    pixels[:] = 7
    pixels.flush()
    del pixels
    tracemalloc.start()
    try:
        data = open_dataset(str(tmp_path / "big.npy"), pre)
        rows = 0
        for chunk in data.batches(8):
            rows += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    float_bytes = count * 3 * side * side * 4
    batch_bytes = 8 * 3 * side * side * 4
    assert rows == count and data.sha256 is not None
    assert peak < 16 * batch_bytes < float_bytes / 25, (peak, batch_bytes, float_bytes)


def test_batched_calibration_gives_the_unbatched_ranges():
    from edgeresnet.export import export_onnx_model
    from edgeresnet.models import load_model
    from edgeresnet.targets import get_quant_scheme

    model = onnx.shape_inference.infer_shapes(export_onnx_model(load_model("resnet20-fmnist"), batch=1))
    data = open_dataset("fashion-mnist", FMNIST, limit=70, seed=3)
    scheme = get_quant_scheme("onnxruntime")
    tensors = tensors_to_calibrate(model, scheme.op_types)
    batched_model = dynamic_batch_copy(model)
    assert batched_model is not None
    for method in ("minmax", "percentile"):
        one = calibrate(model, tensors, data, 1, create_calibrator(calibration_options(method)))
        batched = calibrate(batched_model, tensors, data, 32, create_calibrator(calibration_options(method)))
        assert (one.samples, one.half_samples) == (batched.samples, batched.half_samples) == (70, 35)
        for ranges, other in ((one.ranges, batched.ranges), (one.half_ranges, batched.half_ranges)):
            assert ranges.keys() == other.keys()
            for name in ranges:
                np.testing.assert_allclose(ranges[name], other[name], rtol=1e-5, atol=1e-6, err_msg=f"{method} {name}")


def test_a_corrupt_jpeg_mid_stream_is_one_line_exit_2_and_nothing_written(tmp_path):
    calib, evaluation = tmp_path / "calib", tmp_path / "eval"
    _photo_folder(calib, count=8)
    _photo_folder(evaluation, count=12, corrupt_at=7)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "out"
    result = run_cli("compile", "--target", "ort-cpu", "--model", "resnet20", "--calib", str(calib), "--eval",
                     str(evaluation), "--out", str(out), env={"TMPDIR": str(tmpdir)}, timeout=600)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()  # progress lines first (calibration ran), then the error
    errors = [line for line in lines if line.startswith("edgeresnet: error:")]
    assert errors == [lines[-1]] and "Traceback" not in result.stderr, result.stderr
    assert "007.jpg" in errors[0] and "not a readable image" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "eval", "tmp"]  # no artifact, staging or lock
    assert [p.name for p in tmpdir.iterdir() if p.name != ".ses"] == []


@pytest.mark.parametrize("read", ["batches", "unit_pixels"])
def test_an_image_damaged_beyond_its_header_fails_by_name_on_every_path(tmp_path, read):
    """The stream (calibration, evaluation) and the preprocessing check's raw pixels name the file alike."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(tmp_path / "a.png")
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (300, 300), dtype=np.uint8)).save(buffer, format="JPEG")
    (tmp_path / "b.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # the header decodes
    data = open_dataset(str(tmp_path), get_entry("resnet20-fmnist").preprocessing)
    with pytest.raises(InputError, match=r"b\.jpg: not a readable image \(image file is truncated"):
        if read == "batches":
            list(data.batches(8))
        else:
            data.unit_pixels(np.arange(len(data)), get_entry("resnet20-fmnist").preprocessing)
