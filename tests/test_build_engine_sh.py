"""build_engine.sh against a stand-in trtexec that records its arguments (tests our script's choices, not TensorRT).

After every build the bundle must still verify: engines, build records and caches go to the device folder.
"""

import json
import os
import subprocess

import pytest

from helpers import compile_small
from jetson_standins import FIXTURES, NX_8GB, NX_16GB, build_sh, copy_bundle, device_tree, verify


@pytest.fixture
def bundle(jetson_artifact, tmp_path):
    return copy_bundle(jetson_artifact, tmp_path)


@pytest.fixture(scope="module")
def agx_bundle(tmp_path_factory, small_data):
    """AGX Orin, dynamic batch: TensorRT 11.4.1 is one of its lines (JetPack >= 7.2.2), with strongly typed DLA."""
    folder = tmp_path_factory.mktemp("agx") / "agx"
    result = compile_small("jetson-agx-orin", folder, small_data, "--dynamic-batch", "1,8,32")
    assert result.returncode == 0, result.stderr
    return folder


def engines(bundle):
    return bundle.with_name(bundle.name + ".device") / "engines"


@pytest.mark.parametrize("version,expected,absent", [
    ("8.5.2", ["--int8", "--fp16"], ["--stronglyTyped"]),
    ("8.6.2", ["--int8", "--fp16"], ["--stronglyTyped"]),
    ("10.3.0", ["--stronglyTyped"], ["--int8", "--fp16"]),
    ("10.16.2", ["--stronglyTyped"], ["--int8", "--fp16"]),
    ("11.4.1", [], ["--int8", "--fp16", "--stronglyTyped"]),
])
def test_flags_per_version_and_everything_written_outside_the_bundle(bundle, tmp_path, version, expected, absent):
    result, args = build_sh(bundle, tmp_path, version)
    assert result.returncode == 0, result.stderr
    for flag in expected:
        assert flag in args
    for flag in absent:
        assert flag not in args
    sha = json.loads((bundle / "bundle.json").read_text())["model_sha256"]
    key = f"nvidia-jetson-orin-nx-developer-kit_L4T-36.3.0_TRT-{version}_{sha[:16]}"
    out = engines(bundle)
    assert f"--saveEngine={out}/{key}.engine.partial" in args and (out / f"{key}.engine").is_file()
    assert f"--onnx={bundle}/model.onnx" in args and not any(a.startswith("--calib") for a in args)
    assert f"--timingCacheFile={out}/timing-TRT-{version}.cache" in args  # one timing cache per version
    assert any(a.startswith("--exportLayerInfo=") for a in args) and "--profilingVerbosity=detailed" in args
    assert not any(a.startswith("--useDLACore") for a in args)
    record = json.loads((out / f"{key}.build.json").read_text())
    assert record["schema"] == "edgeresnet.engine-build/1" and record["tensorrt"] == version and record["dla_core"] is None
    assert record["route"] == "gpu" and record["engine"] == f"{key}.engine" and record["model_sha256"] == sha
    assert verify(bundle).returncode == 0  # the bundle stays as shipped


def test_device_dir_option_and_refusal_inside_the_bundle(bundle, tmp_path):
    chosen = tmp_path / "elsewhere"
    result, args = build_sh(bundle, tmp_path, "10.3.0", "--device-dir", str(chosen))
    assert result.returncode == 0, result.stderr
    assert any(a.startswith(f"--saveEngine={chosen}/engines/") for a in args) and not engines(bundle).exists()
    result, args = build_sh(bundle, tmp_path, "10.3.0", "--device-dir", str(bundle / "engines"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "inside the bundle" in result.stderr
    assert not args and verify(bundle).returncode == 0


def test_reads_the_version_from_trtexec(bundle, tmp_path):
    result, args = build_sh(bundle, tmp_path, "", banner="v100300")
    assert result.returncode == 0, result.stderr
    assert "--stronglyTyped" in args and any("_TRT-10.3.0_" in a for a in args)


@pytest.mark.parametrize("version", ["10.16.2", "8.5.2", "11.4.1"])
def test_dla_refused_where_the_tensorrt_line_has_none_on_the_module(bundle, tmp_path, version):
    """Orin NX: DLA on 8.6 and 10.3 only; never a trtexec call with a DLA core elsewhere."""
    result, args = build_sh(bundle, tmp_path, version, "--dla", "0")
    assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"TensorRT {version} has no DLA on Jetson Orin NX" in result.stderr
    assert "TensorRT lines with DLA there: 8.6, 10.3 (calibration cache)" in result.stderr
    assert not args and not engines(bundle).exists()


def test_the_bundle_ships_caches_only_for_lines_with_dla(bundle):
    assert sorted(p.name for p in (bundle / "calibration").iterdir()) == ["TRT-100300.cache", "TRT-8602.cache"]
    env = (bundle / "bundle.env").read_text()
    assert "DLA_LINES='8.6:calibration-cache 10.3:calibration-cache'" in env and "DLA_CACHE_10_16" not in env


def test_the_modules_own_dla_cores_from_the_device_tree(bundle, tmp_path):
    """8 GB Orin NX (P3767-0001): one DLA core; 16 GB (P3767-0000): two. Refused before any build, exit 3."""
    small = device_tree(tmp_path, NX_8GB)
    result, args = build_sh(bundle, tmp_path, "10.3.0", "--dla", "1", tree=small)
    assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1
    assert "has 1 DLA core (0); --dla 1 is not one of them" in result.stderr and not args
    result, args = build_sh(bundle, tmp_path, "10.3.0", "--dla", "0", tree=small)
    assert result.returncode == 0 and "--useDLACore=0" in args
    result, args = build_sh(bundle, tmp_path, "8.6.2", "--dla", "1", tree=device_tree(tmp_path, NX_16GB))
    assert result.returncode == 0, result.stderr
    assert "--useDLACore=1" in args and "--allowGPUFallback" in args
    result, _ = build_sh(bundle, tmp_path, "8.6.2", "--dla", "2", tree=device_tree(tmp_path, NX_16GB))
    assert result.returncode == 3 and "2 DLA cores (0..1)" in result.stderr
    # No device tree (a container without /proc/device-tree): the fewest cores any variant has.
    result, _ = build_sh(bundle, tmp_path, "8.6.2", "--dla", "1")
    assert result.returncode == 3 and "has 1 DLA core (0)" in result.stderr
    record = json.loads(next(engines(bundle).glob("*_dla0.build.json")).read_text())
    assert record["dla_core"] == 0 and record["route"] == "calibration-cache" and record["model_file"] == "model.dla.onnx"
    assert verify(bundle).returncode == 0


def test_nano_has_no_dla(tmp_path, small_data):
    nano = tmp_path / "nano"
    assert compile_small("jetson-orin-nano", nano, small_data).returncode == 0
    assert not (nano / "calibration").exists() and not (nano / "model.dla.onnx").exists()
    result, args = build_sh(nano, tmp_path, "10.3.0", "--dla", "0")
    assert result.returncode == 3 and "offers no DLA on Jetson Orin Nano" in result.stderr and not args


@pytest.mark.parametrize("version,tag", [("8.6.2", "8602"), ("10.3.1", "100301"), ("10.3.0", "100300")])
def test_dla_recipe(bundle, tmp_path, version, tag):
    """--dla: the Q/DQ-free model, the cache of this TensorRT line re-stamped with the exact version, INT8 layers obeyed."""
    result, args = build_sh(bundle, tmp_path, version, "--dla", "0", layer_info=str(FIXTURES / "trt_layer_info_dla.json"))
    assert result.returncode == 0, result.stderr
    assert f"--onnx={bundle}/model.dla.onnx" in args
    assert {"--int8", "--fp16", "--useDLACore=0", "--allowGPUFallback", "--precisionConstraints=obey"} <= set(args)
    assert "--stronglyTyped" not in args
    pins = next(a for a in args if a.startswith("--layerPrecisions=")).split("=", 1)[1].split(",")
    int8 = json.loads((bundle / "bundle.json").read_text())["dla"]["int8_layers"]
    assert pins == [f"{name}:int8" for name in int8] and "/layer1/layer1.0/Add:int8" in pins
    seen = (tmp_path / "calib_seen.cache").read_text()
    shipped = {"8.6": "TRT-8602", "10.3": "TRT-100300"}[version.rsplit(".", 1)[0]]
    assert seen.splitlines()[0] == f"TRT-{tag}-EntropyCalibration2"  # the device's exact version, patch included
    assert seen.splitlines()[1:] == (bundle / f"calibration/{shipped}.cache").read_text().splitlines()[1:]
    calib = next(a for a in args if a.startswith("--calib="))
    assert calib.startswith(f"--calib={engines(bundle)}/") and f"TRT-{tag}" in calib
    assert any(a.endswith("_dla0.engine.partial") for a in args)
    assert not any(a.startswith("--minShapes") for a in args)  # a static bundle: shapes come from the model
    assert "2 layers: 1 on DLA, 1 on GPU" in result.stdout and "DLA precision: INT8 1" in result.stdout
    assert verify(bundle).returncode == 0


def test_dla_pins_float_layers_to_fp16_too(bundle, tmp_path):
    env = (bundle / "bundle.env").read_text()
    assert "DLA_FP16_LAYERS=''" in env  # nothing kept in float in this bundle
    (bundle / "bundle.env").write_text(env.replace("DLA_FP16_LAYERS=''", "DLA_FP16_LAYERS=/fc/Gemm:fp16"))
    result, args = build_sh(bundle, tmp_path, "10.3.0", "--dla", "0")
    assert result.returncode == 0, result.stderr
    assert next(a for a in args if a.startswith("--layerPrecisions=")).endswith(",/fc/Gemm:fp16")
    result, args = build_sh(bundle, tmp_path, "10.3.0")  # GPU builds take the precision from the ONNX types instead
    assert not any(a.startswith("--layerPrecisions") for a in args)


def test_strongly_typed_dla_on_agx_orin_with_tensorrt_11(agx_bundle, tmp_path):
    """TensorRT 11.4 on AGX Orin: DLA from the Q/DQ model itself, strongly typed, GPU fallback, static shapes."""
    bundle = copy_bundle(agx_bundle, tmp_path)
    result, args = build_sh(bundle, tmp_path, "11.4.1", "--dla", "1")
    assert result.returncode == 0, result.stderr
    assert f"--onnx={bundle}/model.onnx" in args and {"--useDLACore=1", "--allowGPUFallback"} <= set(args)
    assert not {"--int8", "--fp16", "--stronglyTyped"} & set(args) and not any(a.startswith(("--calib", "--layerPrecisions")) for a in args)
    assert {"--minShapes=input:8x3x32x32", "--optShapes=input:8x3x32x32", "--maxShapes=input:8x3x32x32"} <= set(args)
    record = json.loads(next(engines(bundle).glob("*_dla1.build.json")).read_text())
    assert record["route"] == "strongly-typed" and record["dla_core"] == 1 and record["tensorrt"] == "11.4.1"
    result, args = build_sh(bundle, tmp_path, "10.16.2", "--dla", "0")
    assert result.returncode == 3 and "8.6, 10.3 (calibration cache), 11.4 (strongly typed Q/DQ)" in result.stderr and not args
    assert verify(bundle).returncode == 0


def test_dynamic_batch_bundle_passes_profile_bounds(agx_bundle, tmp_path):
    bundle = copy_bundle(agx_bundle, tmp_path)
    report = json.loads((bundle / "report.json").read_text())
    assert set(report["target_details"]["parser_checks"]) == {"8.5.2", "8.6.2", "10.3.0", "10.16.2", "11.4.1"}
    assert all(c["passed"] for c in report["target_details"]["parser_checks"].values())
    run, args = build_sh(bundle, tmp_path, "10.3.0")
    assert run.returncode == 0, run.stderr
    assert {"--minShapes=input:1x3x32x32", "--optShapes=input:8x3x32x32", "--maxShapes=input:32x3x32x32"} <= set(args)
    run, args = build_sh(bundle, tmp_path, "10.3.0", "--dla", "1")
    assert run.returncode == 0, run.stderr
    # DLA needs static shapes: min = opt = max = the optimal batch
    assert {"--minShapes=input:8x3x32x32", "--optShapes=input:8x3x32x32", "--maxShapes=input:8x3x32x32"} <= set(args)
    assert "static" in run.stderr


def test_fp16_baseline(bundle, tmp_path):
    result, args = build_sh(bundle, tmp_path, "10.3.0", "--fp16-baseline")
    assert result.returncode == 0, result.stderr
    assert f"--onnx={bundle}/model.fp32.onnx" in args and "--fp16" in args
    assert not {"--int8", "--stronglyTyped"} & set(args) and any(a.endswith("_fp16.engine.partial") for a in args)
    result, _ = build_sh(bundle, tmp_path, "11.4.1", "--fp16-baseline")
    assert result.returncode == 3 and "FP16-typed ONNX" in result.stderr
    result, _ = build_sh(bundle, tmp_path, "10.3.0", "--fp16-baseline", "--dla", "0")
    assert result.returncode == 2


def test_without_trtexec_exits_3_with_one_line(jetson_artifact, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRTEXEC"}
    env["PATH"] = "/usr/bin:/bin"
    result = subprocess.run(["bash", str(jetson_artifact / "build_engine.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 3 and "trtexec not found" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_passes_bash_n_and_shellcheck(jetson_artifact):
    import shutil

    assert subprocess.run(["bash", "-n", str(jetson_artifact / "build_engine.sh")]).returncode == 0
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is installed by the project's set-up (apt)"
    result = subprocess.run([shellcheck, "-x", "build_engine.sh"], cwd=jetson_artifact, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
