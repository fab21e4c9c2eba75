"""ARM (and x86-64) CPUs through Apache TVM: integer Relax compiled to a shared library.

The Q/DQ model (the `tvm` quantization profile) is imported with TVM's ONNX
frontend, its quantized chains are rewritten into int8 x int8 -> int32 compute
(`tvm_lowering`), and the module is compiled for the board's LLVM triple, CPU
and features, then linked with the board's cross compiler. The library that
ships is validated twice: the same integer module built for this host on the
whole evaluation set, and the shipped aarch64 library itself under qemu-user,
with the board's CPU model, on a sample.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgeresnet.atomic import write_bytes_atomically
from edgeresnet.errors import CheckFailed, MissingDependency
from edgeresnet.runners import Runner

from . import TargetProfile, register
from . import aarch64_emulation as emulation
from .base import DEVICE_SUPPORT_FILES, BuildContext, TargetBuild, copy_device_support, copy_templates

LIBRARY = "model.so"
QDQ_MODEL = "model.int8.onnx"  # the Q/DQ model the library was compiled from
RUNNER_FILES = ("run.py", "README.md")  # from templates/tvm
DEPLOY_FILE = "deploy.json"


def _arm(name: str, description: str, cpu: str, features: list[str], qemu_cpu: str, threads: int, dotprod: bool, aliases=()):
    return register(TargetProfile(
        name=name, backend="tvm", quant_profile="tvm", arch="aarch64", description=description,
        details={
            "llvm": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": cpu, "mattr": features},
            "cpu": cpu, "features": features, "dotprod": dotprod, "threads": threads,
            "cross_compiler": "aarch64-linux-gnu-g++", "qemu_cpu": qemu_cpu,
        },
    ), aliases)


_arm("rpi4", "Raspberry Pi 4: Cortex-A72, Armv8.0-A + NEON, no dot product", "cortex-a72", ["+neon"], "cortex-a72", 4, False)
_arm("rpi5", "Raspberry Pi 5: Cortex-A76, Armv8.2-A + NEON + dot product (sdot)", "cortex-a76", ["+neon", "+dotprod"], "cortex-a76", 4, True)
# qemu 7.2 has no Cortex-A78 model; the A76 implements the same Armv8.2-A + dotprod instructions.
_arm("jetson-orin-cpu", "Jetson Orin CPU: Cortex-A78AE, Armv8.2-A + NEON + dot product (sdot)", "cortex-a78", ["+neon", "+dotprod"], "cortex-a76", 6, True)
_arm("arm64", "generic Armv8-A with NEON (any 64-bit ARM board)", "generic", ["+neon"], "cortex-a53", 4, False)

register(TargetProfile(
    name="x86-64", backend="tvm", quant_profile="tvm", arch="x86_64",
    description="this host's x86-64 CPU via TVM (speed and numerics measured natively)",
    details={"llvm": {"kind": "llvm"}, "cpu": "host", "features": [], "dotprod": False, "threads": os.cpu_count() or 1,
             "cross_compiler": None, "qemu_cpu": None},
))


def host_cpu() -> str:
    import tvm

    return str(tvm.get_global_func("target.llvm_get_system_cpu")())


def llvm_target(profile: TargetProfile) -> dict:
    target = dict(profile.details["llvm"])
    if profile.arch == "x86_64":
        target["mcpu"] = host_cpu()  # "native" is ignored by TVM 0.27
    if target.get("mcpu") == "generic":
        target.pop("mcpu")
    return target


def integer_module(int8_model, input_shape: list[int]):
    """The Q/DQ model imported into Relax and lowered to integer compute: (IRModule, lowering stats)."""
    from tvm.relax.frontend.onnx import from_onnx

    from .tvm_lowering import lower_to_integer

    return lower_to_integer(from_onnx(int8_model, shape_dict={"input": list(input_shape)}, keep_params_in_input=False))


def compile_integer_module(int8_model, input_shape: list[int], target: dict, records: Path | None = None):
    """Import the Q/DQ model, lower it to integer compute, compile it for `target` with the schedule
    rules (and the tuning records of `edgeresnet tune`, where `records` has one for a kernel).

    Returns (executable, lowering stats, schedule stats)."""
    import tvm
    from tvm import relax

    from .tvm_schedules import ScheduleStats, cpu_pipeline

    mod, lowering = integer_module(int8_model, input_shape)
    scheduled = ScheduleStats()
    llvm = tvm.target.Target(target)
    return relax.build(mod, target=llvm, relax_pipeline=cpu_pipeline(llvm, scheduled, records)), lowering, scheduled


def sdot_by_kernel(library: Path) -> dict[str, int]:
    """sdot instructions per kernel of an aarch64 library, from its disassembly. A kernel's
    parallel body (`<kernel>_compute_`) and its FFI entry (`__tvm_ffi_<kernel>`) count with it."""
    text = subprocess.run([_objdump(), "-d", str(library)], capture_output=True, text=True, check=True).stdout
    counts: dict[str, int] = {}
    kernel = None
    for line in text.splitlines():
        symbol = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if symbol:
            kernel = symbol.group(1).removeprefix("__tvm_ffi_").split("_compute_")[0]
            counts.setdefault(kernel, 0)
        elif kernel is not None and re.search(r"\bsdot\b", line):
            counts[kernel] += 1
    return counts


def sdot_summary(library: Path) -> dict:
    counts = sdot_by_kernel(library)
    convolutions = {name: n for name, n in counts.items() if "conv2d" in name}
    return {"sdot_instructions": sum(counts.values()), "conv_kernels": len(convolutions),
            "conv_kernels_with_sdot": sum(1 for n in convolutions.values() if n)}


class TvmHostRunner(Runner):
    """A TVM library built for this machine, run in-process by the Relax VM."""

    def __init__(self, library: Path, batch: int, threads: int, label: str):
        import tvm
        from tvm import relax

        os.environ.setdefault("TVM_NUM_THREADS", str(threads))  # the x86 runtime defaults to half the threads
        self._tvm = tvm
        self.device = tvm.cpu()
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), self.device)
        self.static_batch = batch
        self.label = label

    @property
    def runtime(self) -> str:
        return f"tvm {self._tvm.__version__} {platform.machine()} ({self.label})"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.vm["main"](self._tvm.runtime.tensor(batch, self.device)).numpy()


class QemuRunner(Runner):
    """The shipped aarch64 library, run by the artifact's own run.py under qemu-user with the board's CPU model."""

    def __init__(self, artifact: Path, runtime: Path, qemu_cpu: str, batch: int, threads: int):
        self.artifact, self.runtime_folder, self.qemu_cpu = artifact, runtime, qemu_cpu
        self.static_batch = batch
        self.threads = threads

    @property
    def runtime(self) -> str:
        return f"tvm aarch64 (qemu emulation, -cpu {self.qemu_cpu})"

    @property
    def arch(self) -> str:
        return "aarch64 (emulated)"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.run_all(batch)

    def batches(self, images: np.ndarray, batch_size: int = 256):
        yield len(images), self.run_all(images)

    def run_all(self, images: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="edgeresnet-qemu-") as tmp:
            inputs, logits = Path(tmp, "inputs.npy"), Path(tmp, "logits.npy")
            np.save(inputs, np.ascontiguousarray(images, dtype=np.float32))
            command, env = emulation.python_command(self.runtime_folder, self.qemu_cpu, self.artifact / "run.py",
                                                    "--npy", str(inputs), "--logits-out", str(logits), "--warmup", "0", "--quiet")
            env["TVM_NUM_THREADS"] = str(self.threads)
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
                raise CheckFailed(f"the aarch64 library failed under qemu -cpu {self.qemu_cpu} (exit {result.returncode}): {' | '.join(tail)}")
            return np.load(logits)


def preflight(profile: TargetProfile) -> None:
    """Fail before any work when the toolchain is missing."""
    cross = profile.details["cross_compiler"]
    if cross and shutil.which(cross) is None:
        raise MissingDependency(f"cross compiler {cross} not found: install it with 'apt-get install g++-aarch64-linux-gnu'")
    if profile.arch == "aarch64":
        _objdump()


def _objdump() -> str:
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump is None:
        raise MissingDependency("aarch64-linux-gnu-objdump not found: install it with 'apt-get install binutils-aarch64-linux-gnu'")
    return objdump


def check_records(profile: TargetProfile, records: str | Path) -> None:
    from .tvm_tuning import check_records_for

    check_records_for(records, profile.name, llvm_target(profile))


def build(context: BuildContext) -> TargetBuild:
    profile, folder = context.profile, context.folder
    details = profile.details
    input_shape = [context.batch, *context.model.preprocessing.input_shape]
    target = llvm_target(profile)
    executable, stats, scheduled = compile_integer_module(context.int8_model, input_shape, target, context.records)
    cross = details["cross_compiler"]
    executable.export_library(str(folder / LIBRARY), **({"cc": cross} if cross else {}))
    write_bytes_atomically(folder / QDQ_MODEL, context.int8_model.SerializeToString())

    copy_templates(folder, "tvm", RUNNER_FILES)
    copy_device_support(folder)
    (folder / DEPLOY_FILE).write_text(json.dumps({
        "target": profile.name, "library": LIBRARY, "input_name": "input", "input_shape": input_shape,
        "threads": details["threads"], "preprocessing": context.model.preprocessing.to_dict(),
    }, indent=2) + "\n")
    files = [LIBRARY, QDQ_MODEL, DEPLOY_FILE, *DEVICE_SUPPORT_FILES, *RUNNER_FILES]

    total_ops = stats.lowered + stats.float_convs_left + stats.float_dense_left
    build_details = {
        "llvm_target": target, "lowering": stats.to_dict(),
        "integer_share": round(stats.lowered / total_ops, 4) if total_ops else 0.0,
        "schedules": scheduled.to_dict(),
        "scheduled_share": scheduled.share,
        "toolchain": {"cross_compiler": _compiler_version(cross)} if cross else {},
    }
    if context.records is not None:
        from .tvm_tuning import records_provenance

        build_details["tuning_records"] = records_provenance(context.records)
    not_measured = ["latency on the board itself: run run.py there (emulated timings say nothing about the board)"]
    threads = os.cpu_count() or 1
    if profile.arch != "aarch64":
        runner = TvmHostRunner(folder / LIBRARY, context.batch, threads, f"{target.get('mcpu', 'generic')}, integer module")
        return TargetBuild(files, runner, build_details, not_measured)

    sdot = sdot_summary(folder / LIBRARY)
    build_details.update(sdot)
    if details["dotprod"] and (sdot["conv_kernels_with_sdot"] < sdot["conv_kernels"] or not sdot["conv_kernels"]):
        raise CheckFailed(f"{profile.name} has the dot-product extension, but only {sdot['conv_kernels_with_sdot']} "
                          f"of the {sdot['conv_kernels']} convolution kernels in {LIBRARY} use sdot")
    if not details["dotprod"] and sdot["sdot_instructions"]:
        raise CheckFailed(f"{profile.name}'s {details['cpu']} lacks sdot, yet {LIBRARY} contains {sdot['sdot_instructions']}")

    # The same integer module built for this host: the full-evaluation-set measurement.
    host_dir = Path(tempfile.mkdtemp(prefix="edgeresnet-tvm-host-"))
    host_target = {"kind": "llvm", "mcpu": host_cpu()}
    host_executable, _, _ = compile_integer_module(context.int8_model, input_shape, host_target)
    host_executable.export_library(str(host_dir / LIBRARY))
    host = TvmHostRunner(host_dir / LIBRARY, context.batch, threads, f"host build of the same integer module, {host_target['mcpu']}")
    try:
        runtime = emulation.build_runtime()
        emulated = QemuRunner(folder, runtime, details["qemu_cpu"], context.batch, threads)
        return TargetBuild(files, emulated, build_details, not_measured, sample_limit=context.emulated_samples, reference_runners=[host])
    except MissingDependency as exc:
        not_measured.append(f"the shipped aarch64 library under emulation: {exc}")
        return TargetBuild(files, host, build_details, not_measured)


def _compiler_version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"
