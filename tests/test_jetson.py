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
    assert nano.details.jetpack_tensorrt["5.1"] == "8.5.2" and nano.details.jetpack_tensorrt["6.0"] == "8.6.2"
    assert nano.details.jetpack_tensorrt["6.1"] == "10.3.0" and xavier.details.jetpack_tensorrt == {"5.1": "8.5.2"}
    assert nano.details.trt_versions[0] == "8.5.2" and nano.details.trt_versions[-1].startswith("11")


# --- the bundle -----------------------------------------------------------------------------------

def test_bundle_contents_and_parser_checks(jetson_artifact):
    manifest = json.loads((jetson_artifact / "manifest.json").read_text())
    for name in ("model.onnx", "build_engine.sh", "build_engine.py", "run.py", "preprocessing.py", "README.md",
                 "calibration/TRT-8502.cache", "calibration/TRT-100300.cache"):
        assert name in manifest["files"], name
    report = json.loads((jetson_artifact / "report.json").read_text())
    checks = report["target_details"]["parser_checks"]
    assert all(c["passed"] for c in checks.values()) and {"8.5.2", "8.6.2", "10.3.0"} <= set(checks)
    assert any(v.startswith("11") for v in checks)
    assert "TensorRT numerics not measured: no TensorRT here" in report["not_measured"][0]
    assert report["int8"]["runtime"].startswith("onnxruntime")


def test_calibration_cache_round_trips(jetson_artifact):
    model = onnx.load(jetson_artifact / "model.onnx")
    expected = activation_scales(model)
    assert "input" in expected and len(expected) > 10
    header, scales = read_calibration_cache((jetson_artifact / "calibration/TRT-8502.cache").read_text())
    assert header == "TRT-8502-EntropyCalibration2"
    assert scales == expected  # bit-exact float32 round trip
    line = (jetson_artifact / "calibration/TRT-8502.cache").read_text().splitlines()[1]
    name, value = line.rsplit(": ", 1)
    assert value == struct.pack(">f", expected[name]).hex() and len(value) == 8  # big-endian float32 bits
    assert cache_version_tag("8.5.2") == "8502" and cache_version_tag("10.3.0") == "100300" and cache_version_tag("10.13.1") == "101301"


def _fake_trtexec(tmp_path: Path, banner: str) -> Path:
    script = tmp_path / "trtexec"
    script.write_text(f"""#!/usr/bin/env bash
printf '%s\\n' "$@" > "{tmp_path}/args.txt"
if [ "$1" = "--help" ]; then echo "&&&& RUNNING TensorRT.trtexec [TensorRT {banner}]"; exit 0; fi
for a in "$@"; do case "$a" in --saveEngine=*) echo engine > "${{a#--saveEngine=}}" ;; esac; done
""")
    script.chmod(0o755)
    return script


def _build(bundle: Path, tmp_path: Path, version: str, *args: str, banner: str = "v0") -> tuple[subprocess.CompletedProcess, list[str]]:
    trtexec = _fake_trtexec(tmp_path, banner)
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
    ("11.0.0", [], ["--int8", "--fp16", "--stronglyTyped"]),
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
    assert f"--timingCacheFile={bundle}/engines/timing.cache" in args
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
