"""The preprocessing check (edgeresnet/preprocessing_check.py): a description that does not fit the model is
caught before calibration, with and without labels, naming the options that fit; models described rightly pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeresnet.calibration import load_fashion_mnist, open_dataset
from edgeresnet.models import ModelDescription, load_model
from edgeresnet.pipeline.frontend import chance_gate
from edgeresnet.preprocessing_check import CAFFE_MEAN_BGR, check_preprocessing, options_for
from edgeresnet.preprocessing import IMAGENET, UNIT
from helpers import reference_for_input, run_cli

REFERENCE = (0.286, 0.353)  # the reference model's own mean/std on [0, 1] gray pixels
CAFFE = ["--channel-order", "BGR", "--pixel-scale", "255", "--mean", "103.939,116.779,123.68", "--std", "1,1,1"]
CAFFE_OPTIONS = "--channel-order BGR --pixel-scale 255 --mean 103.939,116.779,123.68 --std 1,1,1"


def _tinted(split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST in colour: red carries the garment, green a dimmer copy, blue its negative."""
    images, labels = load_fashion_mnist(split)
    gray = images[:count].astype(np.float32)
    rgb = np.stack([gray, 0.6 * gray, 255 - gray], axis=-1)
    return rgb.round().astype(np.uint8), labels[:count]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tinted")
    images, labels = _tinted("test", 512)
    np.savez(folder / "eval.npz", images=images, labels=labels)
    np.save(folder / "calib.npy", _tinted("train", 128)[0])
    np.save(folder / "eval-unlabelled.npy", images[:256])
    return folder


def _caffe_state() -> dict:
    """Reads red only, as a Caffe model does in BGR order (its channel 2), on 0..255 pixels less Caffe's mean:
    g = (x2 + 123.68) / 255, so x_ref = x2 / (255 * 0.353) + (123.68 / 255 - 0.286) / 0.353."""
    mean, std = REFERENCE
    return reference_for_input((0.0, 0.0, 1 / (255 * std)), (CAFFE_MEAN_BGR[2] / 255 - mean) / std)


def _imagenet_state() -> dict:
    """Reads red (RGB channel 0) normalized by ImageNet's mean/std: g = 0.229 x0 + 0.485."""
    mean, std = REFERENCE
    return reference_for_input((IMAGENET.std[0] / std, 0.0, 0.0), (IMAGENET.mean[0] - mean) / std)


def _unit_state() -> dict:
    mean, std = REFERENCE
    return reference_for_input((1 / std, 0.0, 0.0), -mean / std)  # red on plain [0, 1] pixels


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for name, state in (("caffe", _caffe_state()), ("imagenet", _imagenet_state()), ("unit", _unit_state())):
        paths[name] = folder / f"resnet20-{name}.pth"
        torch.save(state, paths[name])
    return paths


def _check(weights, description: ModelDescription, spec: str, labelled: bool = True):
    loaded = load_model("resnet20", weights, description)
    data = open_dataset(spec, loaded.preprocessing)
    if not labelled:
        data.labels = None
    return check_preprocessing(loaded.module, loaded.preprocessing, data, 10, chance_gate(10), "test")


def test_caffe_bgr_model_with_default_preprocessing_stops_before_calibration_naming_the_options(tmp_path, data, weights):
    out = tmp_path / "art"
    result = run_cli("compile", "--target", "ort-cpu", "--model", "resnet20", "--weights", str(weights["caffe"]),
                     "--input-size", "28", "--calib", str(data / "calib.npy"), "--eval", str(data / "eval.npz"),
                     "--out", str(out), timeout=600)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgeresnet: error: preprocessing check:") and CAFFE_OPTIONS in last, last
    assert "--allow-preprocessing-mismatch" in last
    assert "calibrating (" not in result.stderr
    # Where the preprocessing came from, in one line, before anything else is decided.
    stated = [line for line in result.stderr.splitlines() if line.startswith("preprocessing: mean")]
    assert len(stated) == 1 and stated[0].endswith("all from architecture default of resnet20 (cifar preset)")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_caffe_model_described_rightly_passes_and_scores_well(data, weights):
    check = _check(weights["caffe"], ModelDescription(input_size=(28, 28), channel_order="BGR", pixel_scale=255,
                                                      mean=CAFFE_MEAN_BGR, std=(1.0, 1.0, 1.0)), str(data / "eval.npz"))
    assert check.verdict == "ok", check.message
    assert check.described.top1 >= 80 and check.described.distance < 0.5


def test_caffe_model_flagged_without_labels_too(data, weights):
    check = _check(weights["caffe"], ModelDescription(input_size=(28, 28)), str(data / "eval.npz"), labelled=False)
    assert check.verdict == "mismatch" and "first BatchNorm statistics" in check.message
    assert check.best.preprocessing.channel_order == "BGR" and check.best.preprocessing.pixel_scale == 255


@pytest.mark.parametrize("labelled", [True, False])
def test_unit_pixel_model_under_imagenet_preprocessing_is_flagged(data, weights, labelled):
    check = _check(weights["unit"], ModelDescription(preset="imagenet", input_size=(28, 28)), str(data / "eval.npz"), labelled)
    assert check.verdict == "mismatch", check.to_dict()
    assert check.best.preprocessing.mean == (0.0, 0.0, 0.0) and check.best.preprocessing.std == (1.0, 1.0, 1.0)
    assert "--pixel-scale 1 --mean 0,0,0 --std 1,1,1" in check.message
    if labelled:
        assert check.best.top1 - check.described.top1 > 20  # far above chance, not only near it


def test_unit_pixel_model_without_labels_stops_the_compile(tmp_path, data, weights):
    result = run_cli("compile", "--target", "ort-cpu", "--model", "resnet20", "--weights", str(weights["unit"]),
                     "--preset", "imagenet", "--input-size", "28", "--calib", str(data / "calib.npy"),
                     "--eval", str(data / "eval-unlabelled.npy"), "--out", str(tmp_path / "art"), timeout=600)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "first BatchNorm statistics" in last and "--mean 0,0,0 --std 1,1,1" in last
    assert any(line.startswith("evaluation:") and "no labels" in line for line in result.stderr.splitlines())


@pytest.mark.parametrize("name, description", [
    ("imagenet", ModelDescription(preset="imagenet", input_size=(28, 28))),
    ("unit", ModelDescription(preset="unit", input_size=(28, 28))),
])
@pytest.mark.parametrize("labelled", [True, False])
def test_models_described_rightly_get_no_message(data, weights, name, description, labelled):
    check = _check(weights[name], description, str(data / "eval.npz"), labelled)
    assert check.verdict == "ok" and check.message is None, check.to_dict()


@pytest.mark.parametrize("model", ["resnet20-fmnist", "resnet29-fmnist"])
@pytest.mark.parametrize("labelled", [True, False])
def test_shipped_reference_models_pass(model, labelled):
    loaded = load_model(model)
    data = open_dataset("fashion-mnist:test", loaded.preprocessing, limit=512)
    if not labelled:
        data.labels = None
    check = check_preprocessing(loaded.module, loaded.preprocessing, data, 10, chance_gate(10), "test")
    assert check.verdict == "ok" and check.described.distance < 0.5, check.to_dict()


def test_near_chance_with_no_better_alternative_blames_model_or_labels(data, weights):
    loaded = load_model("resnet20", weights["caffe"], ModelDescription(input_size=(28, 28), channel_order="BGR",
                                                                      pixel_scale=255, mean=CAFFE_MEAN_BGR, std=(1.0, 1.0, 1.0)))
    evaluation = open_dataset(str(data / "eval.npz"), loaded.preprocessing)
    evaluation.labels = (evaluation.labels + 3) % 10  # the labels of another class list
    check = check_preprocessing(loaded.module, loaded.preprocessing, evaluation, 10, chance_gate(10), "test")
    assert check.verdict == "model_or_labels" and "the model or the labels are the likely cause" in check.message


def test_options_name_only_what_differs():
    bgr = UNIT.__class__(**{**UNIT.__dict__, "channel_order": "BGR"})
    assert options_for(bgr, UNIT) == "--channel-order BGR"
    assert options_for(IMAGENET, IMAGENET) == ""
