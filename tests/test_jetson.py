"""The Jetson bundle, as far as it can be proven without TensorRT or a GPU.

The parser rules are checked statically; build_engine.sh is run against a
stand-in trtexec that only records its arguments (that tests our script's choices,
not TensorRT); the Python scripts are type-checked against TensorRT's published
API stubs. Engines and their numerics are not run here.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeresnet.targets import get_target
from edgeresnet.targets.tensorrt.calibration_cache import activation_scales, cache_version_tag, read_calibration_cache
from edgeresnet.targets.tensorrt.parser_rules import check_model

from helpers import compile_small, run_cli


# --- one bad model per parser rule ----------------------------------------------------------------

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


def test_trt85_wants_explicit_dq_zero_points():
    model = _qdq_conv_model()
    dq = next(n for n in model.graph.node if n.name == "act_dq")
    del dq.input[2]
    assert check_model(model, "8.6").passed
    report = check_model(model, "8.5")
    assert [f.rule for f in report.errors] == ["dq-zero-point-input"] and report.errors[0].node == "act_dq"


def test_trt85_wants_explicit_q_zero_points():
    model = _qdq_conv_model()
    q = next(n for n in model.graph.node if n.name == "act_q")
    del q.input[2]
    assert check_model(model, "8.6").passed
    report = check_model(model, "8.5")
    assert [f.rule for f in report.errors] == ["q-zero-point-input"] and report.errors[0].node == "act_q"


def test_opset_ceiling_per_version():
    assert check_model(_qdq_conv_model(opset=20), "10.3").passed
    assert check_model(_qdq_conv_model(opset=21), "11").passed
    assert not check_model(_qdq_conv_model(opset=21), "10.3").passed


def test_inspect_cli_fails_the_ort_profile_model(ort_artifact):
    result = run_cli("inspect", "--trt-version", "8.6", str(ort_artifact / "model.int8.onnx"))
    assert result.returncode == 1
    assert "[int32-bias]" in result.stdout and "[zero-point]" in result.stdout


# --- profiles -------------------------------------------------------------------------------------

def test_profiles():
    nano, agx, xavier = get_target("jetson-orin-nano"), get_target("jetson-agx-orin"), get_target("jetson-xavier-nx")
    assert get_target("jetson").name.startswith("jetson-orin")
    assert nano.details.dla_cores == 0 and agx.details.dla_cores == 2
    assert nano.details.compute_capability == "8.7" and xavier.details.compute_capability == "7.2"
    for orin in ("jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin"):
        jetpacks = get_target(orin).details.jetpack_tensorrt
        assert jetpacks == {"5.1": "8.5.2", "6.0": "8.6.2", "6.1": "10.3.0", "6.2": "10.3.0", "7.2": "10.16.2"}, orin
        assert not any(v.startswith("11") for v in get_target(orin).details.trt_versions)  # no Orin JetPack ships 11.0
    assert xavier.details.jetpack_tensorrt == {"5.1": "8.5.2"} and get_target("jetson-agx-xavier").details.trt_versions == ["8.5.2"]
    thor = get_target("jetson-agx-thor")
    assert thor.details.compute_capability == "11.0" and thor.details.dla_cores == 0
    assert thor.details.jetpack_tensorrt == {"7.1": "10.13.3", "7.2": "10.16.2"}


def test_every_jetpack_fact_has_a_source():
    from edgeresnet.targets.tensorrt.versions import JETPACK_TENSORRT, SOURCES

    for jetpack, trt in JETPACK_TENSORRT.items():
        assert jetpack in SOURCES and trt.rsplit(".", 1)[0] in SOURCES[jetpack], (jetpack, SOURCES.get(jetpack))
    assert {"thor", "dla", "11"} <= set(SOURCES)


def test_targets_json_shows_the_version_map():
    result = run_cli("targets", "--json")
    assert result.returncode == 0, result.stderr
    targets = {t["name"]: t for t in json.loads(result.stdout)}
    assert targets["jetson-agx-orin"]["details"]["jetpack_tensorrt"]["7.2"] == "10.16.2"
    assert "11.0.0" not in json.dumps(targets["jetson-agx-orin"]) and targets["jetson-agx-thor"]["details"]["dla_cores"] == 0


# --- the bundle -----------------------------------------------------------------------------------

def test_bundle_contents_and_parser_checks(jetson_artifact):
    manifest = json.loads((jetson_artifact / "manifest.json").read_text())
    for name in ("model.onnx", "model.dla.onnx", "build_engine.sh", "build_engine.py", "layer_report.py", "run.py",
                 "preprocessing.py", "metrics.py", "README.md", "calibration/TRT-8502.cache", "calibration/TRT-8602.cache",
                 "calibration/TRT-100300.cache", "calibration/TRT-101602.cache"):
        assert name in manifest["files"], name
    assert not any(f.startswith("calibration/TRT-11") or f == "calibration/TRT-101300.cache" for f in manifest["files"])
    report = json.loads((jetson_artifact / "report.json").read_text())
    checks = report["target_details"]["parser_checks"]
    assert all(c["passed"] for c in checks.values()) and set(checks) == {"8.5.2", "8.6.2", "10.3.0", "10.16.2"}
    assert "TensorRT numerics not measured: no TensorRT here" in report["not_measured"][0]
    assert report["int8"]["runtime"].startswith("onnxruntime")


def test_dla_cache_has_a_scale_for_every_tensor_and_keeps_the_qdq_scales(jetson_artifact):
    from edgeresnet.targets.tensorrt.dla import activation_tensors

    qdq_model, dla_model = onnx.load(jetson_artifact / "model.onnx"), onnx.load(jetson_artifact / "model.dla.onnx")
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in dla_model.graph.node)
    expected = activation_scales(qdq_model)
    assert "input" in expected and len(expected) > 10
    for cache in ("TRT-8502", "TRT-8602", "TRT-100300", "TRT-101602"):
        text = (jetson_artifact / f"calibration/{cache}.cache").read_text()
        header, scales = read_calibration_cache(text)
        assert header == f"{cache}-EntropyCalibration2"
        assert {k: scales[k] for k in expected} == expected  # bit-exact float32 round trip of every Q/DQ scale
        # Every tensor TensorRT builds from the Q/DQ-free model has a scale, except the logits (float in the Q/DQ model too).
        assert [t for t in activation_tensors(dla_model) if t not in scales] == [o.name for o in dla_model.graph.output]
        assert set(scales) <= set(activation_tensors(dla_model))
        line = text.splitlines()[1]
        name, value = line.rsplit(": ", 1)
        assert value == struct.pack(">f", scales[name]).hex() and len(value) == 8  # big-endian float32 bits
    report = json.loads((jetson_artifact / "report.json").read_text())["target_details"]["dla"]
    assert report["tensors_without_scale"] == ["logits"] and report["model_file"] == "model.dla.onnx"


def test_dla_model_computes_what_the_fp32_model_computes(jetson_artifact):
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    outputs = [ort.InferenceSession(str(jetson_artifact / f), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
               for f in ("model.dla.onnx", "model.fp32.onnx")]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-3, atol=1e-3)  # Q/DQ-free = float weights, same graph


@pytest.mark.parametrize("version,tag", [
    ("7.1.3", "7103"), ("7.2.2", "7202"), ("8.2.3", "8203"),  # cache headers quoted in NVIDIA/TensorRT#2036 and trtexec logs
    ("8.5.2", "8502"), ("8.5.10", "8510"), ("8.6.2", "8602"),
    ("10.3.0", "100300"), ("10.7.0", "100700"), ("10.16.0", "101600"), ("10.16.1", "101601"),  # trtexec banners [TensorRT vN]
])
def test_cache_header_encodes_nv_tensorrt_version(version, tag):
    from edgeresnet.targets.tensorrt.calibration_cache import restamp

    assert cache_version_tag(version) == tag
    assert restamp("TRT-8600-EntropyCalibration2\ninput: 3c010204\n", version) == f"TRT-{tag}-EntropyCalibration2\ninput: 3c010204\n"


def _graph(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, None) for i in inputs],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_scale_inference_rules():
    """ReLU passes a scale both ways; a pool only forward; a Conv feeding a residual Add takes the Add's scale."""
    from edgeresnet.targets.tensorrt import dla

    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    free = _graph([
        helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w"], ["c2"], name="conv2"),
        helper.make_node("Add", ["c2", "x"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
    ], ["x"], ["f"], [w])
    known = {"x": 0.5, "r1": 0.25, "r2": 0.125}

    class _Model:  # only activation_scales() reads the Q/DQ model; feed it the known scales directly
        pass

    original = dla.activation_scales
    dla.activation_scales = lambda model: dict(known)
    try:
        scales = dla.dla_scales(_Model(), free)
    finally:
        dla.activation_scales = original
    assert scales["c1"] == 0.25  # backward through ReLU
    assert scales["a"] == 0.125 and scales["c2"] == 0.125  # ReLU backward to the Add, then the Conv into the Add
    assert scales["p"] == 0.125 and scales["f"] == 0.125  # forward through the pool and Flatten
    dla.activation_scales = lambda model: {"x": 0.5, "f": 0.01}
    try:
        scales = dla.dla_scales(_Model(), free)
    finally:
        dla.activation_scales = original
    assert scales["p"] == 0.01 and "r2" not in scales  # never backward through a pool: the input would saturate


FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _fake_trtexec(tmp_path: Path, banner: str, layer_info: str = "") -> Path:
    """Records its arguments; writes an engine, a copy of the calibration cache it was given, and a layer-info fixture."""
    script = tmp_path / "trtexec"
    script.write_text(f"""#!/usr/bin/env bash
printf '%s\\n' "$@" > "{tmp_path}/args.txt"
if [ "$1" = "--help" ]; then echo "&&&& RUNNING TensorRT.trtexec [TensorRT {banner}]"; exit 0; fi
for a in "$@"; do case "$a" in
  --saveEngine=*) echo engine > "${{a#--saveEngine=}}" ;;
  --calib=*) cp "${{a#--calib=}}" "{tmp_path}/calib_seen.cache" ;;
  --exportLayerInfo=*) if [ -n "{layer_info}" ]; then cp "{layer_info}" "${{a#--exportLayerInfo=}}"; fi ;;
esac; done
""")
    script.chmod(0o755)
    return script


def _build(bundle: Path, tmp_path: Path, version: str, *args: str, banner: str = "v0",
           layer_info: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    (tmp_path / "args.txt").unlink(missing_ok=True)
    trtexec = _fake_trtexec(tmp_path, banner, layer_info)
    env = {**os.environ, "TRTEXEC": str(trtexec), "JETSON_MODEL": "NVIDIA Jetson Orin NX Developer Kit", "L4T_VERSION": "36.3.0"}
    if version:
        env["TRT_VERSION"] = version
    result = subprocess.run(["bash", str(bundle / "build_engine.sh"), "--force", *args], env=env, capture_output=True, text=True)
    recorded = (tmp_path / "args.txt").read_text().split("\n") if (tmp_path / "args.txt").exists() else []
    return result, recorded


@pytest.mark.parametrize("version,expected,absent", [
    ("8.5.2", ["--int8", "--fp16"], ["--stronglyTyped"]),
    ("8.6.2", ["--int8", "--fp16"], ["--stronglyTyped"]),
    ("10.3.0", ["--stronglyTyped"], ["--int8", "--fp16"]),
    ("10.16.2", ["--stronglyTyped"], ["--int8", "--fp16"]),
    ("11.4.1", [], ["--int8", "--fp16", "--stronglyTyped"]),
])
def test_build_engine_sh_flags_per_version(jetson_artifact, tmp_path, version, expected, absent):
    bundle = tmp_path / "bundle"
    shutil.copytree(jetson_artifact, bundle)
    result, args = _build(bundle, tmp_path, version)
    assert result.returncode == 0, result.stderr
    for flag in expected:
        assert flag in args
    for flag in absent:
        assert flag not in args
    sha = json.loads((bundle / "bundle.json").read_text())["model_sha256"]
    engine = f"nvidia-jetson-orin-nx-developer-kit_L4T-36.3.0_TRT-{version}_{sha[:16]}.engine"
    assert f"--saveEngine={bundle}/engines/{engine}.partial" in args and (bundle / "engines" / engine).is_file()
    assert f"--onnx={bundle}/model.onnx" in args and not any(a.startswith("--calib") for a in args)
    assert f"--timingCacheFile={bundle}/engines/timing-TRT-{version}.cache" in args  # one timing cache per version
    assert any(a.startswith("--exportLayerInfo=") for a in args) and "--profilingVerbosity=detailed" in args
    assert not any(a.startswith("--useDLACore") for a in args)


def test_build_engine_sh_reads_the_version_from_trtexec(jetson_artifact, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(jetson_artifact, bundle)
    result, args = _build(bundle, tmp_path, "", banner="v100300")
    assert result.returncode == 0, result.stderr
    assert "--stronglyTyped" in args and any("_TRT-10.3.0_" in a for a in args)


def test_build_engine_sh_dla_only_where_the_profile_has_it(jetson_artifact, tmp_path, small_data):
    bundle = tmp_path / "bundle"
    shutil.copytree(jetson_artifact, bundle)  # Orin NX: 2 DLA cores
    result, args = _build(bundle, tmp_path, "8.6.2", "--dla", "1")
    assert result.returncode == 0, result.stderr
    assert "--useDLACore=1" in args and "--allowGPUFallback" in args
    result, _ = _build(bundle, tmp_path, "8.6.2", "--dla", "2")
    assert result.returncode == 2 and "--dla takes 0..1" in result.stderr
    nano = tmp_path / "nano"
    from helpers import compile_small

    assert compile_small("jetson-orin-nano", nano, small_data).returncode == 0
    (tmp_path / "args.txt").unlink(missing_ok=True)
    result, args = _build(nano, tmp_path, "10.3.0", "--dla", "0")
    assert result.returncode == 2 and "has no DLA cores" in result.stderr and not args


@pytest.mark.parametrize("version,tag", [("8.5.2", "8502"), ("10.3.1", "100301"), ("10.16.0", "101600")])
def test_build_engine_sh_dla_recipe(jetson_artifact, tmp_path, version, tag):
    """--dla: the Q/DQ-free model, the cache of this TensorRT line re-stamped with the exact version, INT8+FP16, fallback."""
    bundle = tmp_path / "bundle"
    shutil.copytree(jetson_artifact, bundle)
    result, args = _build(bundle, tmp_path, version, "--dla", "0", layer_info=str(FIXTURES / "trt_layer_info_dla.json"))
    assert result.returncode == 0, result.stderr
    assert f"--onnx={bundle}/model.dla.onnx" in args
    assert {"--int8", "--fp16", "--useDLACore=0", "--allowGPUFallback"} <= set(args) and "--stronglyTyped" not in args
    calib = next(a for a in args if a.startswith("--calib="))
    seen = (tmp_path / "calib_seen.cache").read_text()
    shipped = {"8.5": "TRT-8502", "10.3": "TRT-100300", "10.16": "TRT-101602"}[version.rsplit(".", 1)[0]]
    assert seen.splitlines()[0] == f"TRT-{tag}-EntropyCalibration2"  # the device's exact version, patch included
    assert seen.splitlines()[1:] == (bundle / f"calibration/{shipped}.cache").read_text().splitlines()[1:]
    assert calib.endswith(".calib.cache") and f"TRT-{tag}" in calib
    assert f"--timingCacheFile={bundle}/engines/timing-TRT-{version}.cache" in args
    assert any(a.endswith("_dla0.engine.partial") for a in args)
    assert not any(a.startswith("--minShapes") for a in args)  # a static bundle: shapes come from the model
    # The layer report read the exported layer information: the DLA subgraph and the GPU fallback layer.
    assert "2 layers: 1 on DLA, 1 on GPU" in result.stdout and "DLA precision: INT8 1" in result.stdout
    assert "GPU precision: FP16 1" in result.stdout


def test_build_engine_sh_dla_pins_float_layers_to_fp16(jetson_artifact, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(jetson_artifact, bundle)
    env = (bundle / "bundle.env").read_text()
    assert "DLA_FP16_LAYERS=''" in env  # nothing kept in float in this bundle
    (bundle / "bundle.env").write_text(env.replace("DLA_FP16_LAYERS=''", "DLA_FP16_LAYERS=/fc/Gemm:fp16,/layer1/layer1.0/Add:fp16"))
    result, args = _build(bundle, tmp_path, "10.3.0", "--dla", "0")
    assert result.returncode == 0, result.stderr
    assert "--precisionConstraints=prefer" in args and "--layerPrecisions=/fc/Gemm:fp16,/layer1/layer1.0/Add:fp16" in args
    result, args = _build(bundle, tmp_path, "10.3.0")  # GPU builds take the precision from the ONNX types instead
    assert not any(a.startswith("--layerPrecisions") for a in args)


def test_build_engine_sh_dla_refused_on_tensorrt_11(jetson_artifact, tmp_path):
    result, args = _build(jetson_artifact, tmp_path, "11.4.1", "--dla", "0")
    assert result.returncode == 3 and "has no calibrators" in result.stderr and "11.4.1" in result.stderr
    assert not any(a.startswith("--onnx") for a in args)


def test_build_engine_sh_dla_without_a_cache_for_the_line_exits_3(jetson_artifact, tmp_path):
    result, _ = _build(jetson_artifact, tmp_path, "10.7.0", "--dla", "0")
    assert result.returncode == 3 and "no DLA calibration cache for TensorRT 10.7" in result.stderr


def test_layer_report_checks_each_residual_block_on_gpu_builds(jetson_artifact, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(jetson_artifact, bundle)
    result, _ = _build(bundle, tmp_path, "10.3.0", layer_info=str(FIXTURES / "trt_layer_info_gpu.json"))
    assert result.returncode == 0, result.stderr
    blocks = json.loads((bundle / "bundle.json").read_text())["residual_blocks"]
    assert len(blocks) == 9 and blocks[0] == {"add": "/layer1/layer1.0/Add", "conv": "/layer1/layer1.0/conv2/Conv",
                                              "relu": "/layer1/layer1.0/relu_1/Relu"}
    assert "8 residual blocks fused into one INT8 Conv+Add+ReLU layer each" in result.stdout
    assert "warning: residual block /layer3/layer3.2/Add: Conv+Add fused but outputs FP32, not INT8" in result.stdout
    summary = json.loads(next((bundle / "engines").glob("*.layers.summary.json")).read_text())
    assert summary["dla"] == 0 and summary["gpu"] == 24 and summary["bookkeeping"] == 1
    assert summary["precision"]["GPU"] == {"INT8": 21, "FP32": 3}


def test_layer_report_names_only_info_asks_for_detailed(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "targets" / "tensorrt" / "templates"))
    try:
        import layer_report
    finally:
        sys.path.pop(0)
    summary = layer_report.summarize({"Layers": ["/conv1/Conv + /relu/Relu"]}, [], dla=False)
    assert not summary["detailed"] and "--profilingVerbosity=detailed" in layer_report.describe(summary)
    dla_all_gpu = layer_report.summarize(json.loads((FIXTURES / "trt_layer_info_gpu.json").read_text()), [], dla=True)
    assert "every layer fell back to the GPU" in dla_all_gpu["warnings"][0]


def test_build_engine_sh_fp16_baseline(jetson_artifact, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(jetson_artifact, bundle)
    result, args = _build(bundle, tmp_path, "10.3.0", "--fp16-baseline")
    assert result.returncode == 0, result.stderr
    assert f"--onnx={bundle}/model.fp32.onnx" in args and "--fp16" in args
    assert not {"--int8", "--stronglyTyped"} & set(args) and any(a.endswith("_fp16.engine.partial") for a in args)
    result, _ = _build(bundle, tmp_path, "11.4.1", "--fp16-baseline")
    assert result.returncode == 3 and "FP16-typed ONNX" in result.stderr
    result, _ = _build(bundle, tmp_path, "10.3.0", "--fp16-baseline", "--dla", "0")
    assert result.returncode == 2


def test_build_engine_sh_without_trtexec_exits_3(jetson_artifact, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRTEXEC"}
    env["PATH"] = "/usr/bin:/bin"
    result = subprocess.run(["bash", str(jetson_artifact / "build_engine.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 3 and "trtexec not found" in result.stderr


def test_shell_script_passes_bash_n_and_shellcheck(jetson_artifact):
    assert subprocess.run(["bash", "-n", str(jetson_artifact / "build_engine.sh")]).returncode == 0
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is installed by the project's set-up (apt)"
    result = subprocess.run([shellcheck, "-x", "build_engine.sh"], cwd=jetson_artifact, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


STUBS = Path(os.environ.get("EDGERESNET_TRT_STUBS", Path(__file__).resolve().parents[1] / ".cache" / "tensorrt-stubs"))


def _stub_api() -> dict[str, set[str]]:
    """Top-level names of TensorRT 10.13's published stubs, each with the names defined in its body."""
    import re

    text = (STUBS / "tensorrt_bindings" / "tensorrt.pyi").read_text() + "\n" + (STUBS / "tensorrt" / "__init__.pyi").read_text()
    api: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        top = re.match(r"^(?:class|def)\s+(\w+)|^(\w+)\s*[:=]", line)
        if top:
            current = top.group(1) or top.group(2)
            api.setdefault(current, set())
            continue
        member = re.match(r"^    (?:def\s+(\w+)|(\w+)\s*[:=])", line)
        if member and current:
            api[current].add(member.group(1) or member.group(2))
    return api


def test_device_scripts_use_only_documented_tensorrt_names(jetson_artifact):
    """Every trt.X and trt.X.Y in build_engine.py and run.py exists in TensorRT 10.13's type stubs.

    The stubs (tensorrt-stubs on PyPI, unpacked by the test set-up) do not parse under
    mypy, so this checks names, not types; the scripts run for real only on a device.
    """
    import ast

    assert STUBS.is_dir(), f"{STUBS}: the test set-up unpacks tensorrt-stubs here"
    api = _stub_api()
    assert {"Builder", "OnnxParser", "Runtime", "BuilderFlag"} <= set(api)
    used = set()
    for script in ("build_engine.py", "run.py"):
        tree = ast.parse((jetson_artifact / script).read_text())
        compile(tree, script, "exec")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("trt", "self.trt"):
                used.add((node.attr, None))
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "trt"):
                used.add((node.value.attr, node.attr))
    assert ("Builder", None) in used and ("BuilderFlag", "INT8") in used
    missing = [f"trt.{a}" + (f".{b}" if b else "") for a, b in sorted(used, key=str)
               if a not in api or (b is not None and b not in api[a])]
    assert not missing, f"not in TensorRT's API: {missing}"


def test_device_scripts_import_without_tensorrt(jetson_artifact):
    code = "import sys; sys.path.insert(0, '.'); import build_engine, run; print(build_engine.engine_path('10.3.0', build_engine.load_config()).name)"
    env = {**os.environ, "JETSON_MODEL": "Jetson Orin NX", "L4T_VERSION": "36.3.0"}
    result = subprocess.run([sys.executable, "-c", code], cwd=jetson_artifact, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("jetson-orin-nx_L4T-36.3.0_TRT-10.3.0_")


def test_dynamic_batch_bundle_passes_profile_bounds(tmp_path, small_data):
    bundle = tmp_path / "dynamic"
    result = compile_small("jetson-agx-orin", bundle, small_data, "--dynamic-batch", "1,8,32")
    assert result.returncode == 0, result.stderr
    model = onnx.load(bundle / "model.onnx")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    report = json.loads((bundle / "report.json").read_text())
    assert all(c["passed"] for c in report["target_details"]["parser_checks"].values())
    run, args = _build(bundle, tmp_path, "10.3.0")
    assert run.returncode == 0, run.stderr
    assert "--minShapes=input:1x3x32x32" in args and "--optShapes=input:8x3x32x32" in args
    assert "--maxShapes=input:32x3x32x32" in args
    config = json.loads((bundle / "bundle.json").read_text())
    assert config["dynamic_shapes"]["max"] == [32, 3, 32, 32] and config["input_shape"][0] == 8
    run, args = _build(bundle, tmp_path, "10.3.0", "--dla", "1")
    assert run.returncode == 0, run.stderr
    # DLA needs static shapes: min = opt = max = the optimal batch
    assert {"--minShapes=input:8x3x32x32", "--optShapes=input:8x3x32x32", "--maxShapes=input:8x3x32x32"} <= set(args)
    assert "static" in run.stderr


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
        assert set(per_version) == {"8.5.2", "8.6.2", "10.3.0", "10.16.2", "8.5.2 (DLA)", "8.6.2 (DLA)", "10.3.0 (DLA)", "10.16.2 (DLA)"}
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
    stated = _float_layer_precisions(fallback, ["8.5.2", "10.3.0", "11.4.1"], has_dla=True)
    per_version = stated["layers"]["/layer1/layer1.0/Add"]
    assert set(per_version) == {"8.5.2", "10.3.0", "11.4.1", "8.5.2 (DLA)", "10.3.0 (DLA)"}  # no DLA recipe on 11
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


def test_labelled_folders_map_by_name_safe_name_or_index(jetson_artifact):
    sys.path.insert(0, str(jetson_artifact))  # the shipped device_io.py beside the shipped preprocessing.py
    try:
        from device_io import class_index_of_folder, folder_name
    finally:
        sys.path.pop(0)
    classes = ["T-shirt/top", "Trouser", "Pullover"]
    assert folder_name("T-shirt/top") == "T-shirt_top"
    assert class_index_of_folder("T-shirt_top", classes) == 0  # the class name cannot be a folder name
    assert class_index_of_folder("Trouser", classes) == 1 and class_index_of_folder("2", classes) == 2
    assert class_index_of_folder("Coat", classes) is None and class_index_of_folder("7", classes) is None


def test_build_engine_py_restamps_the_dla_cache_and_refuses_tensorrt_11(jetson_artifact):
    code = """
import sys; sys.path.insert(0, '.')
import build_engine
config = build_engine.load_config()
print(build_engine.dla_calibration_cache('10.16.1', config).decode().splitlines()[0])
print(build_engine.engine_path('10.3.0', config, fp16_baseline=True).name.endswith('_fp16.engine'))
try:
    build_engine.dla_calibration_cache('11.4.1', config)
except SystemExit as exc:
    print('refused:', 'no calibrators' in str(exc))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=jetson_artifact, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["TRT-101601-EntropyCalibration2", "True", "refused: True"]
