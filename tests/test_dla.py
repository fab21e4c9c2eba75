"""The DLA recipe (targets/tensorrt/dla.py): the Q/DQ-free model, a scale for every tensor DLA runs, NVIDIA's rules."""

import json
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeresnet.targets.tensorrt.calibration_cache import activation_scales, read_calibration_cache


def test_dla_cache_has_a_scale_for_every_tensor_and_keeps_the_qdq_scales(jetson_artifact):
    from edgeresnet.targets.tensorrt.dla import UNARY_SCALE, activation_tensors

    qdq_model, dla_model = onnx.load(jetson_artifact / "model.onnx"), onnx.load(jetson_artifact / "model.dla.onnx")
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in dla_model.graph.node)
    expected = activation_scales(qdq_model)
    assert "input" in expected and len(expected) > 10
    blocks = json.loads((jetson_artifact / "bundle.json").read_text())["residual_blocks"]
    conv_outputs = {n.name: n.output[0] for n in dla_model.graph.node}
    for cache in ("TRT-8602", "TRT-100300"):
        text = (jetson_artifact / f"calibration/{cache}.cache").read_text()
        header, scales = read_calibration_cache(text)
        assert header == f"{cache}-EntropyCalibration2"
        assert {k: scales[k] for k in expected} == expected  # bit-exact float32 round trip of every Q/DQ scale
        # Every tensor TensorRT builds from the Q/DQ-free model has a scale, except the logits (float in the Q/DQ model too).
        assert [t for t in activation_tensors(dla_model) if t not in scales] == [o.name for o in dla_model.graph.output]
        # NVIDIA's unary scale between each residual block's Conv and its Add (qdq-translator --add_unary_ew_scales_for_dla).
        assert all(scales[conv_outputs[b["conv"]]] == UNARY_SCALE for b in blocks)
        name, value = text.splitlines()[1].rsplit(": ", 1)
        assert value == struct.pack(">f", scales[name]).hex() and len(value) == 8  # big-endian float32 bits
    report = json.loads((jetson_artifact / "report.json").read_text())["target_details"]["dla"]
    assert report["tensors_without_scale"] == ["logits"] and report["model_file"] == "model.dla.onnx"
    assert report["refused_on"] == ["8.5.2", "10.16.2"] and report["int8_layers"] == 30


def test_dla_model_computes_what_the_fp32_model_computes(jetson_artifact):
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    outputs = [ort.InferenceSession(str(jetson_artifact / f), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
               for f in ("model.dla.onnx", "model.fp32.onnx")]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-3, atol=1e-3)  # Q/DQ-free = float weights, same graph


def _graph(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, None) for i in inputs],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _scales(free, known):
    from edgeresnet.targets.tensorrt import dla

    class _Model:  # only activation_scales() reads the Q/DQ model; feed it the known scales directly
        pass

    original = dla.activation_scales
    dla.activation_scales = lambda model: dict(known)
    try:
        return dla.dla_scales(_Model(), free)
    finally:
        dla.activation_scales = original


def _block():
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    return _graph([
        helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w"], ["c2"], name="conv2"),
        helper.make_node("Add", ["c2", "x"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
    ], ["x"], ["f"], [w])


def test_scale_inference_rules():
    """ReLU passes a scale both ways; a pool only forward; a Conv feeding a residual Add gets NVIDIA's unary 1.0."""
    free = _block()
    scales = _scales(free, {"x": 0.5, "r1": 0.25, "r2": 0.125})
    assert scales["c1"] == 0.25  # backward through ReLU
    assert scales["a"] == 0.125  # ReLU backward to the Add
    assert scales["c2"] == 1.0  # unary: DLA >= 3.13 fuses Conv+Add and scales the accumulator by the weights only
    assert scales["p"] == 0.125 and scales["f"] == 0.125  # forward through the pool and Flatten
    scales = _scales(free, {"x": 0.5, "f": 0.01})
    assert scales["p"] == 0.01 and "r2" not in scales  # never backward through a pool: the input would saturate


def test_unary_scale_only_where_the_other_add_input_is_not_unary_and_int8_layers():
    """Two Conv outputs into one Add: one unary scale, as the translator does; the other Conv stays without."""
    from edgeresnet.targets.tensorrt.dla import int8_layers

    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    free = _graph([
        helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1"),
        helper.make_node("Conv", ["x", "w"], ["c2"], name="conv2"),
        helper.make_node("Add", ["c1", "c2"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
    ], ["x"], ["r"], [w])
    scales = _scales(free, {"x": 0.5, "r": 0.25})
    assert scales["c1"] == 1.0 and "c2" not in scales
    assert int8_layers(free, scales) == ["conv1"]  # conv2's output and so the Add have no scale: not pinned
