"""The on-device check, driven for real where the device is missing.

No TensorRT and no GPU here: the Jetson bundle's own run.py is run with its
engine loader replaced by ONNX Runtime on the bundle's model.onnx (a stand-in
engine), so the golden-vector loading, the comparison, the report and the exit
codes are the shipped code's, and only the engine is not TensorRT's.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeresnet.artifact import MANIFEST
from edgeresnet.calibration import open_dataset, sample_indices
from edgeresnet.evaluate import collect_logits, compare as host_compare
from edgeresnet.targets.tensorrt.polygraphy import polygraphy_array
from edgeresnet.preprocessing import Preprocessing
from edgeresnet.runners import OnnxRuntimeRunner
from edgeresnet.targets.base import copy_device_support
from helpers import run_cli
from jetson_standins import run_bundle

@pytest.fixture
def bundle(jetson_artifact, tmp_path) -> Path:
    """A private copy of the session's Jetson bundle: other tests import its scripts there (a __pycache__ that
    `verify` would rightly refuse), and these tests fold reports from it."""
    copy = tmp_path / "jetson-bundle"
    shutil.copytree(jetson_artifact, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_golden_vectors_are_the_evaluated_images_with_the_host_logits(bundle, small_data):
    jetson_artifact = bundle
    manifest = json.loads((jetson_artifact / MANIFEST).read_text())
    golden = jetson_artifact / "golden"
    meta = json.loads((golden / "golden.json").read_text())
    for name in ("inputs.npy", "labels.npy", "fp32_logits.npy", "int8_logits.npy", "golden.json",
                 "polygraphy_inputs.json", "polygraphy_outputs.json"):
        assert f"golden/{name}" in manifest["files"], name
    assert run_cli("verify", str(jetson_artifact)).returncode == 0
    # The evaluation set has 64 images, fewer than the default 256: all of them, in order.
    preprocessing = Preprocessing.from_dict(manifest["input"])
    data = open_dataset(str(small_data["eval"]), preprocessing)
    index = sample_indices(len(data), 256, 0)
    assert meta["indices"] == index.tolist() and meta["samples"] == 64
    inputs = np.load(golden / "inputs.npy")
    assert inputs.dtype == np.float32 and inputs.shape == (64, 3, 32, 32)
    assert np.array_equal(inputs, data.images[index])
    assert np.array_equal(np.load(golden / "labels.npy"), data.labels[index])
    # The host INT8 logits are the bundle's own Q/DQ model in ONNX Runtime, as report.json measured it.
    ort_logits = collect_logits(OnnxRuntimeRunner(jetson_artifact / "model.onnx", optimize=False), inputs, progress=False)
    np.testing.assert_allclose(np.load(golden / "int8_logits.npy"), ort_logits, rtol=0, atol=1e-6)
    fp32 = np.load(golden / "fp32_logits.npy")
    assert fp32.shape == (64, 10) and host_compare(fp32, ort_logits).cosine > 0.99
    assert meta["int8_runtime"] == json.loads((jetson_artifact / "report.json").read_text())["int8"]["runtime"]


def test_polygraphy_loads_the_golden_vectors_and_compares_a_runner_with_them(jetson_artifact, tmp_path):
    """The second route, with Polygraphy's own ONNX Runtime runner in place of --trt: passes, and fails on drift."""
    meta = json.loads((jetson_artifact / "golden" / "golden.json").read_text())["polygraphy"]
    polygraphy = Path(sys.executable).with_name("polygraphy")
    command = meta["commands"]["tensorrt_10"].replace(" --trt", " --onnxrt").replace(" --strongly-typed", "").split()
    assert command[:2] == ["polygraphy", "run"] and "--load-outputs" in command
    result = subprocess.run([str(polygraphy), *command[1:]], cwd=jetson_artifact, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"Passed: {meta['iterations']}/{meta['iterations']} iterations" in result.stdout + result.stderr
    # Shift the host logits of one iteration by twice the tolerance: Polygraphy must call it a mismatch.
    outputs = json.loads((jetson_artifact / "golden" / "polygraphy_outputs.json").read_text())
    encoded = outputs["lst"][0][1][0]["outputs"][meta["output_name"]]["values"]
    logits = np.load(io.BytesIO(base64.b64decode(encoded["array"])))
    outputs["lst"][0][1][0]["outputs"][meta["output_name"]]["values"] = polygraphy_array(logits + 2 * meta["atol"])
    drifted = tmp_path / "outputs.json"
    drifted.write_text(json.dumps(outputs))
    command[command.index("--load-outputs") + 1] = str(drifted)
    result = subprocess.run([str(polygraphy), *command[1:]], cwd=jetson_artifact, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def test_jetson_check_with_a_standin_engine_passes_and_reports(jetson_artifact, tmp_path):
    result = run_bundle(jetson_artifact, tmp_path, "--check")
    assert result.returncode == 0, result.stderr
    assert "verdict: PASS" in result.stdout
    report = json.loads((jetson_artifact.with_name(jetson_artifact.name + ".device") / "device-report.json").read_text())
    assert report["schema"] == "edgeresnet.device-report/1" and report["passed"] is True
    assert report["samples"] == 64 and report["target"] == "jetson-orin-nx"
    assert report["manifest_sha256"] == hashlib.sha256((jetson_artifact / MANIFEST).read_bytes()).hexdigest()  # the build it ran
    assert report["host_agreement"] == 1.0 and report["host_drift"]["max_abs_diff"] < 1e-5
    # Drift fields named as report.json's, plus the mean |delta logit|.
    host_report = json.loads((jetson_artifact / "report.json").read_text())
    assert set(host_report["drift"]) <= set(report["drift"]) and "mean_abs_diff" in report["drift"]
    assert report["int8"]["top1"] == report["host_int8"]["top1"] and report["drop_pts"] == report["host_drop_pts"]
    assert report["device"]["machine"] and report["device"]["cpu_model"]
    assert report["device"]["runtime"]["tensorrt"].startswith("not installed")
    assert report["latency_ms"]["runs"] == 64 and report["budget"]["min_agreement"] == 0.99


def test_jetson_check_exits_1_when_the_engine_drifts(jetson_artifact, tmp_path):
    # Every 8th batch of one moves its top-1: agreement with the host INT8 87.5% < 99%.
    result = run_bundle(jetson_artifact, tmp_path, "--check", "--report", "drift.json", "--warmup", "0", flip_every=8)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "drift.json").read_text())
    assert report["verdict"] == "DRIFT" and report["host_agreement"] == pytest.approx(56 / 64)
    assert any("agreement with the host INT8" in reason for reason in report["reasons"])
    assert "verdict: DRIFT" in result.stdout
    # The budget is the user's to set.
    relaxed = run_bundle(jetson_artifact, tmp_path, "--check", "--report", "relaxed.json", "--warmup", "0",
                         "--min-agreement", "80", "--max-extra-drop", "100", flip_every=8)
    assert relaxed.returncode == 0, relaxed.stdout + relaxed.stderr


def test_jetson_check_on_the_users_labelled_images(jetson_artifact, tmp_path):
    # The small test model has no class names; a copy of the bundle gets some, so folders can name classes.
    bundle = tmp_path / "bundle"
    shutil.copytree(jetson_artifact, bundle)
    config = json.loads((bundle / "bundle.json").read_text())
    classes = config["preprocessing"]["class_names"] = [f"class{i}" for i in range(10)]
    (bundle / "bundle.json").write_text(json.dumps(config))
    folder = tmp_path / "mine"
    rng = np.random.default_rng(1)
    for name in classes[:3]:
        (folder / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")
    result = run_bundle(bundle, tmp_path, "--check", "--images", str(folder), "--report", "mine.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "mine.json").read_text())
    assert report["samples"] == 6 and "top1" in report["int8"] and "host_drift" not in report
    assert "no host references" in report["note"]
    unlabelled = tmp_path / "flat"
    unlabelled.mkdir()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(unlabelled / "x.png")
    refused = run_bundle(bundle, tmp_path, "--check", "--images", str(unlabelled))
    assert refused.returncode != 0 and "labelled" in refused.stderr


def test_device_comparison_matches_the_hosts(tmp_path):
    """device_check.compare, as shipped (beside the artifact's metrics.py, numpy only), gives report.json's drift
    fields exactly as the host computes them; identical logits give an SQNR of None (JSON null) on both."""
    copy_device_support(tmp_path)
    sys.path.insert(0, str(tmp_path))
    for name in ("device_check", "metrics"):
        sys.modules.pop(name, None)
    try:
        import device_check
    finally:
        sys.path.pop(0)
        for name in ("device_check", "metrics"):
            sys.modules.pop(name, None)
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((200, 10)).astype(np.float32)
    test = reference + 0.3 * rng.standard_normal((200, 10)).astype(np.float32)
    ours, host = device_check.compare(reference, test), host_compare(reference, test)
    assert Path(device_check.drift.__code__.co_filename).parent == tmp_path  # the shipped copy, not edgeresnet's
    for field, value in host.to_dict().items():
        assert ours[field] == value, field
    assert ours["mean_abs_diff"] == pytest.approx(float(np.abs(reference - test).mean()), rel=1e-6)
    assert device_check.compare(reference, reference)["sqnr_db"] is None
    assert host_compare(reference, reference).sqnr_db is None
    assert json.loads(json.dumps(device_check.compare(reference, reference)))["sqnr_db"] is None  # strict JSON


def test_report_puts_the_device_column_beside_the_host_and_leaves_the_artifact_as_built(bundle, tmp_path):
    jetson_artifact = bundle
    assert run_bundle(jetson_artifact, tmp_path, "--check", "--report", "ok.json").returncode == 0
    assert run_bundle(jetson_artifact, tmp_path, "--check", "--report", "drift.json", "--warmup", "0", flip_every=8).returncode == 1
    manifest_before = (jetson_artifact / MANIFEST).read_bytes()
    out = tmp_path / "combined"
    result = run_cli("report", str(jetson_artifact), "--device", str(tmp_path / "ok.json"), "--out", str(out), "--label", "orin-nx #1")
    assert result.returncode == 0, result.stderr
    assert (jetson_artifact / MANIFEST).read_bytes() == manifest_before and run_cli("verify", str(jetson_artifact)).returncode == 0
    report = json.loads((out / "report.json").read_text())
    host = json.loads((jetson_artifact / "report.json").read_text())
    assert report["int8"] == host["int8"] and report["drop_pts"] == host["drop_pts"]  # the host column, unchanged
    (column,) = report["devices"]
    assert column["label"] == "orin-nx #1" and column["host_agreement"] == 1.0 and column["passed"] is True
    assert (out / column["file"]).is_file()
    assert report["artifact"]["manifest_sha256"] == hashlib.sha256(manifest_before).hexdigest()
    html = (out / "report.html").read_text()
    assert "Measured on the device" in html and "device: orin-nx #1" in html and "host: onnxruntime" in html
    assert html.count("data:image/png;base64,") == (jetson_artifact / "report.html").read_text().count("data:image/png;base64,")
    # A second device adds a column and exits 1 on its drift; the same label again replaces its column.
    drifted = run_cli("report", str(jetson_artifact), "--device", str(tmp_path / "drift.json"), "--out", str(out), "--label", "orin-nx #2")
    assert drifted.returncode == 1 and "DRIFT" in drifted.stdout
    again = run_cli("report", str(jetson_artifact), "--device", str(tmp_path / "ok.json"), "--out", str(out), "--label", "orin-nx #1", "--json")
    assert again.returncode == 0
    labels = [d["label"] for d in json.loads((out / "report.json").read_text())["devices"]]
    assert labels == ["orin-nx #2", "orin-nx #1"]


def test_report_refuses_what_is_not_a_device_report_of_this_artifact(bundle, tmp_path):
    jetson_artifact = bundle
    assert run_bundle(jetson_artifact, tmp_path, "--check", "--report", "ok.json").returncode == 0
    other = json.loads((tmp_path / "ok.json").read_text())
    other["model"] = "resnet56"
    (tmp_path / "other.json").write_text(json.dumps(other))
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "host.json").write_text((jetson_artifact / "report.json").read_text())
    for device, message in (("other.json", "resnet56"), ("broken.json", "not a readable JSON"),
                            ("host.json", "not a device report"), ("missing.json", "no such device report")):
        result = run_cli("report", str(jetson_artifact), "--device", str(tmp_path / device), "--out", str(tmp_path / "out"))
        assert result.returncode == 2 and message in result.stderr, (device, result.stderr)
        assert not (tmp_path / "out").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = run_cli("report", str(jetson_artifact), "--device", str(tmp_path / "ok.json"), "--out", str(tmp_path / "taken"))
    assert result.returncode == 2 and "holds no report.json" in result.stderr
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def _golden_copy(bundle: Path, tmp_path: Path, edit) -> Path:
    golden = tmp_path / "golden"
    shutil.copytree(bundle / "golden", golden)
    edit(golden)
    return golden


def _save(name: str, value):
    return lambda golden: np.save(golden / name, value, allow_pickle=True)


def _meta(change):
    def edit(golden: Path) -> None:
        meta = json.loads((golden / "golden.json").read_text())
        change(meta)
        (golden / "golden.json").write_text(json.dumps(meta))
    return edit


BAD_GOLDEN = {
    "no golden.json": (lambda g: (g / "golden.json").unlink(), "holds no golden.json"),
    "golden.json truncated": (lambda g: (g / "golden.json").write_text((g / "golden.json").read_text()[:100]), "not valid JSON"),
    "golden.json with NaN": (lambda g: (g / "golden.json").write_text((g / "golden.json").read_text().replace('"seed": 0', '"seed": NaN')), "NaN"),
    "golden.json with 1e999": (lambda g: (g / "golden.json").write_text((g / "golden.json").read_text().replace('"seed": 0', '"seed": 1e999')), "out of range"),
    "golden.json a list": (lambda g: (g / "golden.json").write_text("[]"), "unknown schema"),
    "another schema": (_meta(lambda m: m.update(schema="edgeresnet.golden/2")), "unknown schema"),
    "no files": (_meta(lambda m: m.pop("files")), "lacks its files"),
    "a file outside golden/": (_meta(lambda m: m["files"].update(inputs="../model.onnx")), "not a file name inside"),
    "inputs not an array": (lambda g: (g / "inputs.npy").write_bytes(b"garbage"), "not a readable .npy"),
    "labels pickled": (_save("labels.npy", np.array([{"x": 1}] * 64, dtype=object)), "not a readable .npy"),
    "logits with NaN": (_save("int8_logits.npy", np.full((64, 10), np.nan, np.float32)), "finite float"),
    "logits of another rank": (_save("fp32_logits.npy", np.zeros((64,), np.float32)), "2-D"),
    "rows that differ": (_save("int8_logits.npy", np.zeros((10, 10), np.float32)), "different numbers of rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_GOLDEN))
def test_the_device_check_refuses_bad_golden_vectors_in_one_line(case, bundle, tmp_path):
    """On the device: exit 2, one line, no traceback, no report written."""
    edit, text = BAD_GOLDEN[case]
    golden = _golden_copy(bundle, tmp_path, edit)
    result = run_bundle(bundle, tmp_path, "--check", "--golden", str(golden), "--report", str(tmp_path / "out.json"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("check: ") and text in lines[0], lines[0]
    assert not (tmp_path / "out.json").exists()
