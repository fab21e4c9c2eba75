"""build_engine.py under a stand-in tensorrt module that records the calls (tests/standin/README.md).

The names the script uses are checked against TensorRT's published stubs; what it asks
the builder for is checked on the stand-in's record; the bundle verifies after every build.
"""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jetson_standins import FIXTURES, copy_bundle, run_python, trt_calls, verify


@pytest.fixture
def bundle(jetson_artifact, tmp_path):
    return copy_bundle(jetson_artifact, tmp_path)


def builds(tmp_path):
    return [c for c in trt_calls(tmp_path) if c["call"] == "build_serialized_network"]


def test_dla_refused_on_tensorrt_10_16_with_one_line_and_exit_3(bundle, tmp_path):
    result = run_python(bundle, tmp_path, "build_engine.py", "--dla", "0", version="10.16.2")
    assert result.returncode == 3 and result.stderr.strip().splitlines() == [
        "build_engine.py: TensorRT 10.16.2 has no DLA on Jetson Orin NX; TensorRT lines with DLA there: "
        "8.6, 10.3 (calibration cache). Build for the GPU, or use one of those lines"]
    assert not builds(tmp_path)  # the builder never saw a DLA core
    result = run_python(bundle, tmp_path, "build_engine.py", "--dla", "0", version="11.4.1")
    assert result.returncode == 3 and "no DLA on Jetson Orin NX" in result.stderr and not builds(tmp_path)


def test_dla_build_on_tensorrt_10_3(bundle, tmp_path):
    result = run_python(bundle, tmp_path, "build_engine.py", "--dla", "1", version="10.3.1",
                        layer_info=str(FIXTURES / "trt_layer_info_dla.json"))
    assert result.returncode == 0, result.stderr
    (built,) = builds(tmp_path)
    assert built["model"] == str(bundle / "model.dla.onnx") and built["device"] == "DLA" and built["dla_core"] == 1
    assert {"INT8", "FP16", "GPU_FALLBACK", "OBEY_PRECISION_CONSTRAINTS"} <= set(built["flags"])
    assert built["calibration_header"] == "TRT-100301-EntropyCalibration2"  # re-stamped with the exact version
    int8 = json.loads((bundle / "bundle.json").read_text())["dla"]["int8_layers"]
    assert built["pinned"] == {name: "INT8" for name in int8}
    engine = Path(result.stdout.strip().splitlines()[-1].removeprefix("built "))
    assert engine.parent == bundle.with_name("bundle.device") / "engines" and engine.name.endswith("_dla1.engine")
    record = json.loads(engine.with_suffix(".build.json").read_text())
    assert record["dla_core"] == 1 and record["route"] == "calibration-cache" and record["tensorrt"] == "10.3.1"
    assert record["built_by"] == "build_engine.py" and "obey" in record["precision"]
    assert "1 on DLA, 1 on GPU" in result.stdout
    assert (engine.parent / "timing-TRT-10.3.1.cache").is_file()
    assert verify(bundle).returncode == 0


def test_dla_core_the_module_lacks_is_refused_before_building(bundle, tmp_path):
    """An 8 GB Orin NX: TensorRT's num_DLA_cores says 1."""
    result = run_python(bundle, tmp_path, "build_engine.py", "--dla", "1", dla_cores=1)
    assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1
    assert "has 1 DLA core (0); --dla 1 is not one of them" in result.stderr and not builds(tmp_path)
    assert not bundle.with_name("bundle.device").exists()


def test_nano_gets_no_dla(tmp_path, small_data):
    from helpers import compile_small

    nano = tmp_path / "nano"
    assert compile_small("jetson-orin-nano", nano, small_data).returncode == 0
    result = run_python(nano, tmp_path, "build_engine.py", "--dla", "0")
    assert result.returncode == 3 and "offers no DLA on Jetson Orin Nano" in result.stderr and not builds(tmp_path)


def test_gpu_build_is_strongly_typed_from_the_qdq_model(bundle, tmp_path):
    result = run_python(bundle, tmp_path, "build_engine.py", version="10.3.0")
    assert result.returncode == 0, result.stderr
    (built,) = builds(tmp_path)
    assert built["model"] == str(bundle / "model.onnx") and built["device"] == "GPU" and built["calibration_header"] is None
    assert "INT8" not in built["flags"] and built["network_flags"] != 0
    again = run_python(bundle, tmp_path, "build_engine.py", version="10.3.0")
    assert again.returncode == 0 and len(builds(tmp_path)) == 1  # up to date: engine and build record cached
    assert verify(bundle).returncode == 0


def test_without_tensorrt_exits_3_with_one_line(bundle, tmp_path):
    result = run_python(bundle, tmp_path, "build_engine.py", with_tensorrt=False)
    assert result.returncode == 3 and result.stderr.strip().splitlines() == [
        "build_engine.py: the tensorrt Python package is missing (JetPack: apt install python3-libnvinfer)"]


def test_cache_restamped_per_exact_version(jetson_artifact):
    code = """
import sys; sys.path.insert(0, '.')
import build_engine
config = build_engine.load_config()
print(build_engine.dla_calibration_cache('10.3.1', config).decode().splitlines()[0])
print(build_engine.engine_path('10.3.0', config, fp16_baseline=True).name.endswith('_fp16.engine'))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=jetson_artifact, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["TRT-100301-EntropyCalibration2", "True"]


def test_module_part_from_the_device_tree(jetson_artifact, tmp_path):
    from jetson_standins import NX_8GB, device_tree

    tree = device_tree(tmp_path, NX_8GB)
    code = "import sys; sys.path.insert(0, '.'); import build_engine; print(build_engine.module_part())"
    env = {**os.environ, "EDGERESNET_DEVICE_TREE": str(tree)}
    result = subprocess.run([sys.executable, "-c", code], cwd=jetson_artifact, capture_output=True, text=True, env=env)
    assert result.stdout.strip() == "p3767-0001", result.stderr


def test_scripts_import_without_tensorrt(jetson_artifact):
    code = "import sys; sys.path.insert(0, '.'); import build_engine, run; print(build_engine.engine_path('10.3.0', build_engine.load_config()))"
    env = {**os.environ, "JETSON_MODEL": "Jetson Orin NX", "L4T_VERSION": "36.3.0"}
    result = subprocess.run([sys.executable, "-c", code], cwd=jetson_artifact, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.name.startswith("jetson-orin-nx_L4T-36.3.0_TRT-10.3.0_") and path.parent.parent.name == jetson_artifact.name + ".device"


STUBS = Path(os.environ.get("EDGERESNET_TRT_STUBS", Path(__file__).resolve().parents[1] / ".cache" / "tensorrt-stubs"))


def _stub_api() -> dict[str, set[str]]:
    """Top-level names of TensorRT 10.13's published stubs, each with the names defined in its body."""
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


def test_scripts_and_the_standin_use_only_documented_tensorrt_names(jetson_artifact):
    """Every trt.X and trt.X.Y in build_engine.py and run.py exists in TensorRT 10.13's type stubs, and the
    stand-in defines them too (so the stand-in tests exercise the same names a device has).

    The stubs (tensorrt-stubs on PyPI, unpacked by the test set-up) do not parse under
    mypy, so this checks names, not types; the scripts run for real only on a device.
    """
    assert STUBS.is_dir(), f"{STUBS}: the test set-up unpacks tensorrt-stubs here"
    api = _stub_api()
    assert {"Builder", "OnnxParser", "Runtime", "BuilderFlag"} <= set(api)
    used = set()
    for script in ("build_engine.py", "run.py"):
        tree = ast.parse((jetson_artifact / script).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trt":
                used.add((node.attr, None))
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "trt"):
                used.add((node.value.attr, node.attr))
    assert ("Builder", None) in used and ("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS") in used
    missing = [f"trt.{a}" + (f".{b}" if b else "") for a, b in sorted(used, key=str)
               if a not in api or (b is not None and b not in api[a])]
    assert not missing, f"not in TensorRT's API: {missing}"
    assert "DLA_core" in api["Runtime"] and "num_DLA_cores" in api["Builder"]
    sys.path.insert(0, str(Path(__file__).resolve().parent / "standin"))
    try:
        import tensorrt as standin
    finally:
        sys.path.pop(0)
        sys.modules.pop("tensorrt", None)  # no other test may find the stand-in as if TensorRT were installed
    absent = [f"{a}.{b}" if b else a for a, b in used if not hasattr(standin, a) or (b and not hasattr(getattr(standin, a), b))]
    assert not absent, f"the stand-in lacks {absent}"


def test_strongly_typed_dla_on_agx_orin_with_tensorrt_11(tmp_path, small_data):
    from helpers import compile_small

    agx = tmp_path / "agx"
    assert compile_small("jetson-agx-orin", agx, small_data).returncode == 0
    result = run_python(agx, tmp_path, "build_engine.py", "--dla", "0", version="11.4.1")
    assert result.returncode == 0, result.stderr
    (built,) = builds(tmp_path)
    assert built["model"] == str(agx / "model.onnx") and built["device"] == "DLA" and built["dla_core"] == 0
    assert built["flags"] == ["GPU_FALLBACK"] and built["calibration_header"] is None and built["pinned"] == {}
    record = json.loads(next(agx.with_name("agx.device").glob("engines/*_dla0.build.json")).read_text())
    assert record["route"] == "strongly-typed" and record["precision"] == "strongly typed (explicit Q/DQ)"
    assert verify(agx).returncode == 0
