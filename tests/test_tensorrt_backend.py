"""What `compile --target jetson-*` ships (targets/tensorrt/backend.py), proven without TensorRT or a GPU."""

import json


def test_bundle_contents_and_parser_checks(jetson_artifact):
    manifest = json.loads((jetson_artifact / "manifest.json").read_text())
    for name in ("model.onnx", "model.dla.onnx", "build_engine.sh", "build_engine.py", "layer_report.py", "run.py",
                 "preprocessing.py", "metrics.py", "README.md", "calibration/TRT-8602.cache", "calibration/TRT-100300.cache"):
        assert name in manifest["files"], name
    # Calibration caches only for the lines with DLA on an Orin NX: not 8.5 (DLA SW < 3.13), not 10.16 (no Orin DLA).
    assert sorted(f for f in manifest["files"] if f.startswith("calibration/")) == ["calibration/TRT-100300.cache",
                                                                                    "calibration/TRT-8602.cache"]
    assert not any(f.startswith("engines/") or f == "device-report.json" for f in manifest["files"])
    report = json.loads((jetson_artifact / "report.json").read_text())
    checks = report["target_details"]["parser_checks"]
    assert all(c["passed"] for c in checks.values()) and set(checks) == {"8.5.2", "8.6.2", "10.3.0", "10.16.2"}
    assert "TensorRT numerics not measured: no TensorRT here" in report["not_measured"][0]
    assert report["int8"]["runtime"].startswith("onnxruntime")


def test_bundle_config_carries_the_dla_lines_and_cores(jetson_artifact):
    config = json.loads((jetson_artifact / "bundle.json").read_text())
    dla = config["dla"]
    assert dla["lines"] == {"8.6": "calibration-cache", "10.3": "calibration-cache"}
    assert dla["calibration_caches"] == {"8.6": "calibration/TRT-8602.cache", "10.3": "calibration/TRT-100300.cache"}
    assert dla["cores_by_part"] == {"p3767-0000": 2, "p3767-0001": 1} and config["dla_cores"] == 2
    assert dla["lines_text"] == "8.6, 10.3 (calibration cache)" and dla["fp16_layers"] == []
    readme = (jetson_artifact / "README.md").read_text()
    assert "num_DLA_cores" in readme and "p3767-0001" in readme and "<bundle>.device" in readme
