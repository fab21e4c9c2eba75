"""Bring your own model: head, input and preprocessing described by a model card or options, carried into the
artifact; data that would be silently wrong is converted right or refused; an FP32 score near chance stops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from edgeresnet.artifact import MANIFEST
from edgeresnet.calibration import open_dataset
from edgeresnet.errors import InputError
from edgeresnet.models import ModelDescription, load_model
from edgeresnet.models.resnet import build_resnet
from edgeresnet.pipeline.frontend import calibration_data, chance_gate, evaluation_data
from edgeresnet.preprocessing import IMAGENET, Preprocessing
from helpers import reference_for_input, run_cli


def _random_checkpoint(path: Path, arch: str, classes: int, seed: int = 0) -> Path:
    """Random weights under torchvision's key names, as a fine-tuned checkpoint would carry them."""
    torch.manual_seed(seed)
    model = build_resnet(arch, num_classes=classes)
    for module in model.modules():  # non-trivial BatchNorm statistics, so folding is exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.running_var, 0.5, 2.0)
    torch.save(model.state_dict(), path)
    return path


def _pixels(path: Path, count: int, size: int, labels: int | None = None) -> Path:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    if labels is None:
        np.save(path, images)
    else:
        np.savez(path, images=images, labels=rng.integers(0, labels, count))
    return path


def _onnx_io(path: Path) -> tuple[list[int], list[int]]:
    graph = onnx.load(path, load_external_data=False).graph
    dims = lambda value: [d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    return dims(graph.input[0]), dims(graph.output[0])


def _compile_own(tmp_path: Path, target: str, arch: str, classes: int, size: int, *extra: str, timeout: int = 1800):
    weights = _random_checkpoint(tmp_path / f"{arch}-{classes}.pth", arch, classes)
    (tmp_path / "classes.txt").write_text("".join(f"class-{i}\n" for i in range(classes)))
    card = tmp_path / "card.toml"
    card.write_text(f'preset = "imagenet"\ninput_size = [{size}, {size}]\nclass_names_file = "classes.txt"\n'
                    'mean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n')
    out = tmp_path / "art"
    result = run_cli("compile", "--target", target, "--model", arch, "--weights", str(weights), "--card", str(card),
                     "--calib", str(_pixels(tmp_path / "calib.npy", 32, size)),
                     "--eval", str(_pixels(tmp_path / "eval.npz", 16, size, labels=classes)),
                     "--allow-low-fp32", *extra, "--out", str(out), timeout=timeout)
    assert result.returncode == 0, result.stderr
    return out, card


def _check_carried(out: Path, card: Path, classes: int, size: int) -> dict:
    manifest = json.loads((out / MANIFEST).read_text())
    given = manifest["input"]
    assert given["input_size"] == [size, size] and given["channels"] == 3 and given["num_classes"] == classes
    assert given["mean"] == [0.5, 0.5, 0.5] and given["std"] == [0.25, 0.25, 0.25] and given["pixel_scale"] == 1.0
    assert given["resize"] == round(256 * size / 224)  # the preset's resize/crop ratio, scaled to the input
    assert given["class_names"] == [f"class-{i}" for i in range(classes)]
    assert given["sources"]["num_classes"].startswith("fc.weight of ")  # inferred, and said so
    assert given["sources"]["normalization"] == f"model card {card}"
    report = json.loads((out / "report.json").read_text())
    assert report["model_description"]["num_classes"] == classes
    assert report["warnings"] and "--allow-low-fp32 given" in report["warnings"][0]  # random weights: near chance
    assert run_cli("verify", str(out)).returncode == 0
    return manifest


@pytest.mark.slow
def test_resnet18_10_classes_at_96_for_ort_cpu(tmp_path):
    out, card = _compile_own(tmp_path, "ort-cpu", "resnet18", 10, 96)
    _check_carried(out, card, 10, 96)
    assert _onnx_io(out / "model.int8.onnx") == ([1, 3, 96, 96], [1, 10])


@pytest.mark.slow
def test_resnet50_37_classes_at_224_for_ort_cpu(tmp_path):
    out, card = _compile_own(tmp_path, "ort-cpu", "resnet50", 37, 224, timeout=5400)  # > 30 min on 2 busy cores
    _check_carried(out, card, 37, 224)
    assert _onnx_io(out / "model.int8.onnx") == ([1, 3, 224, 224], [1, 37])


@pytest.mark.slow
def test_resnet18_10_classes_at_96_for_rpi5_carries_preprocessing_to_the_device(tmp_path):
    out, card = _compile_own(tmp_path, "rpi5", "resnet18", 10, 96, "--emulated-samples", "4")
    manifest = _check_carried(out, card, 10, 96)
    deploy = json.loads((out / "deploy.json").read_text())
    assert deploy["input_shape"] == [1, 3, 96, 96]
    assert {k: manifest["input"][k] for k in deploy["preprocessing"]} == deploy["preprocessing"]
    # The device runner preprocesses with the shipped module and config: same tensor as ours.
    shipped = Preprocessing.from_dict(deploy["preprocessing"])
    image = tmp_path / "one.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (120, 140, 3), dtype=np.uint8)).save(image)
    ours = load_model("resnet18", tmp_path / "resnet18-10.pth", ModelDescription(card=str(card))).preprocessing
    assert np.array_equal(shipped.load_image(image), ours.load_image(image))


@pytest.mark.slow
def test_resnet18_at_96_for_rpi4_runs_winograd_bit_exact_on_the_a72(tmp_path):
    """A user's ResNet-18 for rpi4, random weights with real BatchNorm scales (an untrained model's
    zero-initialised residual branches would hide its 3x3 convolutions): those at 24x24, 12x12 and
    6x6 (partial tiles) run as Winograd F(4x4, 3x3) (`winograd.py`), and the library under qemu
    -cpu cortex-a72 gives the host build's logits (direct convolutions) bit for bit: the compile's
    own check, no warning of it."""
    out, _ = _compile_own(tmp_path, "rpi4", "resnet18", 10, 96, "--emulated-samples", "8")
    report = json.loads((out / "report.json").read_text())
    assert report["target_details"]["conv_kernels_winograd_smlal"] >= 4, report["target_details"]
    assert not [w for w in report["warnings"] if "bit-identical" in w], report["warnings"]  # (the random FP32's one stays)
    assert report["int8"]["bit_identical_to"]["runtime"] == "tvm aarch64 (qemu emulation, -cpu cortex-a72)"
    assert report["int8"]["bit_identical_to"]["samples"] == 8


def test_resnet50_37_classes_at_224_exports_with_its_own_head(tmp_path):
    """The fast half of the ResNet-50 case: its head and input size reach the ONNX model."""
    from edgeresnet.export import export_onnx_model

    weights = _random_checkpoint(tmp_path / "r50.pth", "resnet50", 37)
    loaded = load_model("resnet50", weights, ModelDescription(preset="imagenet", input_size=(224, 224)))
    assert loaded.num_classes == 37 and loaded.sources["num_classes"] == "fc.weight of r50.pth"
    graph = export_onnx_model(loaded).graph
    dims = lambda value: [d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(graph.input[0]) == [1, 3, 224, 224] and dims(graph.output[0]) == [1, 37]


# --- a model trained on [0, 1] pixels -----------------------------------------------------------------

@pytest.fixture(scope="module")
def unit_pixel_weights(tmp_path_factory) -> Path:
    """The reference network made to take plain [0, 1] pixels: its normalization (x - 0.286) / 0.353 folded
    into conv1 and bn1, as if it had been trained on [0, 1] pixels."""
    path = tmp_path_factory.mktemp("unit") / "resnet20-unit.pth"
    torch.save(reference_for_input((1 / 0.353,), -0.286 / 0.353), path)
    return path


def _compile_unit(weights: Path, out: Path, *description: str):
    return run_cli("compile", "--target", "ort-cpu", "--model", "resnet20", "--weights", str(weights), *description,
                   "--calib", "fashion-mnist:train", "--calib-samples", "64",
                   "--eval", "fashion-mnist:test", "--eval-samples", "1000", "--out", str(out), timeout=900)


def test_unit_pixel_model_reports_right_with_its_card(tmp_path, unit_pixel_weights):
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"preset": "unit", "input_size": [28, 28]}))
    result = _compile_unit(unit_pixel_weights, tmp_path / "art", "--card", str(card))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "art" / "report.json").read_text())
    assert report["fp32"]["top1"] >= 90.0  # the reference model scores 93.65% on all 10,000
    manifest = json.loads((tmp_path / "art" / MANIFEST).read_text())
    assert manifest["input"]["mean"] == [0.0] and manifest["input"]["std"] == [1.0] and manifest["input"]["channels"] == 1
    assert manifest["input"]["sources"]["channels"] == "conv1.weight of resnet20-unit.pth"
    assert manifest["input"]["interpolation"] == "bilinear" and manifest["input"]["antialias"] is True
    # The card written into the artifact states the channel order and the resize filter, and reads back as a card.
    shipped = tmp_path / "art" / "model-card.json"
    assert "model-card.json" in manifest["files"] and "channel_order" in json.loads(shipped.read_text())
    again = load_model("resnet20", unit_pixel_weights, ModelDescription(card=str(shipped)))
    assert again.preprocessing.to_dict() == {k: manifest["input"][k] for k in again.preprocessing.to_dict()}


def test_unit_pixel_model_without_its_card_stops_before_calibration_and_at_the_fp32_gate(tmp_path, unit_pixel_weights):
    result = _compile_unit(unit_pixel_weights, tmp_path / "art", "--input-size", "28")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgeresnet: error: preprocessing check:") and "--pixel-scale 1 --mean 0 --std 1" in last
    assert "calibrating (" not in result.stderr  # stopped before calibrating
    # Told to go on, the FP32 gate stops it later, as before.
    result = _compile_unit(unit_pixel_weights, tmp_path / "art", "--input-size", "28", "--allow-preprocessing-mismatch")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgeresnet: error: FP32 top-1") and "near chance" in last
    assert "preprocessing" in last and "architecture default of resnet20 (cifar preset)" in last and "--allow-low-fp32" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no artifact, no staging folder, no lock


# --- the description, resolved --------------------------------------------------------------------------

def test_classes_and_channels_come_from_the_checkpoint_and_are_stated(tmp_path):
    torch.save(build_resnet("resnet18", num_classes=37, in_channels=1).state_dict(), tmp_path / "r18.pth")
    loaded = load_model("resnet18", tmp_path / "r18.pth", ModelDescription(input_size=(64, 48)))
    assert loaded.num_classes == 37 and loaded.preprocessing.channels == 1
    assert loaded.module(torch.zeros(1, 1, 64, 48)).shape == (1, 37)
    assert loaded.sources["num_classes"] == "fc.weight of r18.pth" and loaded.sources["channels"] == "conv1.weight of r18.pth"
    # ImageNet's mean/std averaged for one channel, and the report says so
    assert loaded.preprocessing.mean == pytest.approx((np.mean(IMAGENET.mean),))
    assert "averaged over channels" in loaded.sources["normalization"]


def test_options_override_the_card_and_the_card_the_defaults(tmp_path):
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    card = tmp_path / "card.toml"
    card.write_text('preset = "cifar"\nnum_classes = 2\ninput_size = 40\nchannel_order = "BGR"\npixel_scale = 255\n'
                    'mean = [120, 110, 100]\nstd = [60, 60, 60]\nclass_names_file = "names.txt"\n')
    loaded = load_model("resnet20", None, ModelDescription(card=str(card), input_size=(36, 36)))
    pre = loaded.preprocessing
    assert pre.input_size == (36, 36) and loaded.sources["input_size"] == "command-line option"
    assert pre.channel_order == "BGR" and pre.pixel_scale == 255 and pre.class_names == ("cat", "dog")
    assert loaded.num_classes == 2 and loaded.sources["num_classes"] == f"model card {card}"
    # BGR and 0..255 scale applied: a pure-red pixel lands in the last channel at (255 - 100) / 60
    x = pre.normalize_uint8(np.full((1, 36, 36, 3), (255, 0, 0), np.uint8))
    assert x[0, 2, 0, 0] == pytest.approx((255 - 100) / 60) and x[0, 0, 0, 0] == pytest.approx(-120 / 60)


def test_class_folder_names_name_the_classes(tmp_path):
    for name in ("ant", "bee"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "data" / name / "0.png")
    data = open_dataset(str(tmp_path / "data"), Preprocessing((32, 32), 3, (0, 0, 0), (1, 1, 1)))
    assert data.class_names == ("ant", "bee") and data.labels.tolist() == [0, 1]


def test_16_bit_png_keeps_its_depth(tmp_path):
    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0..65472
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    unit = Preprocessing((32, 32), 1, (0.0,), (1.0,))
    x = unit.load_image(tmp_path / "deep.png")[0]
    assert np.abs(x - ramp / 65535.0).max() < 1e-6  # not clipped at 255/65535
    assert len(np.unique(x)) == 32 * 32


def test_float_arrays_of_raw_pixels_are_refused_by_the_documented_rule(tmp_path):
    pre = IMAGENET.__class__((32, 32), 3, IMAGENET.mean, IMAGENET.std)  # the largest preprocessed value: 2.64
    np.save(tmp_path / "normalized.npy", np.random.default_rng(0).normal(0, 1, (4, 3, 32, 32)).astype(np.float32))
    np.save(tmp_path / "unit.npy", np.random.default_rng(0).uniform(0, 1, (4, 3, 32, 32)).astype(np.float32))
    np.save(tmp_path / "raw.npy", np.random.default_rng(0).uniform(0, 255, (4, 3, 32, 32)).astype(np.float32))
    assert len(open_dataset(str(tmp_path / "normalized.npy"), pre)) == 4
    assert len(open_dataset(str(tmp_path / "unit.npy"), pre)) == 4  # [0, 1] is within range: taken
    with pytest.raises(InputError, match="look like raw 0..255 pixels"):
        open_dataset(str(tmp_path / "raw.npy"), pre)
    # the same floats are right for a model whose mean/std are on 0..255 pixels
    raw_model = Preprocessing((32, 32), 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), pixel_scale=255)
    assert len(open_dataset(str(tmp_path / "raw.npy"), raw_model)) == 4


def test_a_small_calibration_set_is_warned_about(tmp_path, capsys):
    np.save(tmp_path / "eight.npy", np.zeros((8, 3, 32, 32), np.float32))
    loaded = load_model("resnet20")
    assert len(calibration_data(loaded, str(tmp_path / "eight.npy"), 512, 0)) == 8
    assert "only 8 calibration image(s)" in capsys.readouterr().err


def test_chance_gate():
    assert chance_gate(10) == pytest.approx(20.0)
    assert chance_gate(37) == pytest.approx(100 / 37 + 10)
    assert chance_gate(1000) == pytest.approx(10.1)
    assert chance_gate(2) == pytest.approx(50 + 50 / 3)


def test_labelled_folders_name_the_classes_of_a_model_without_names(tmp_path):
    classes = [f"kind-{c}" for c in "abcdefghij"]
    for name in classes:
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "data" / name / "0.png")
    loaded = load_model("resnet20")
    assert loaded.preprocessing.class_names == ()
    evaluation_data(loaded, str(tmp_path / "data"), None, 0)
    assert loaded.preprocessing.class_names == tuple(classes)
    assert loaded.sources["class_names"] == f"class-folder names of {tmp_path / 'data'}"


def test_calibration_and_evaluation_sharing_images_is_warned_about(tmp_path, capsys):
    from edgeresnet.pipeline.frontend import check_shared_images

    rng = np.random.default_rng(5)
    pictures = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    for folder, rows in (("calib", [0, 1, 2, 3]), ("eval", [3, 4, 5])):
        (tmp_path / folder).mkdir()
        for row in rows:  # the shared picture under another name
            Image.fromarray(pictures[row]).save(tmp_path / folder / f"{folder}-{row}.png")
    pre = Preprocessing((32, 32), 3, (0, 0, 0), (1, 1, 1))
    calibration, evaluation = open_dataset(str(tmp_path / "calib"), pre), open_dataset(str(tmp_path / "eval"), pre)
    message = check_shared_images(calibration, evaluation)
    assert message.startswith("1 of the 3 evaluation images are also calibration images") and message in capsys.readouterr().err
    np.save(tmp_path / "a.npy", pictures[:3])
    np.save(tmp_path / "b.npy", pictures[3:])
    assert check_shared_images(open_dataset(str(tmp_path / "a.npy"), pre), open_dataset(str(tmp_path / "b.npy"), pre)) is None


def test_unlabelled_evaluation_says_so_and_reports_agreement_never_a_drop(tmp_path):
    from edgeresnet.calibration import load_fashion_mnist

    np.save(tmp_path / "unlabelled.npy", load_fashion_mnist("test")[0][:64])
    out = tmp_path / "art"
    result = run_cli("compile", "--target", "ort-cpu", "--calib", "fashion-mnist:train", "--calib-samples", "64",
                     "--eval", str(tmp_path / "unlabelled.npy"), "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("evaluation:")]
    assert len(said) == 1 and "has no labels" in said[0] and "top-1 agreement with FP32" in said[0]
    assert "top-1 agreement with FP32" in result.stdout and "drop" not in result.stdout.split("artifact:")[0]
    report = json.loads((out / "report.json").read_text())
    assert report["drop_pts"] is None and 0.9 <= report["agreement"] <= 1.0
    assert json.loads((out / MANIFEST).read_text())["accuracy"]["drop_pts"] is None
    page = (out / "report.html").read_text()
    assert "unlabelled evaluation: no accuracy, no drop" in page and 'id="drop"' not in page
    assert run_cli("verify", str(out)).returncode == 0
