"""XNNPACK INT8 through LiteRT as a peer of the cycle model (runtime `xnnpack-int8`).

What runs on the board: LiteRT's Python interpreter from the `ai-edge-litert` aarch64 wheel
(LITERT_AARCH64, unpacked beside the ONNX Runtime wheel and put on the guest's path), as LiteRT's
documentation has it for the CPU: `Interpreter(model_path, num_threads=N)`, whose default
delegate is XNNPACK, on an INT8 model (int8 weights per channel, int8 activations, int8 input
and output tensors) so that every convolution runs in XNNPACK's QS8 kernels; litert-torch leaves
the residual additions in float between a DEQUANTIZE and a QUANTIZE, which XNNPACK also runs. The
counted inference includes quantizing the float image to the input tensor's int8 (numpy), as a
user's program does.

How the model is made, on the x86 host: litert-torch's PT2E route (litert_convert.py), with the
calibration images every other runtime of the cycle model is calibrated with. litert-torch and
its dependencies (jax, transformers, litert-converter, ai-edge-quantizer) are heavy and not the
project's, so they live in their own virtual environment in the cache (CONVERTER_PACKAGES, made
once by `converter_python`; torch is the project's own pin, so pip takes the same build). The
FP32 network crosses over as a whole-module `torch.save` file, read there with the project's
own model code on the path (edgeresnet.models.resnet needs torch alone). The conversion is
checked before anything is counted (CHECK_THRESHOLDS): a model that fails is never timed.

Threads: XNNPACK parallelises each operator through pthreadpool. Every `pthreadpool_parallelize_*`
entry of the library ends in the one internal `pthreadpool_parallelize` (the library keeps its
symbols), whose entry is passed to the counting plugin as the parallel-launch entry, as TVM's
TVMBackendParallelLaunch is: each call starts a parallel region. One thread has no pool, so no
region. The wait code is pthreadpool's worker loop (`thread_main`, which spins with `yield`
before it sleeps on a futex) and the tail of `pthreadpool_parallelize` where the caller waits for
the workers: both are named in the cycle model's WAIT_SYMBOLS and execute `yield` besides. The
pool hands out tiles dynamically (workers steal them), so under qemu which thread does how much
follows the host's scheduling: for a multi-thread row, read the board's figure as lying between its
all-threads work over the thread count (an even split, as on a board with free cores) and `cycles`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONVERT_SCRIPT = HERE / "litert_convert.py"
PROJECT_ROOT = HERE.parent.parent
RUNTIME = "xnnpack-int8"
LITERT_VERSION = "2.3.0"
LITERT_AARCH64 = f"ai-edge-litert=={LITERT_VERSION}"
# The wheel's own dependencies are left out: its interpreter module imports numpy alone.
LITERT_PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64")
CONVERTER_PACKAGES = ("torch==2.13.0", "litert-torch==0.10.0")
LIBRARY = "libpywrap_litert_common.so"  # XNNPACK and pthreadpool are linked into it, symbols kept
LAUNCH_SYMBOL = "pthreadpool_parallelize"
# Gates before counting: on a trained model (its test images) the top-1 agreement with FP32, on
# fixed-seed weights (photo crops) the mean logit cosine similarity with FP32.
CHECK_THRESHOLDS = {"fp32_top1_agreement": 0.95, "fp32_cosine": 0.95}
CHECK_IMAGES = {"trained": 1000, "untrained": 16}


# What a board's /proc/cpuinfo says of its cores (MIDR fields: Arm's TRMs, Main ID Register; the
# feature names are the kernel's for those cores). Under qemu-user the guest reads the x86 host's
# /proc/cpuinfo, on which XNNPACK's cpuinfo library dies (a null pointer, in Interpreter()); qemu
# 7.2 looks up absolute paths under its -L prefix first, so a sysroot that adds /proc/cpuinfo
# gives LiteRT the board's view, and XNNPACK picks its kernels for that core as on the board.
CPUINFO = {
    "rpi5": ("0xd0b", "0x4", "1", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                                  "lrcpc dcpop asimddp"),  # Cortex-A76 r4p1
    "rpi4": ("0xd08", "0x0", "3", "fp asimd evtstrm crc32 cpuid"),  # Cortex-A72 r0p3
    "jetson-orin-cpu": ("0xd42", "0x0", "1", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                                             "asimdrdm lrcpc dcpop asimddp"),  # Cortex-A78AE r0p1
}


def guest_sysroot(runtime_folder: Path, board: str, cores: int) -> Path:
    """The runtime's arm64 sysroot (linked entry by entry) plus the board's /proc/cpuinfo."""
    part, variant, revision, features = CPUINFO[board]
    folder = runtime_folder.parent / f"litert-sysroot-{board}"
    text = "".join(f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
                   f"CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n\n"
                   for n in range(cores))
    cpuinfo = folder / "proc" / "cpuinfo"
    if cpuinfo.is_file() and cpuinfo.read_text() == text:
        return folder
    staging = Path(tempfile.mkdtemp(prefix=f".litert-sysroot-{board}.", dir=runtime_folder.parent))
    for entry in sorted((runtime_folder / "sysroot").iterdir()):
        (staging / entry.name).symlink_to(entry)
    (staging / "proc").mkdir()
    (staging / "proc" / "cpuinfo").write_text(text)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return folder


@dataclass(frozen=True)
class LiteRtModel:
    """A checked full-integer .tflite and what the check found."""
    path: Path
    fp32_cosine: float
    fp32_top1_agreement: float
    check: dict

    @property
    def version(self) -> str:
        return f"ai-edge-litert {LITERT_VERSION} (XNNPACK); model: {self.check['converter']}"


def converter_python(cache: Path, log=print) -> Path:
    """The converter environment's interpreter, made once in the cache (pip from PyPI)."""
    from edgeresnet.errors import MissingDependency

    venv = cache / "litert-converter"
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return python
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".litert-converter.", dir=cache))
    try:
        log(f"making the LiteRT converter environment ({', '.join(CONVERTER_PACKAGES)}; once, ~2 GB)")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(staging)], check=True)
        # Bootstrap pip from the project's own venv, so that no get-pip download is needed.
        result = subprocess.run([sys.executable, "-m", "pip", "--python", str(staging / "bin" / "python"), "install",
                                 "-q", *CONVERTER_PACKAGES], capture_output=True, text=True)
        if result.returncode != 0:
            raise MissingDependency(f"installing {' '.join(CONVERTER_PACKAGES)} failed: "
                                    f"{result.stderr.strip().splitlines()[-1:]}")
        (staging / ".complete").write_text("ok\n")
        if venv.exists():
            shutil.rmtree(venv)
        os.replace(staging, venv)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # A venv's scripts name its folder: the staging one is gone, the interpreter itself is a symlink.
    return python


def litert_aarch64_site(cache: Path) -> Path:
    """The aarch64 wheel of LiteRT unpacked for the guest's PYTHONPATH (numpy is the runtime's)."""
    from emulated_arm import aarch64_wheel_site

    return aarch64_wheel_site(cache, "litert-aarch64", LITERT_AARCH64, "ai_edge_litert", LITERT_PLATFORMS)


def launch_offset(llvm, site: Path) -> int:
    """The address of pthreadpool_parallelize in the library's file (its first segment maps at offset 0)."""
    out = llvm.run("llvm-nm", "--defined-only", "--format=posix", str(site / "ai_edge_litert" / LIBRARY)).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts[:2] == [LAUNCH_SYMBOL, "t"] or parts[:2] == [LAUNCH_SYMBOL, "T"]:
            return int(parts[2], 16)
    raise RuntimeError(f"{LIBRARY} has no {LAUNCH_SYMBOL} symbol: cannot mark XNNPACK's parallel regions")


def make_model(loaded, calibration: "np.ndarray", check: "np.ndarray", trained: bool, folder: Path,
               cache: Path, log=print) -> LiteRtModel:
    """Converts and checks, once per model and calibration (the files are reused when their inputs match)."""
    import hashlib

    import numpy as np
    import torch

    from edgeresnet.errors import CheckFailed

    folder.mkdir(parents=True, exist_ok=True)
    tflite, report = folder / "model.xnnpack-int8.tflite", folder / "model.xnnpack-int8.check.json"
    state = hashlib.sha256(b"".join(t.numpy().tobytes() for t in loaded.module.state_dict().values()))
    for array in (calibration, check):
        state.update(np.ascontiguousarray(array, np.float32).tobytes())
    state.update(CONVERT_SCRIPT.read_bytes())
    stamp = folder / "model.xnnpack-int8.sha256"
    if not (tflite.is_file() and report.is_file() and stamp.is_file() and stamp.read_text() == state.hexdigest()):
        python = converter_python(cache, log)
        network, calibration_file, check_file = folder / "model.fp32.pt", folder / "calibration.npy", folder / "check.npy"
        torch.save(loaded.module.eval(), network)
        np.save(calibration_file, np.ascontiguousarray(calibration, np.float32))
        np.save(check_file, np.ascontiguousarray(check, np.float32))
        log(f"{loaded.name}: litert-torch full-integer conversion ({len(calibration)} calibration images)")
        result = subprocess.run([str(python), str(CONVERT_SCRIPT), str(network), str(calibration_file), str(check_file),
                                 str(tflite), str(report)], capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
        if result.returncode != 0:
            raise RuntimeError(f"litert-torch conversion failed: {result.stderr.strip().splitlines()[-3:]}")
        stamp.write_text(state.hexdigest())
    found = json.loads(report.read_text())
    gate = "fp32_top1_agreement" if trained else "fp32_cosine"
    if found[gate] < CHECK_THRESHOLDS[gate] or found["weighted_ops_not_int8"]:
        raise CheckFailed(f"{loaded.name}: the LiteRT INT8 model fails its check ({gate} {found[gate]} < "
                          f"{CHECK_THRESHOLDS[gate]}, or float convolutions {found['weighted_ops_not_int8']}): not counted")
    return LiteRtModel(tflite, found["fp32_cosine"], found["fp32_top1_agreement"], found)
