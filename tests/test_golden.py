"""The self-contained ARM artifact: the native runner's --check on the board's CPU model, with no Python anywhere.

The rpi5 and rpi4 artifacts of the reference model are run under
`qemu-aarch64 -cpu cortex-a76` / `cortex-a72` with `-L /usr/aarch64-linux-gnu`
(Debian's arm64 libc and libstdc++ from the cross toolchain, nothing else: no
Python), in an empty environment. What is not run here: a real board.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeresnet.targets.tvm import emulation, native
from helpers import run_cli

SYSROOT = Path("/usr/aarch64-linux-gnu")
TEN_MB = 10 * 1000 * 1000


@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    out = {}
    for target in ("rpi5", "rpi4"):
        folder = tmp_path_factory.mktemp("golden-arm") / target
        # 1,000 evaluation images keep the build short; the golden sample is 256 of them.
        result = run_cli("compile", "--target", target, "--eval-samples", "1000", "--emulated-samples", "32",
                         "--out", str(folder), timeout=2400)
        assert result.returncode == 0, result.stderr
        out[target] = folder
    return out


def trimmed_golden(folder: Path, destination: Path, rows: int) -> Path:
    """The first `rows` golden vectors (a shorter emulated run where the full 256 prove nothing more)."""
    destination.mkdir()
    meta = json.loads((folder / "golden" / "golden.json").read_text())
    for name in filter(None, meta["files"].values()):
        np.save(destination / name, np.load(folder / "golden" / name)[:rows])
    (destination / "golden.json").write_text(json.dumps({**meta, "samples": rows, "indices": meta["indices"][:rows]}))
    return destination


def board(folder: Path, core: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The artifact's native runner on `core`, with only Debian's arm64 libc/libstdc++ and an empty environment."""
    command = [emulation.qemu_binary(), "-cpu", core, "-L", str(SYSROOT), str(folder / native.RUNNER), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env={"TVM_NUM_THREADS": "2"}, timeout=1200)


def test_the_sysroot_holds_no_python():
    assert (SYSROOT / "lib" / "libc.so.6").exists() and (SYSROOT / "lib" / "libstdc++.so.6").exists()
    assert not list(SYSROOT.rglob("python*")) and not list(SYSROOT.rglob("libpython*"))


@pytest.mark.slow
@pytest.mark.parametrize("target, core", [("rpi5", "cortex-a76"), ("rpi4", "cortex-a72")])
def test_native_check_passes_on_the_boards_core(arm, tmp_path, target, core):
    folder = arm[target]
    result = board(folder, core, "--check", cwd=tmp_path)  # the report goes to <artifact>.device, not into the artifact
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: PASS" in result.stdout
    written = folder.with_name(folder.name + ".device") / "device-report.json"
    assert f"wrote {written}" in result.stdout and not (tmp_path / "device-report.json").exists()
    shutil.copy(written, tmp_path / "device-report.json")
    report = json.loads((tmp_path / "device-report.json").read_text())
    assert report["schema"] == "edgeresnet.device-report/1" and report["samples"] == 256 and report["target"] == target
    assert report["host_agreement"] >= 0.999 and report["passed"] is True
    assert report["host_drift"]["cosine"] > 0.9999
    assert report["device"]["machine"] == "aarch64" and report["device"]["runtime"]["tvm"] == emulation.TVM_VERSION
    assert report["int8"]["top1"] == pytest.approx(report["host_int8"]["top1"], abs=0.5)
    assert report["latency_ms"]["runs"] == 256
    # The same fields as the Python check writes (device_check.py), so `edgeresnet report --device` takes either.
    golden = json.loads((folder / "golden" / "golden.json").read_text())
    assert report["fp32"]["runtime"] == golden["fp32_runtime"] and report["host_int8"]["runtime"] == golden["int8_runtime"]
    folded = run_cli("report", str(folder), "--device", str(tmp_path / "device-report.json"), "--out", str(tmp_path / "combined"))
    assert folded.returncode == 0, folded.stderr
    combined = json.loads((tmp_path / "combined" / "report.json").read_text())
    assert combined["devices"][0]["label"].startswith(f"tvm {emulation.TVM_VERSION} aarch64 (edgeresnet-run, native, {target}")
    assert run_cli("verify", str(folder)).returncode == 0


@pytest.mark.slow
def test_native_check_fails_when_one_golden_logit_file_is_perturbed(arm, tmp_path):
    golden = trimmed_golden(arm["rpi5"], tmp_path / "golden", 64)
    logits = np.load(golden / "int8_logits.npy")
    rows = np.arange(0, len(logits), 10)  # every 10th host prediction moved to another class
    logits[rows, (logits[rows].argmax(1) + 1) % logits.shape[1]] = logits.max() + 1
    np.save(golden / "int8_logits.npy", logits)
    result = board(arm["rpi5"], "cortex-a76", "--check", "--golden", str(golden), "--report", "drift.json", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "drift.json").read_text())
    assert report["verdict"] == "DRIFT" and report["host_agreement"] < 0.95
    assert "agreement with the host INT8" in report["reasons"][0]
    relaxed = board(arm["rpi5"], "cortex-a76", "--check", "--golden", str(golden), "--min-agreement", "50",
                    "--max-extra-drop", "100", "--report", "relaxed.json", cwd=tmp_path)
    assert relaxed.returncode == 0, relaxed.stdout + relaxed.stderr


@pytest.mark.slow
def test_native_runner_predicts_from_npy_and_refuses_bad_input(arm, tmp_path):
    folder = arm["rpi5"]
    inputs = np.load(folder / "golden" / "inputs.npy")[:8]
    np.save(tmp_path / "x.npy", inputs)
    result = board(folder, "cortex-a76", "--npy", "x.npy", "--logits-out", "logits.npy", "--warmup", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "8 inputs, batch 1: latency p50" in result.stdout and result.stdout.startswith("0: ")
    host = np.load(folder / "golden" / "int8_logits.npy")[:8]
    logits = np.load(tmp_path / "logits.npy")
    assert np.array_equal(logits.argmax(1), host.argmax(1)) and np.abs(logits - host).max() < 0.05 * np.abs(host).max()
    np.save(tmp_path / "u8.npy", np.zeros((2, 28, 28), np.uint8))
    for args in (["--npy", "u8.npy"], ["--npy", "missing.npy"], ["--check", "--npy", "x.npy"], ["--threads", "many", "--check"]):
        refused = board(folder, "cortex-a76", *args, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.startswith("edgeresnet-run: "), (args, refused.stderr)


@pytest.mark.slow
def test_the_self_contained_runtime_is_small_and_needs_only_the_c_and_cpp_runtime(arm):
    folder = arm["rpi5"]
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in native.FILES:
        assert name in manifest["files"], name
    size = native.size_bytes(folder)
    assert size <= TEN_MB, size
    report = json.loads((folder / "report.json").read_text())
    assert report["target_details"]["native_runner"]["bytes"] == size
    needed = subprocess.run(["aarch64-linux-gnu-readelf", "-d", str(folder / native.RUNNER)], capture_output=True,
                            text=True, check=True).stdout
    libraries = {line.split("[")[1].rstrip("]") for line in needed.splitlines() if "(NEEDED)" in line}
    assert libraries <= {"libtvm_runtime.so", "libtvm_ffi.so", "libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", "libc.so.6"}
    assert "$ORIGIN/runtime" in needed


@pytest.mark.slow
def test_the_native_runner_builds_byte_identical(tmp_path):
    site = emulation.build_runtime() / "site"
    digests = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        native.build_native_runner(tmp_path / name, "aarch64-linux-gnu-g++", site, emulation.TVM_VERSION)
        digests.append({f: hashlib.sha256((tmp_path / name / f).read_bytes()).hexdigest() for f in native.FILES})
    assert digests[0] == digests[1]


@pytest.mark.slow
def test_python_check_under_emulation_agrees_with_the_native_one(arm, tmp_path):
    """run.py --check (the Python route) on the same golden vectors, in the emulation runtime folder."""
    folder = arm["rpi5"]
    golden = trimmed_golden(folder, tmp_path / "golden", 32)
    command, env = emulation.python_command(emulation.build_runtime(), "cortex-a76", folder / "run.py", "--check",
                                            "--golden", str(golden), "--report", str(tmp_path / "python.json"))
    result = subprocess.run(command, env={**env, "TVM_NUM_THREADS": "2"}, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "python.json").read_text())
    assert report["host_agreement"] >= 0.999 and report["device"]["machine"] == "aarch64" and report["samples"] == 32
    assert report["device"]["runtime"]["tvm"].startswith("0.27")


@pytest.fixture(scope="module")
def two_board_farm():
    """A TVM RPC tracker and two RPC servers under one key, all on 127.0.0.1: a device farm of two x86 'boards'."""
    import time

    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    tracker = Tracker("127.0.0.1", port=9190, port_end=9390, silent=True)
    servers = [rpc.Server("127.0.0.1", port=9400, port_end=9600, key="farm", tracker_addr=("127.0.0.1", tracker.port),
                          silent=True) for _ in range(2)]
    deadline = time.monotonic() + 60
    while rpc.connect_tracker("127.0.0.1", tracker.port).summary().get("queue_info", {}).get("farm", {}).get("free", 0) < 2:
        assert time.monotonic() < deadline, "the RPC servers never registered with the tracker"
        time.sleep(0.5)
    yield f"farm@127.0.0.1:{tracker.port}"
    for server in servers:
        server.terminate()
    tracker.terminate()


@pytest.mark.slow
def test_validate_through_the_rpc_tracker_shards_and_writes_the_device_column(two_board_farm, small_data, tmp_path):
    from helpers import compile_small

    artifact = tmp_path / "x86"
    assert compile_small("x86-64", artifact, small_data).returncode == 0
    out = tmp_path / "combined"
    result = run_cli("validate", str(artifact), "--rpc", two_board_farm, "--out", str(out), "--json", timeout=1800)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["device"]["boards"] == 2 and summary["samples"] == 64 and summary["host_agreement"] == 1.0
    assert summary["latency_ms"]["runs"] == 20
    report = json.loads((out / "report.json").read_text())
    (column,) = report["devices"]
    assert column["label"].startswith("tvm RPC on 2 board(s)") and column["passed"] is True
    assert "Measured on the device" in (out / "report.html").read_text()
    assert run_cli("verify", str(artifact)).returncode == 0
    # Other data than the golden vectors: the host's references are computed for it.
    evaluated = run_cli("validate", str(artifact), "--rpc", two_board_farm, "--eval", str(small_data["eval"]),
                        "--eval-samples", "10", "--out", str(out), "--label", "ten images", "--json", timeout=1800)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["samples"] == 10
    assert [d["label"] for d in json.loads((out / "report.json").read_text())["devices"]][-1] == "ten images"
    missing = run_cli("validate", str(artifact), "--rpc", two_board_farm.replace("farm@", "nokey@"), timeout=300)
    assert missing.returncode == 2 and "no device under key 'nokey'" in missing.stderr


@pytest.mark.slow
def test_emulated_evaluation_runs_the_native_runner_with_run_py_s_logits(arm, tmp_path):
    """Compile's emulated evaluation runs the artifact's edgeresnet-run (no Python startup under qemu:
    ~10 s less a call); without it, run.py: the same library, the same logits bit for bit."""
    import shutil

    from edgeresnet.calibration import open_dataset
    from edgeresnet.models import load_model
    from edgeresnet.targets.tvm.runners import QemuRunner

    images = open_dataset("fashion-mnist:test", load_model().preprocessing, limit=6, seed=11).images
    runtime = emulation.build_runtime()
    native_logits = QemuRunner(arm["rpi5"], runtime, "cortex-a76", 1, 2).run_all(images)
    without_runner = tmp_path / "no-native"
    shutil.copytree(arm["rpi5"], without_runner)
    (without_runner / native.RUNNER).unlink()
    python_logits = QemuRunner(without_runner, runtime, "cortex-a76", 1, 2).run_all(images)
    assert native_logits.shape == (6, 10) and np.array_equal(native_logits, python_logits)
