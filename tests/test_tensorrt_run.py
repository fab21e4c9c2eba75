"""The Jetson bundle's run.py under stand-ins for TensorRT and the CUDA runtime (tests/standin/README.md).

The stand-in engine runs the model it was built from in ONNX Runtime, so `run.py --check`
compares real logits; what is checked here is the script: the engine's build record,
the DLA core set on the runtime before deserializing, where the device report goes, and
that the bundle verifies afterwards.
"""

import json

import pytest

from jetson_standins import copy_bundle, libcudart, run_python, trt_calls, verify


@pytest.fixture
def bundle(jetson_artifact, tmp_path):
    return copy_bundle(jetson_artifact, tmp_path)


def test_dla_core_set_before_deserializing_and_reported(bundle, tmp_path):
    cuda = libcudart(tmp_path)
    built = run_python(bundle, tmp_path, "build_engine.py", "--dla", "1")
    assert built.returncode == 0, built.stderr
    (tmp_path / "trt.log").unlink()
    result = run_python(bundle, tmp_path, "run.py", "--check", "--dla", "1", cuda=cuda)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [c["call"] for c in trt_calls(tmp_path)]
    assert calls == ["Runtime.DLA_core", "deserialize_cuda_engine"]  # the cached engine: no rebuild, core first
    (loaded,) = [c for c in trt_calls(tmp_path) if c["call"] == "deserialize_cuda_engine"]
    assert loaded["runtime_dla_core"] == 1 == loaded["engine_dla_core"]
    device = bundle.with_name("bundle.device")
    report = json.loads((device / "device-report.json").read_text())
    runtime = report["device"]["runtime"]
    assert runtime["dla_core"] == 1 and runtime["route"] == "calibration-cache" and runtime["build_record"].endswith("_dla1.build.json")
    assert report["int8"]["runtime"].startswith("tensorrt 10.3.0 DLA core 1 (implicit INT8")
    assert f"wrote {device / 'device-report.json'}" in result.stdout
    checked = verify(bundle)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["device_outputs"].startswith(f"{device}: ")


def test_gpu_engine_built_on_first_run_leaves_the_runtime_core_alone(bundle, tmp_path):
    result = run_python(bundle, tmp_path, "run.py", "--check", "--report", str(tmp_path / "mine.json"), cuda=libcudart(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    calls = trt_calls(tmp_path)
    assert [c["call"] for c in calls].count("build_serialized_network") == 1
    assert "Runtime.DLA_core" not in [c["call"] for c in calls]
    assert all(c["runtime_dla_core"] == -1 for c in calls if c["call"] == "deserialize_cuda_engine")
    report = json.loads((tmp_path / "mine.json").read_text())
    assert report["device"]["runtime"]["dla_core"] is None and report["passed"] is True
    assert report["host_agreement"] == 1.0  # the stand-in runs model.onnx as the host did
    assert not (bundle.with_name("bundle.device") / "device-report.json").exists()
    assert verify(bundle).returncode == 0


def test_engine_without_a_build_record_is_rebuilt(bundle, tmp_path):
    cuda = libcudart(tmp_path)
    assert run_python(bundle, tmp_path, "build_engine.py", "--dla", "0").returncode == 0
    record = next(bundle.with_name("bundle.device").glob("engines/*_dla0.build.json"))
    record.unlink()
    result = run_python(bundle, tmp_path, "run.py", "--check", "--dla", "0", cuda=cuda)
    assert result.returncode == 0, result.stderr
    assert record.is_file() and [c["call"] for c in trt_calls(tmp_path)].count("build_serialized_network") == 2


def test_without_tensorrt_exits_3_with_one_line(bundle, tmp_path):
    result = run_python(bundle, tmp_path, "run.py", "--check", with_tensorrt=False)
    assert result.returncode == 3 and result.stderr.strip().splitlines() == [
        "run.py: the tensorrt Python package is missing (JetPack: apt install python3-libnvinfer)"]
    assert not bundle.with_name("bundle.device").exists()


def test_without_a_cuda_gpu_exits_3_with_one_line(bundle, tmp_path):
    """This host: no libcudart on the loader path, or one (a pip CUDA wheel) with no GPU and driver under it."""
    result = run_python(bundle, tmp_path, "run.py", "--check")
    assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "libcudart not found" in result.stderr or "CUDA has no usable GPU here" in result.stderr


def test_device_dir_inside_the_bundle_is_refused(bundle, tmp_path):
    result = run_python(bundle, tmp_path, "run.py", "--check", "--device-dir", str(bundle / "out"), cuda=libcudart(tmp_path))
    assert result.returncode == 2 and "inside the artifact" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (bundle / "out").exists() and verify(bundle).returncode == 0


def test_report_folds_into_the_device_folder_and_keeps_what_the_device_wrote(bundle, tmp_path):
    """The documented flow on one machine: build, check, fold the report into <bundle>.device, check again."""
    from helpers import run_cli

    cuda = libcudart(tmp_path)
    assert run_python(bundle, tmp_path, "build_engine.py", "--dla", "0").returncode == 0
    assert run_python(bundle, tmp_path, "run.py", "--check", "--dla", "0", cuda=cuda).returncode == 0
    device = bundle.with_name("bundle.device")
    engine_files = sorted(p.name for p in (device / "engines").iterdir())
    folded = run_cli("report", str(bundle), "--device", str(device / "device-report.json"), "--label", "orin-nx dla0")
    assert folded.returncode == 0, folded.stderr
    assert sorted(p.name for p in (device / "engines").iterdir()) == engine_files
    assert (device / "device-report.json").is_file() and (device / "report.html").is_file()
    (column,) = json.loads((device / "report.json").read_text())["devices"]
    assert column["device"]["runtime"]["dla_core"] == 0 and column["label"] == "orin-nx dla0"
    assert run_python(bundle, tmp_path, "run.py", "--check", "--dla", "0", cuda=cuda).returncode == 0
    again = run_cli("report", str(bundle), "--device", str(device / "device-report.json"), "--label", "orin-nx dla0")
    assert again.returncode == 0, again.stderr
    assert verify(bundle).returncode == 0
