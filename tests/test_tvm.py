"""ARM CPU targets through TVM: the integer path, the aarch64 libraries, and proof that they run.

The aarch64 libraries run here under qemu-user with each board's CPU model, so an
instruction the board lacks (sdot on a Cortex-A72) kills the process. Speed under
emulation says nothing about the boards; benchmarks/ measures the host.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeresnet.calibration import open_dataset
from edgeresnet.evaluate import accuracy, collect_logits, compare
from edgeresnet.export import export_onnx_model
from edgeresnet.models import load_model
from edgeresnet.runners import OnnxRuntimeRunner
from edgeresnet.targets.tvm import emulation
from edgeresnet.targets import get_target
from edgeresnet.targets.tvm.disassembly import int8_kernel_summary
from edgeresnet.targets.tvm.module import compile_integer_module, host_cpu
from edgeresnet.targets.tvm.runners import QemuRunner, TvmHostRunner
from helpers import compile_small, run_cli

AARCH64_MACHINE = 183  # ELF e_machine of aarch64


def test_arm_profiles():
    rpi4, rpi5, orin = get_target("rpi4"), get_target("rpi5"), get_target("jetson-orin-cpu")
    assert rpi4.details.cpu == "cortex-a72" and "+dotprod" not in rpi4.details.features and not rpi4.details.dotprod
    assert rpi5.details.cpu == "cortex-a76" and "+dotprod" in rpi5.details.features
    assert orin.details.dotprod and orin.details.cpu.startswith("cortex-a78")
    for profile in (rpi4, rpi5, orin, get_target("arm64")):
        assert profile.details.llvm["mtriple"] == "aarch64-linux-gnu"
        assert profile.details.cross_compiler == "aarch64-linux-gnu-g++" and profile.details.threads >= 1
    assert get_target("x86-64").arch == "x86_64"


@pytest.mark.slow
def test_integer_path_matches_onnxruntime_qdq(reference_qdq, host_library):
    """Against ONNX Runtime executing the Q/DQ graph as written (graph optimizations off).

    ORT's optimized path fuses Q/DQ into u8s8 kernels that saturate on x86 without
    VNNI: on this model it disagrees with its own exact execution on about 5% of
    images, so it is no reference for the integer numerics.
    """
    loaded, qdq, test = reference_qdq
    tvm_logits = collect_logits(TvmHostRunner(host_library[0], 1, 2, "test"), test.images, progress=False)
    exact = collect_logits(OnnxRuntimeRunner(qdq.SerializeToString(), optimize=False), test.images, progress=False)
    fp32 = collect_logits(OnnxRuntimeRunner(export_onnx_model(loaded).SerializeToString()), test.images, progress=False)
    drift = compare(exact, tvm_logits)
    assert drift.agreement >= 0.999 and drift.sqnr_db > 35
    drop_tvm = accuracy(fp32, test.labels).top1 - accuracy(tvm_logits, test.labels).top1
    drop_ort = accuracy(fp32, test.labels).top1 - accuracy(exact, test.labels).top1
    assert abs(drop_tvm - drop_ort) <= 0.1


@pytest.fixture(scope="module")
def arm_artifacts(tmp_path_factory):
    out = {}
    for target in ("rpi4", "rpi5"):
        folder = tmp_path_factory.mktemp("arm") / target
        result = run_cli("compile", "--target", target, "--out", str(folder), timeout=2400)
        assert result.returncode == 0, result.stderr
        out[target] = folder
    return out


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    return int.from_bytes(header[18:20], "little")


@pytest.mark.slow
def test_arm_artifacts_are_aarch64_with_sdot_only_where_the_board_has_it(arm_artifacts):
    """Every convolution kernel of the rpi5 library uses sdot (disassembled per symbol); rpi4's none,
    but every one of its convolution kernels uses the widening smull + sadalp pair or (Winograd) smlal instead."""
    for target, expect_sdot in (("rpi4", False), ("rpi5", True)):
        library = arm_artifacts[target] / "model.so"
        assert _elf_machine(library) == AARCH64_MACHINE
        sdot = int8_kernel_summary(library)
        assert sdot.conv_kernels >= 8, sdot
        assert sdot.conv_kernels_with_sdot == (sdot.conv_kernels if expect_sdot else 0), (target, sdot)
        assert (sdot.sdot_instructions > 0) == expect_sdot
        assert sdot.conv_kernels_with_widening_multiply == (0 if expect_sdot else sdot.conv_kernels), (target, sdot)
        assert sdot.conv_kernels_with_smull_sadalp > 0 or expect_sdot
        report = json.loads((arm_artifacts[target] / "report.json").read_text())
        assert report["target_details"]["sdot_instructions"] == sdot.sdot_instructions
        assert report["target_details"]["conv_kernels_with_sdot"] == sdot.conv_kernels_with_sdot


@pytest.mark.slow
@pytest.mark.parametrize("target", ["rpi4", "rpi5"])
def test_arm_reports_emulated_and_host_accuracy(arm_artifacts, target):
    report = json.loads((arm_artifacts[target] / "report.json").read_text())
    assert report["method"] == "percentile"  # the tvm profile's own calibrator
    # The headline: the host build of the same integer module on all 10,000 images, standing for the
    # shipped library because their logits are bit-identical on every one of the 1,000 emulated images.
    assert report["int8"]["runtime"].startswith("tvm") and "x86_64" in report["int8"]["runtime"]
    assert report["int8"]["samples"] == 10_000 and report["drop_pts"] <= 0.3
    shipped = report["int8"]["bit_identical_to"]
    assert shipped["runtime"].startswith("tvm aarch64 (qemu emulation, -cpu cortex-a7") and shipped["arch"] == "aarch64 (emulated)"
    (emulated,) = report["extra_measurements"]
    assert emulated["runtime"] == shipped["runtime"] and emulated["samples"] == shipped["samples"] == 1000
    assert report["warnings"] == []
    assert run_cli("verify", str(arm_artifacts[target])).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("target, core", [("rpi4", "cortex-a72"), ("rpi5", "cortex-a76")])
def test_emulated_logits_match_the_host_build(arm_artifacts, tmp_path, target, core):
    """The shipped library on its board's core (plain NEON on the A72, sdot on the A76) against the host build."""
    folder = arm_artifacts[target]
    qdq = onnx.load(folder / "model.int8.onnx")
    executable, _, _ = compile_integer_module(qdq, [1, 1, 28, 28], {"kind": "llvm", "mcpu": host_cpu()})
    executable.export_library(str(tmp_path / "host.so"))
    images = open_dataset("fashion-mnist:test", load_model().preprocessing, limit=64, seed=5).images
    host = collect_logits(TvmHostRunner(tmp_path / "host.so", 1, 2, "test"), images, progress=False)
    emulated = QemuRunner(folder, emulation.build_runtime(), core, 1, 2).run_all(images)
    assert compare(host, emulated).agreement == 1.0
    assert np.abs(host - emulated).max() < 0.05 * np.abs(host).max()


@pytest.mark.slow
def test_a_three_channel_stem_read_flat_matches_the_host_build(small_data, tmp_path):
    """A 3-channel image (CIFAR-style resnet20): on rpi5 its stem keeps the image's channels and
    reads each kernel row flat (`conv.reads_rows_flat`), tensorized into sdot; the shipped library
    under the A76 model gives the host build's logits bit for bit."""
    folder = tmp_path / "rpi5"
    result = compile_small("rpi5", folder, small_data)
    assert result.returncode == 0, result.stderr
    executable, _, _ = compile_integer_module(onnx.load(folder / "model.int8.onnx"), [1, 3, 32, 32],
                                              {"kind": "llvm", "mcpu": host_cpu()})
    executable.export_library(str(tmp_path / "host.so"))
    images = np.load(small_data["calib"])
    host = collect_logits(TvmHostRunner(tmp_path / "host.so", 1, 2, "test"), images, progress=False)
    emulated = QemuRunner(folder, emulation.build_runtime(), "cortex-a76", 1, 2).run_all(images)
    assert np.abs(host).max() > 0 and np.array_equal(host, emulated)


@pytest.mark.slow
def test_sdot_library_dies_on_a_core_without_dotprod(arm_artifacts, tmp_path):
    """The rpi5 library really executes sdot: a Cortex-A72 (Raspberry Pi 4) refuses it with SIGILL."""
    images = np.zeros((1, 1, 28, 28), np.float32)
    np.save(tmp_path / "x.npy", images)
    command, env = emulation.python_command(emulation.build_runtime(), "cortex-a72", arm_artifacts["rpi5"] / "run.py",
                                            "--npy", str(tmp_path / "x.npy"), "--warmup", "0", "--quiet")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and ("Illegal instruction" in result.stderr or result.returncode in (-4, 132))
    ok = QemuRunner(arm_artifacts["rpi4"], emulation.build_runtime(), "cortex-a72", 1, 2).run_all(images)
    assert ok.shape == (1, 10)
