"""TensorRT's ONNX parser rules, checked statically: one bad model per rule, and the versions' differences."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeresnet.targets.tensorrt.parser_rules import check_model
from helpers import run_cli


def _qdq_conv_model(*, zero=0, act_scale=(0.1,), w_axis=0, w_scales=4, bias_int32=False, neg_scale=False, op="Conv", opset=17, zp_dtype=np.int8):
    """input -> Q -> DQ -> Conv(weight: Q/DQ, bias) -> output, with one knob per rule."""
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    scales = np.full(w_scales, -0.05 if neg_scale else 0.05, np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array(act_scale, np.float32) if len(act_scale) > 1 else np.float32(act_scale[0]), "a_scale"),
        numpy_helper.from_array(np.array(zero, zp_dtype) if np.ndim(zero) else zp_dtype(zero), "a_zero"),
        numpy_helper.from_array(scales, "w_scale"),
        numpy_helper.from_array(np.zeros(w_scales, np.int8), "w_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "a_scale", "a_zero"], ["xq"], name="act_q", axis=1),
        helper.make_node("DequantizeLinear", ["xq", "a_scale", "a_zero"], ["xd"], name="act_dq", axis=1),
        helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["wq"], name="w_q", axis=w_axis),
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["wd"], name="w_dq", axis=w_axis),
    ]
    conv_inputs = ["xd", "wd"]
    if bias_int32:
        inits += [numpy_helper.from_array(np.zeros(4, np.int32), "b_int"), numpy_helper.from_array(np.full(4, 0.005, np.float32), "b_scale"),
                  numpy_helper.from_array(np.zeros(4, np.int32), "b_zero")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_int", "b_scale", "b_zero"], ["b"], name="bias_dq", axis=0))
        conv_inputs.append("b")
    nodes.append(helper.make_node("Conv", conv_inputs, ["y"], name="conv", pads=[1, 1, 1, 1]))
    out = "y"
    if op != "Conv":
        nodes.append(helper.make_node(op, ["y"], ["z"], name="odd_op", domain="com.microsoft" if op == "FusedGemm" else ""))
        out = "z"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if op == "FusedGemm" else [])
    return helper.make_model(graph, opset_imports=opsets)


def test_good_model_passes_every_version():
    for version in ("8.5", "8.6", "10.3", "11"):
        report = check_model(_qdq_conv_model(), version)
        assert report.passed, report.errors


@pytest.mark.parametrize("kwargs,rule,node", [
    ({"zero": 3}, "zero-point", "act_q"),
    ({"zp_dtype": np.uint8}, "zero-point", "act_q"),
    ({"act_scale": (0.1, 0.2, 0.3)}, "per-axis-activation", "act_q"),
    ({"w_axis": 1, "w_scales": 3}, "per-axis-axis", "w_q"),
    ({"w_scales": 2}, "per-axis-count", "w_q"),
    ({"bias_int32": True}, "int32-bias", "bias_dq"),
    ({"neg_scale": True}, "scale", "w_q"),
    ({"op": "FusedGemm"}, "unsupported-op", "odd_op"),
    ({"op": "StringNormalizer"}, "unsupported-op", "odd_op"),
    ({"opset": 19}, "opset", "model"),
])
def test_each_parser_rule_names_the_node(kwargs, rule, node):
    report = check_model(_qdq_conv_model(**kwargs), "8.6")
    assert not report.passed
    assert any(f.rule == rule and f.node == node for f in report.errors), [str(f) for f in report.errors]


@pytest.mark.parametrize("node,rule", [("act_dq", "dq-zero-point-input"), ("act_q", "q-zero-point-input")])
def test_trt85_wants_explicit_zero_points(node, rule):
    model = _qdq_conv_model()
    del next(n for n in model.graph.node if n.name == node).input[2]
    assert check_model(model, "8.6").passed
    report = check_model(model, "8.5")
    assert [f.rule for f in report.errors] == [rule] and report.errors[0].node == node


def test_opset_ceiling_per_version():
    assert check_model(_qdq_conv_model(opset=20), "10.3").passed
    assert check_model(_qdq_conv_model(opset=21), "11").passed
    assert not check_model(_qdq_conv_model(opset=21), "10.3").passed


def test_inspect_cli_fails_the_ort_profile_model(ort_artifact):
    result = run_cli("inspect", "--trt-version", "8.6", str(ort_artifact / "model.int8.onnx"))
    assert result.returncode == 1
    assert "[int32-bias]" in result.stdout and "[zero-point]" in result.stdout
