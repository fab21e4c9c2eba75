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
from edgeresnet.quantize import QuantizeConfig, quantize
from edgeresnet.targets.tvm.backend import TVM_SCHEME
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


def test_each_profile_gets_its_dot_product_instruction():
    """sdot exactly where the board has the dot-product extension; an x86 host gets vpdpbusd where
    it has VNNI on 256-bit vectors, else pmaddwd where it has AVX2."""
    import tvm

    from edgeresnet.targets.tvm.backend import llvm_target
    from edgeresnet.targets.tvm.schedules import ConvRules

    for name in ("rpi4", "rpi5", "jetson-orin-cpu", "arm64"):
        profile = get_target(name)
        rules = ConvRules.for_target(tvm.target.Target(llvm_target(profile)))
        assert (rules.dot.name == "sdot") == profile.details.dotprod, name
    host = ConvRules.for_target(tvm.target.Target(llvm_target(get_target("x86-64"))))
    flags = set(Path("/proc/cpuinfo").read_text().split())
    vnni = "avx_vnni" in flags or {"avx512_vnni", "avx512vl"} <= flags
    assert host.dot.name == ("vpdpbusd" if vnni else "pmaddwd" if "avx2" in flags else "generic")


@pytest.fixture(scope="module")
def reference_qdq():
    loaded = load_model("resnet20-fmnist")
    calib = open_dataset("fashion-mnist", loaded.preprocessing, limit=512)
    test = open_dataset("fashion-mnist:test", loaded.preprocessing, limit=2000)
    fp32 = export_onnx_model(loaded)
    return loaded, quantize(fp32, calib.images, QuantizeConfig(scheme=TVM_SCHEME), progress=False), test


@pytest.fixture(scope="module")
def host_library(reference_qdq, tmp_path_factory):
    loaded, qdq, _ = reference_qdq
    executable, stats, scheduled = compile_integer_module(qdq, [1, 1, 28, 28], {"kind": "llvm", "mcpu": host_cpu()})
    path = tmp_path_factory.mktemp("tvm") / "host.so"
    executable.export_library(str(path))
    return path, stats, scheduled


def test_every_quantized_layer_becomes_scheduled_integer_compute(host_library):
    _, stats, scheduled = host_library
    assert stats.conv == 21 and stats.dense == 1 and stats.add == 9 and stats.pool == 1
    assert stats.float_convs_left == 0 and stats.float_dense_left == 0
    assert scheduled.share == 1.0 and scheduled.convolutions >= 10
    # On an x86 host with AVX2 every blocked integer convolution is tensorized (vpdpbusd or pmaddwd),
    # the first one too (its single image channel is zero-padded to a group of 4).
    assert scheduled.tensorized == scheduled.convolutions


def test_folding_the_first_convolution_is_exact(reference_qdq, host_library, tmp_path):
    """The 1-channel 3x3 stem folded into 3 (padded to 8) channels x 1 column gives bit-identical logits."""
    import tvm
    from tvm import relax

    from edgeresnet.targets.tvm.backend import llvm_target
    from edgeresnet.targets.tvm.conv import folds_first_convolution, reads_rows_flat
    from edgeresnet.targets.tvm.lowering import lower_to_integer
    from edgeresnet.targets.tvm.schedules import ScheduleStats, cpu_pipeline

    assert folds_first_convolution(tvm.target.Target(llvm_target(get_target("rpi4"))))
    assert not folds_first_convolution(tvm.target.Target(llvm_target(get_target("rpi5"))))
    assert reads_rows_flat(tvm.target.Target(llvm_target(get_target("rpi5"))))
    assert not reads_rows_flat(tvm.target.Target(llvm_target(get_target("rpi4"))))
    _, qdq, test = reference_qdq
    imported = relax.frontend.onnx.from_onnx(qdq, shape_dict={"input": [1, 1, 28, 28]}, keep_params_in_input=False)
    host = tvm.target.Target({"kind": "llvm", "mcpu": host_cpu()})
    images = test.images[:32]
    logits = {}
    for fold in (False, True):
        mod, _ = lower_to_integer(imported, fold_first_convolution=fold)
        relax.build(mod, target=host, relax_pipeline=cpu_pipeline(host, ScheduleStats())).export_library(str(tmp_path / f"{fold}.so"))
        logits[fold] = collect_logits(TvmHostRunner(tmp_path / f"{fold}.so", 1, 2, str(fold)), images, progress=False)
    assert np.array_equal(logits[True], logits[False])


@pytest.mark.parametrize("channels, kernel, stride, pad, width", [(3, 7, 2, 3, 20), (1, 3, 1, 1, 9), (3, 3, 2, 1, 11)])
def test_flat_row_convolution_is_the_convolution(channels, kernel, stride, pad, width):
    """The stem on an image's unpadded channels, each kernel row read as flat bytes 8 at a time
    (weights regrouped, zero past the row's last tap, rows padded for the over-read): the same
    int32 sums as a plain convolution. Built here without the sdot tensorization, on the host."""
    import tvm
    from tvm import te

    from edgeresnet.targets.tvm.conv import SDOT, _conv_flat_rows, _group_kernel_flat

    rng = np.random.default_rng(0)
    height, outputs = width - 1, 16
    data = rng.integers(-128, 128, (1, 1, height, width, channels), dtype=np.int8)
    weight = rng.integers(-128, 128, (outputs // 8, 1, kernel, kernel, channels, 8), dtype=np.int8)
    data_t = te.placeholder(data.shape, "int8", name="data")
    weight_t = te.placeholder(weight.shape, "int8", name="weight")
    conv = _conv_flat_rows(data_t, _group_kernel_flat(weight_t, SDOT.group), (stride, stride), (pad,) * 4, kernel, SDOT)
    built = tvm.compile(te.create_prim_func([data_t, weight_t, conv]), target="llvm")
    got = tvm.runtime.tensor(np.zeros([int(d) for d in conv.shape], np.int32))
    built(tvm.runtime.tensor(data), tvm.runtime.tensor(weight), got)

    image = np.pad(data[0, 0].astype(np.int64), [(pad, pad), (pad, pad), (0, 0)])  # H, W, C
    w = weight.astype(np.int64).transpose(0, 5, 2, 3, 4, 1).reshape(outputs, kernel, kernel, channels)  # O, KH, KW, C
    oh, ow = (height + 2 * pad - kernel) // stride + 1, (width + 2 * pad - kernel) // stride + 1
    want = np.zeros((outputs, oh, ow), np.int64)
    for y in range(oh):
        for x in range(ow):
            window = image[y * stride:y * stride + kernel, x * stride:x * stride + kernel]
            want[:, y, x] = np.tensordot(w, window, axes=3)
    got = got.numpy()  # [1, O/8, OH, OW, 8]
    assert got.shape == (1, outputs // 8, oh, ow, 8)
    assert np.array_equal(got[0].transpose(0, 3, 1, 2).reshape(outputs, oh, ow), want)


@pytest.mark.parametrize("block, kernel, stride, pad", [(8, 3, 1, 1), (16, 1, 2, 0), (4, 7, 2, 3)])
def test_shifted_activations_give_the_convolution_s_sums(block, kernel, stride, pad):
    """vpdpbusd's form: int8 activations stored +128 as uint8 (the padding too), 128 x each output
    channel's weight sum taken back out: the same int32 sums as the signed convolution, extremes
    included. Built without the VNNI tensorization, so it runs on any host."""
    import tvm
    from tvm import te

    from edgeresnet.targets.tvm.conv import VPDPBUSD, _conv_nchwc, _conv_shifted, _group_kernel, _offset_products

    rng = np.random.default_rng(1)
    data = rng.choice(np.array([-128, -127, -1, 0, 1, 126, 127], np.int8), (1, 2, 9, 10, block))
    weight = rng.choice(np.array([-128, -127, -3, 0, 5, 127], np.int8), (2, 2, kernel, kernel, block, 8))
    data_t = te.placeholder(data.shape, "int8", name="data")
    weight_t = te.placeholder(weight.shape, "int8", name="weight")
    args = ((stride, stride), (pad,) * 4, (1, 1))
    plain = _conv_nchwc(data_t, weight_t, *args, "int32")
    grouped = _group_kernel(weight_t, VPDPBUSD.group)
    shifted = _conv_shifted(data_t, grouped, _offset_products(grouped, VPDPBUSD.activation_offset), *args, VPDPBUSD)
    func = te.create_prim_func([data_t, weight_t, plain, shifted])
    assert "data_shift" in func.script() and "uint8" in func.script()
    built = tvm.compile(func, target="llvm")
    outputs = [tvm.runtime.tensor(np.zeros([int(d) for d in plain.shape], np.int32)) for _ in range(2)]
    built(tvm.runtime.tensor(data), tvm.runtime.tensor(weight), *outputs)
    want, got = (o.numpy() for o in outputs)
    assert np.abs(want).max() > 0 and np.array_equal(got, want)


@pytest.mark.parametrize("channels, height, width, case", [(8, 4, 8, "random"), (16, 8, 12, "extremes"), (128, 4, 4, "wrapping"),
                                                           (8, 7, 14, "random")])
def test_winograd_gives_the_convolution_s_sums(channels, height, width, case):
    """F(4x4, 3x3) in integers (kernel rows scaled to integers, 576 y taken back out modulo 2^32):
    the same int32 sums as the direct convolution, also where the last tiles are partial (7 x 14).
    "wrapping": inputs and weights chosen so that a
    Winograd-domain sum leaves int32 (as layer 2 of ResNet-18 can), where only the modular
    recovery makes it exact. Built without the smlal tensorization, on the host."""
    import tvm
    from tvm import te

    from edgeresnet.targets.tvm.winograd import INPUT_ROWS, conv_winograd, transform_kernel

    rng = np.random.default_rng(channels)
    values = np.array([-128, 127], np.int8) if case != "random" else np.arange(-128, 128).astype(np.int8)
    data = rng.choice(values, (1, channels // 8, height, width, 8))
    weight = rng.choice(values, (16, channels, 3, 3))
    if case == "wrapping":  # position (3, 3): every product the same sign, at its largest
        signs = np.sign(INPUT_ROWS[3][1:5])
        data[:] = np.where(np.outer(signs, signs) > 0, -128, 127).astype(np.int8)[None, None, :, :, None]
        weight[0] = -128
    kernel = transform_kernel(weight)
    data_t = te.placeholder(data.shape, "int8", name="data")
    kernel_t = te.placeholder(kernel.shape, "int16", name="kernel")
    out = conv_winograd(data_t, kernel_t, (1, 1, 1, 1))
    built = tvm.compile(te.create_prim_func([data_t, kernel_t, out]), target="llvm")
    got = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], np.int32))
    built(tvm.runtime.tensor(data), tvm.runtime.tensor(kernel), got)

    image = np.pad(data[0].transpose(0, 3, 1, 2).reshape(channels, height, width).astype(np.int64), [(0, 0), (1, 1), (1, 1)])
    want = np.zeros((16, height, width), np.int64)
    for y in range(height):
        for x in range(width):
            want[:, y, x] = np.tensordot(weight.astype(np.int64), image[:, y:y + 3, x:x + 3], axes=3)
    if case == "wrapping":
        v = np.einsum("xi,cij,yj->xyc", INPUT_ROWS, image[:, :6, :6], INPUT_ROWS).reshape(36, channels)
        u = kernel.astype(np.int64).transpose(0, 1, 3, 2).reshape(36, 16, channels)
        assert np.abs(np.einsum("ec,eoc->eo", v, u)).max() >= 2 ** 31
    assert np.array_equal(got.numpy()[0].transpose(0, 3, 1, 2).reshape(16, height, width), want)


def test_winograd_takes_only_layers_it_computes_exactly_and_splits_evenly():
    """`winograd.applies`: 3x3 stride 1 only; |y| < 2^25 for any input (128 x sum|w| per output
    channel): ResNet-18's 512-channel layer with every weight at -128 is refused, realistic weights
    are taken; every parallel loop a multiple of 4 (the reference model's 28x28 stage is not)."""
    from edgeresnet.targets.tvm.winograd import applies

    def conv(channels, size, weight=None, **attrs):
        weight = np.full((channels, channels, 3, 3), -128, np.int8) if weight is None else weight
        args = {"strides": (1, 1), "padding": (1, 1, 1, 1), "dilation": (1, 1), **attrs}
        return applies(weight, (1, channels // 8, size, size, 8), args["strides"], args["padding"], args["dilation"])

    assert conv(128, 28)  # the bound holds for any weights up to 227 input channels
    assert not conv(512, 7)  # 128 x 4608 x 128 > 2^25
    trained = np.random.default_rng(0).normal(0, 20, (512, 512, 3, 3)).clip(-127, 127).astype(np.int8)
    assert conv(512, 7, trained)  # partial tiles: 7 = 4 + 3
    assert not conv(64, 56, strides=(2, 2)) and not conv(64, 56, dilation=(2, 2))
    assert not conv(16, 28) and conv(16, 32)  # 7 x 7 tiles x 2 channel blocks = 98 parallel iterations, 8 x 8 x 2 = 128
    assert not conv(64, 2, padding=(0, 0, 0, 0))  # no whole tile


@pytest.mark.parametrize("target", ["rpi4", "rpi5"])
def test_every_kernel_splits_evenly_on_the_boards_four_cores(reference_qdq, target):
    """TVM gives each of N threads ceil(iterations / N) of a parallel loop: every loop a multiple of 4."""
    from edgeresnet.targets.tvm.backend import llvm_target

    _, qdq, _ = reference_qdq
    profile = get_target(target)
    _, _, scheduled = compile_integer_module(qdq, [1, 1, 28, 28], llvm_target(profile))
    split = scheduled.parallel_split(profile.details.threads)
    # 15 kernels since the residual adds run in their convolution's epilogue (were separate kernels)
    assert split["threads"] == 4 and split["parallel_kernels"] >= 12
    assert split["uneven"] == {} and split["split_evenly"] == split["parallel_kernels"]
    assert scheduled.parallel_split(3)["uneven"], "a 3-core split must find loops that do not divide"


@pytest.mark.slow
def test_integer_path_matches_onnxruntime_qdq(reference_qdq, host_library):
    """Against ONNX Runtime executing the Q/DQ graph as written (graph optimizations off).

    ORT's optimized path fuses Q/DQ into u8s8 kernels that saturate on x86 without
    VNNI: on this model it disagrees with its own exact execution on about 5% of
    images (field notes), so it is no reference for the integer numerics.
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
        assert sdot["conv_kernels"] >= 8, sdot
        assert sdot["conv_kernels_with_sdot"] == (sdot["conv_kernels"] if expect_sdot else 0), (target, sdot)
        assert (sdot["sdot_instructions"] > 0) == expect_sdot
        assert sdot["conv_kernels_with_widening_multiply"] == (0 if expect_sdot else sdot["conv_kernels"]), (target, sdot)
        assert sdot["conv_kernels_with_smull_sadalp"] > 0 or expect_sdot
        report = json.loads((arm_artifacts[target] / "report.json").read_text())
        assert report["target_details"]["sdot_instructions"] == sdot["sdot_instructions"]
        assert report["target_details"]["conv_kernels_with_sdot"] == sdot["conv_kernels_with_sdot"]


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
