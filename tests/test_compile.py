"""`edgeresnet compile` end to end on the embedded default: the reference model and Fashion-MNIST."""

import hashlib
import json

import pytest

from helpers import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_ort(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile") / "ort"
    result = run_cli("compile", "--target", "ort-cpu", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


@pytest.fixture(scope="module")
def default_jetson(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile") / "jetson"
    result = run_cli("compile", "--target", "jetson", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "report.json").read_text())


def test_ort_cpu_default_meets_the_accuracy_bar(default_ort):
    out, report = default_ort
    digest = "sha256:" + hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert report == {**json.loads((out / "report.json").read_text()), "artifact": str(out), "archive": None, "digest": digest}
    for key in ("model", "target", "method", "samples", "drop_pts", "agreement", "fallback_layers"):
        assert key in report
    assert report["model"] == "resnet20-fmnist" and report["target"] == "ort-cpu" and report["method"] == "minmax"
    assert report["samples"] == 512 and report["calibration"]["source"] == "fashion-mnist:train"
    assert report["int8"]["samples"] == 10_000 and report["evaluation"]["source"] == "fashion-mnist:test"
    # The FP32 reference is the shipped model.fp32.onnx in ONNX Runtime, checked against PyTorch first.
    assert report["fp32"]["top1"] >= 92.0 and report["fp32"]["runtime"].startswith("onnxruntime")
    assert "FP32" in report["fp32"]["runtime"]
    agreement = report["fp32"]["pytorch_agreement"]
    assert agreement["images"] == 8 and agreement["max_abs_diff"] <= min(agreement["tolerance"], 1e-3)
    assert report["int8"]["runtime"].startswith("onnxruntime") and report["int8"]["arch"] == "x86_64"
    assert report["drop_pts"] <= 0.3 and report["agreement"] >= 0.99
    assert report["drop_pts"] == pytest.approx(report["fp32"]["top1"] - report["int8"]["top1"], abs=1e-6)
    assert report["gate"] == {"max_drop": None, "passed": True} and report["fallback_layers"] == []
    assert len(report["int8"]["per_class"]) == 10 and report["drift"]["sqnr_db"] > 10
    assert len(report["sensitivity"]) > 20


def test_jetson_default_bundle_and_accuracy(default_jetson):
    out, report = default_jetson
    assert report["target"] == "jetson-orin-nx" and report["quant_profile"] == "tensorrt"
    checks = report["target_details"]["parser_checks"]
    assert all(c["passed"] for c in checks.values())
    assert {"8.5.2", "8.6.2", "10.3.0", "10.16.2"} == set(checks)  # no Orin JetPack ships TensorRT 11 (issue 13)
    assert report["drop_pts"] <= 0.3 and report["int8"]["samples"] == 10_000
    assert report["int8"]["runtime"].startswith("onnxruntime") and "Q/DQ numerics" in report["int8"]["runtime"]
    assert (out / "build_engine.sh").is_file() and run_cli("verify", str(out)).returncode == 0


def test_max_drop_triggers_fallback_and_reports_float_layers(tmp_path):
    # Calibrating on one image gives poor ranges, so INT8 misses a tight budget.
    out = tmp_path / "fallback"
    result = run_cli("compile", "--target", "ort-cpu", "--calib-samples", "1", "--eval-samples", "2000",
                     "--max-drop", "0.05", "--out", str(out))
    report = json.loads((out / "report.json").read_text())
    assert report["fallback_steps"], "the budget was met without fallback; the test needs a harder case"
    assert report["fallback_layers"] == [s["layer"] for s in report["fallback_steps"]]
    ranked = [s["layer"] for s in report["sensitivity"]]
    assert report["fallback_layers"] == ranked[: len(report["fallback_layers"])]  # most sensitive first
    assert report["gate"]["max_drop"] == 0.05
    assert report["gate"]["passed"] == (report["drop_pts"] <= 0.05)
    assert result.returncode == (0 if report["gate"]["passed"] else 1)
    assert "kept in float" in result.stdout


def test_all_three_methods_run(tmp_path):
    drops = {}
    for method in ("minmax", "entropy", "percentile"):
        out = tmp_path / method
        result = run_cli("compile", "--target", "ort-cpu", "--method", method, "--eval-samples", "2000", "--out", str(out), "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["method"] == method
        drops[method] = report["drop_pts"]
    assert abs(drops["minmax"]) < 2.0 and abs(drops["percentile"]) < 2.0, drops
    # Real (TensorRT-style) entropy clips at the spike of Fashion-MNIST's constant background in the input and
    # the stem's ReLU, and loses ~15 points here (see README and benchmarks/calibration_methods.py); it must
    # at least be a different calibration from min-max, as it was not when ORT ran it with 128 bins.
    assert drops["entropy"] != drops["minmax"], drops


@pytest.mark.parametrize("target", ["ort-cpu", "jetson", "rpi5"])
def test_bottleneck_reference_model_meets_the_bar(tmp_path, target):
    """The second shipped reference model (Bottleneck blocks, 1x1-3x3-1x1) on every kind of target:
    ONNX Runtime, the TensorRT bundle (Q/DQ numerics in ONNX Runtime) and the aarch64 library (under
    qemu on the board's core; the same integer module on the host over all 10,000 test images)."""
    out = tmp_path / target
    result = run_cli("compile", "--target", target, "--model", "resnet29-fmnist", "--out", str(out), timeout=2400)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "resnet29-fmnist"
    assert report["fp32"]["top1"] >= 88.0
    assert report["drop_pts"] <= 0.3 and report["int8"]["samples"] == 10_000
    if target == "rpi5":
        # All 10,000 images on the host build of the integer module, which stands for the aarch64 library
        # because their logits are bit-identical on the 1,000 emulated images (the emulated sample alone
        # measured 0.6 pts: 9 disagreements in 1,000, a standard error of ~0.3 pts).
        assert report["int8"]["bit_identical_to"]["samples"] == 1000
