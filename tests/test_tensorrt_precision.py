"""Layers kept in float compute FP16 on every TensorRT line, on DLA and on the host (targets/tensorrt/precision.py)."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from edgeresnet.targets.tensorrt.parser_rules import check_model
from helpers import run_cli


@pytest.mark.slow
def test_max_drop_fallback_states_each_float_layers_precision_per_tensorrt(tmp_path):
    """A forced fallback (calibration on near-zero inputs saturates INT8): the report states each float layer's precision."""
    calib = tmp_path / "tiny.npy"  # the default model's input is 1x28x28; these ranges are ~20x too small
    np.save(calib, (0.05 * np.random.default_rng(0).standard_normal((8, 1, 28, 28))).astype(np.float32))
    out = tmp_path / "fallback"
    result = run_cli("compile", "--target", "jetson-orin-nx", "--calib", str(calib), "--eval-samples", "300",
                     "--max-drop", "0.5", "--out", str(out))
    report = json.loads((out / "report.json").read_text())
    assert report["fallback_layers"], f"no fallback happened; the test needs a harder case ({result.stderr[-300:]})"
    stated = report["target_details"]["float_layers"]
    assert set(stated["layers"]) == set(report["fallback_layers"])
    for layer in report["fallback_layers"]:
        per_version = stated["layers"][layer]
        assert set(per_version) == {"8.5.2", "8.6.2", "10.3.0", "10.16.2", "8.6.2 (DLA)", "10.3.0 (DLA)"}  # DLA only where the line has it
        assert all(precision.startswith("FP16") for precision in per_version.values()), per_version
    assert stated["host_measured"].startswith("FP16")  # the host ran the same FP16-typed layers
    env = (out / "bundle.env").read_text()
    assert all(f"{layer}:fp16" in env for layer in report["fallback_layers"])  # DLA pins them to FP16
    _assert_fp16_region(onnx.load(out / "model.onnx"), report["fallback_layers"])


def _assert_fp16_region(model, layers):
    """Each layer reads only FP16 tensors (a Cast to FP16 or an FP16 initializer) and no dequantized input."""
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.name in layers]
    assert len(nodes) == len(layers)
    for node in nodes:
        for name in filter(None, node.input):
            if name in inits:
                assert inits[name].data_type == TensorProto.FLOAT16, (node.name, name)
            else:
                cast = producers[name]
                assert cast.op_type == "Cast" and cast.attribute[0].i == TensorProto.FLOAT16, (node.name, name)


def test_float_layers_found_and_their_precision_stated_per_version(jetson_artifact):
    from edgeresnet.quantize import keep_in_float
    from edgeresnet.targets.tensorrt.backend import TENSORRT_SCHEME, _float_layer_precisions
    from edgeresnet.targets.tensorrt.dla import float_layers

    model = onnx.load(jetson_artifact / "model.onnx")
    assert float_layers(model, TENSORRT_SCHEME.op_types) == []
    kept = ["/layer3/layer3.2/conv2/Conv", "/layer1/layer1.0/Add"]
    fallback = float_layers(keep_in_float(model, kept), TENSORRT_SCHEME.op_types)
    assert sorted(fallback) == sorted(kept)
    stated = _float_layer_precisions(fallback, ["8.5.2", "10.3.0", "10.16.2", "11.4.1"], "Jetson AGX Orin")
    per_version = stated["layers"]["/layer1/layer1.0/Add"]
    assert set(per_version) == {"8.5.2", "10.3.0", "10.16.2", "11.4.1", "10.3.0 (DLA)", "11.4.1 (DLA)"}
    assert "strongly typed" in per_version["11.4.1 (DLA)"] and "--layerPrecisions" in per_version["10.3.0 (DLA)"]
    assert all(p.startswith("FP16") for p in per_version.values()) and stated["host_measured"].startswith("FP16")


def test_float_layers_become_an_fp16_region_the_host_runs_too(jetson_artifact):
    """The float layers compute FP16 on every TensorRT and in ONNX Runtime: same graph, FP16 rounding only."""
    import onnxruntime as ort

    from edgeresnet.quantize import keep_in_float
    from edgeresnet.targets.tensorrt.precision import fp16_regions

    kept = ["/layer3/layer3.2/conv2/Conv", "/layer1/layer1.0/Add", "/fc/Gemm"]
    float_model = keep_in_float(onnx.load(jetson_artifact / "model.onnx"), kept)
    half = fp16_regions(float_model, kept)
    _assert_fp16_region(half, kept)
    assert all(check_model(half, v).passed for v in ("8.5", "8.6", "10.3", "11"))
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    full, reduced = run(float_model), run(half)
    assert 0 < np.abs(full - reduced).max() < 1e-2 * np.abs(full).max()  # FP16 rounding: present, and small
