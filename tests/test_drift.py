"""Drift along the network: every quantized layer of the shipped INT8 model against the same tensor in FP32."""

import numpy as np
import pytest

from edgeresnet.drift import layer_drift, plot_layer_drift, worst_layers, worst_layers_table
from edgeresnet.quantize import QuantizeConfig, calibrate_and_quantize
from edgeresnet.schema import to_json
from edgeresnet.targets import get_quant_scheme


@pytest.fixture(scope="module")
def reference():
    from edgeresnet.calibration import open_dataset
    from edgeresnet.export import export_onnx_model
    from edgeresnet.models import load_model

    loaded = load_model("resnet20-fmnist")
    calib = open_dataset("fashion-mnist", loaded.preprocessing, limit=64).images
    sample = open_dataset("fashion-mnist:test", loaded.preprocessing, limit=48).images
    return export_onnx_model(loaded), calib, sample


@pytest.mark.parametrize("scheme", ["onnxruntime", "tensorrt"])
def test_every_quantized_layer_in_graph_order(reference, scheme):
    fp32, calib, sample = reference
    int8 = calibrate_and_quantize(fp32, calib, QuantizeConfig(get_quant_scheme(scheme), "minmax"), progress=False).model
    drift = layer_drift(fp32, int8, sample)
    assert len(drift) >= 20 and [d.depth for d in drift] == list(range(len(drift)))
    order = [n.name for n in int8.graph.node]
    assert [order.index(d.layer) for d in drift] == sorted(order.index(d.layer) for d in drift)
    assert drift[0].layer == "/conv1/Conv" and drift[-1].op_type == "Gemm"
    for d in drift:
        assert 10 < d.sqnr_db < 80 and 0.99 < d.cosine <= 1.0001, d
        assert d.input_sqnr_db is not None and d.local_db == pytest.approx(d.input_sqnr_db - d.sqnr_db, abs=2e-3)
        assert d.clipped_share < 0.01  # min-max ranges clip only what the calibration images did not reach
    item = to_json(drift[0])
    assert {"tensor", "sqnr_db", "cosine", "local_db", "clipped_share"} <= set(item)


def test_entropy_drift_starts_at_the_stem(reference):
    """Entropy clips the input at the background's spike: the stem is where most is lost, its input clipped."""
    fp32, calib, sample = reference
    int8 = calibrate_and_quantize(fp32, calib, QuantizeConfig(get_quant_scheme("onnxruntime"), "entropy"), progress=False).model
    drift = layer_drift(fp32, int8, sample)
    worst = worst_layers(drift, 3)
    assert worst[0].layer == "/conv1/Conv" and worst[0].clipped_share > 0.1
    assert drift[0].sqnr_db < 10
    table = worst_layers_table(drift)
    assert len(table) == 11 and "/conv1/Conv" in table[1]
    figure = plot_layer_drift(drift)
    assert figure.axes[0].get_title() == "Where the drift starts"


def test_compile_reports_layer_drift_and_evaluate_prints_the_worst(ort_artifact, small_data):
    import json

    from helpers import run_cli

    report = json.loads((ort_artifact / "report.json").read_text())
    drift = report["layer_drift"]
    assert len(drift) >= 20 and all({"tensor", "sqnr_db", "local_db", "clipped_share"} <= set(d) for d in drift)
    assert [d["depth"] for d in drift] == list(range(len(drift)))
    result = run_cli("evaluate", str(ort_artifact / "model.int8.onnx"), "--model", "resnet20", "--eval", str(small_data["eval"]),
                     "--layers")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("depth"))
    names = {d["layer"] for d in drift}
    assert len(lines[header + 1 :]) == 10 and all(line.split()[1] in names for line in lines[header + 1 :])


@pytest.mark.slow
def test_compile_auto_on_the_reference_model(tmp_path):
    """The issue's acceptance: auto names what it shipped and every candidate's score, and loses < 0.3 points."""
    import json

    from helpers import run_cli

    out = tmp_path / "auto"
    result = run_cli("compile", "--target", "ort-cpu", "--method", "auto", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    calibration = report["calibration"]
    assert calibration["requested"] == "auto" and report["method"] == calibration["method"] != "auto"
    assert {c["method"] for c in calibration["candidates"]} == {"minmax", "percentile", "entropy", "mse"}
    assert all(isinstance(c["score"], float) for c in calibration["candidates"])
    assert report["drop_pts"] < 0.3
    assert report["layer_drift"][0]["tensor"]
