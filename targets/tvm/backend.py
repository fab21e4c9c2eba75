"""ARM (and x86-64) CPUs through Apache TVM: integer Relax compiled to a shared library.

The Q/DQ model (the `tvm` quantization scheme) is imported with TVM's ONNX
frontend, its quantized chains are rewritten into int8 x int8 -> int32 compute
(`lowering`), and the module is compiled for the board's LLVM triple, CPU and
features (`module`, `pipeline`, one module per kernel family, `schedules`), then linked with the board's cross
compiler. The library that ships is validated twice: the same integer module built
for this host on the whole evaluation set, and the shipped aarch64 library itself
under qemu-user, with the board's CPU model, on a sample.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import weakref
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeresnet.schema import Manifest
from edgeresnet.atomic import write_bytes_atomically
from edgeresnet.errors import CheckFailed, InputError, MissingDependency
from edgeresnet.quant_scheme import CalibrationMethod, QuantScheme

from ..base import (DEVICE_SUPPORT_FILES, Backend, BackendOptions, BuildContext, Target, TargetBuild, TargetDetails,
                    cannot_run_here, copy_device_support, copy_templates)
from ..capabilities import DeviceFarm, Emulation, RemoteRun, Tunable, TuneRequest
from . import emulation, native
from .disassembly import objdump, int8_kernel_summary
from .records import check_records_for, records_provenance

if TYPE_CHECKING:
    import numpy as np

    from edgeresnet.runners import Runner

    from .tuning import TuneResult

LIBRARY = "model.so"
QDQ_MODEL = "model.int8.onnx"  # the Q/DQ model the library was compiled from
RUNNER_FILES = ("run.py", "README.md")  # from templates/
DEPLOY_FILE = "deploy.json"

TVM_SCHEME = QuantScheme(
    name="tvm",
    description="symmetric int8 Q/DQ that the TVM integer lowering rewrites into int8 x int8 -> int32 compute",
    op_types=("Conv", "Gemm", "Add", "MaxPool", "GlobalAveragePool", "Flatten", "Relu"),
    activation_signed=True,
    activation_symmetric=True,
    quantize_bias=False,
    float_weights_with_qdq=False,
    dedicated_qdq_per_consumer=False,
    unquantized_outputs_of=("Gemm",),  # float logits
    residual_aware=False,
    # Every activation is int8 here, ReLU outputs included (7 useful bits):
    # clipping the rare outliers wins (reference model, 10,000 images: drop
    # 0.03 pts with percentile against 0.12 with minmax).
    calibration=CalibrationMethod.PERCENTILE,
    per_channel_axis={"Conv": 0},
)


@dataclass(frozen=True)
class TvmOptions(BackendOptions):
    emulated_samples: int | None = field(default=None, metadata={
        "flag": "--emulated-samples",
        "help": "Evaluation images run on the aarch64 library under emulation [default: 1000 at 28x28, fewer for "
                "larger inputs, at least 32]."})

    def __post_init__(self) -> None:
        if self.emulated_samples is not None and self.emulated_samples < 1:
            raise InputError(f"--emulated-samples must be at least 1, not {self.emulated_samples}")


@dataclass(frozen=True)
class CpuDetails(TargetDetails):
    llvm: dict[str, Any]  # TVM's LLVM target dict
    cpu: str
    features: list[str]
    dotprod: bool  # the core has sdot: every int8 convolution must use it
    threads: int  # the board's cores: runtime threads and MetaSchedule's parallel extent
    cross_compiler: str | None
    qemu_cpu: str | None  # qemu-user's model of the board's core


def _arm(name: str, description: str, cpu: str, features: list[str], qemu_cpu: str, threads: int, dotprod: bool) -> Target:
    return Target(
        name=name, backend=TvmBackend.name, arch="aarch64", description=description,
        details=CpuDetails(llvm={"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": cpu, "mattr": features},
                           cpu=cpu, features=features, dotprod=dotprod, threads=threads,
                           cross_compiler="aarch64-linux-gnu-g++", qemu_cpu=qemu_cpu),
    )


def llvm_target(target: Target) -> dict:
    llvm = dict(target.details.llvm)
    if target.arch == "x86_64":
        from .module import host_cpu

        llvm["mcpu"] = host_cpu()  # "native" is ignored by TVM 0.27
    if llvm.get("mcpu") == "generic":
        llvm.pop("mcpu")
    return llvm


class TvmBackend(Backend, Tunable, DeviceFarm, Emulation):
    name = "tvm"
    quant_scheme = TVM_SCHEME
    dynamic_batch = False  # TVM compiles one static shape
    device_config = DEPLOY_FILE
    options = TvmOptions
    tuner = "MetaSchedule, starting from the rule schedules"
    tuning_devices = "x86-64 on this machine; the ARM targets on boards through --rpc"
    farm_address = "KEY@HOST:PORT"
    farm_help = "the boards registered under KEY with the TVM RPC tracker at HOST:PORT"
    emulation_help = "aarch64 libraries under qemu-user (builds a cached runtime folder once)"

    def targets(self) -> list[Target]:
        return [
            _arm("rpi4", "Raspberry Pi 4: Cortex-A72, Armv8.0-A + NEON, no dot product", "cortex-a72", ["+neon"], "cortex-a72", 4, False),
            _arm("rpi5", "Raspberry Pi 5: Cortex-A76, Armv8.2-A + NEON + dot product (sdot)", "cortex-a76", ["+neon", "+dotprod"], "cortex-a76", 4, True),
            # qemu 7.2 has no Cortex-A78 model; the A76 implements the same Armv8.2-A + dotprod instructions.
            _arm("jetson-orin-cpu", "Jetson Orin CPU: Cortex-A78AE, Armv8.2-A + NEON + dot product (sdot)", "cortex-a78", ["+neon", "+dotprod"], "cortex-a76", 6, True),
            _arm("arm64", "generic Armv8-A with NEON (any 64-bit ARM board)", "generic", ["+neon"], "cortex-a53", 4, False),
            Target(name="x86-64", backend=self.name, arch="x86_64",
                   description="this host's x86-64 CPU via TVM (speed and numerics measured natively)",
                   details=CpuDetails(llvm={"kind": "llvm"}, cpu="host", features=[], dotprod=False, threads=os.cpu_count() or 1,
                                      cross_compiler=None, qemu_cpu=None)),
        ]

    def preflight(self, target: Target) -> None:
        cross = target.details.cross_compiler
        if cross and shutil.which(cross) is None:
            raise MissingDependency(f"cross compiler {cross} not found: install it with 'apt-get install g++-aarch64-linux-gnu'")
        if target.arch == "aarch64":
            objdump()

    def toolchain(self, target: Target) -> dict[str, str]:
        versions = {package: _package_version(package) for package in ("apache-tvm", "apache-tvm-ffi")}
        return {**versions, **_cross_compiler_version(target.details.cross_compiler)}

    def check_records(self, target: Target, records: Path) -> None:
        check_records_for(records, target.name, llvm_target(target))

    def check_tuning(self, target: Target, device: str | None, records: Path) -> None:
        from .remote import RpcDevice
        from .tuning import check_tuning

        check_tuning(target, llvm_target(target), RpcDevice.parse(device) if device else None, records)

    def tune(self, request: TuneRequest) -> TuneResult:
        from .tuning import tune_kernels

        return tune_kernels(request, llvm_target(request.target))

    def open_artifact(self, target: Target, folder: Path, manifest: Manifest) -> Runner:
        from .runners import TvmHostRunner

        if target.arch == platform.machine():
            return TvmHostRunner(folder / LIBRARY, manifest.input.batch, os.cpu_count() or 1, f"{target.name} artifact")
        hint = " (pass --emulate to run it under qemu)" if target.arch == "aarch64" else ""
        raise cannot_run_here(target, folder, hint)

    def open_emulated(self, target: Target, folder: Path, manifest: Manifest) -> Runner:
        from .runners import QemuRunner

        if target.arch == platform.machine():
            return self.open_artifact(target, folder, manifest)
        if target.arch != "aarch64":
            raise cannot_run_here(target, folder)
        return QemuRunner(folder, emulation.build_runtime(), target.details.qemu_cpu, manifest.input.batch,
                          os.cpu_count() or 1)

    def host_reference(self, target: Target, folder: Path, manifest: Manifest) -> Runner:
        if target.arch == platform.machine():
            return self.open_artifact(target, folder, manifest)
        import onnx

        shape = [manifest.input.batch, manifest.input.channels, *manifest.input.input_size]
        return _host_build(onnx.load(folder / QDQ_MODEL), shape)

    def check_farm_address(self, text: str) -> None:
        from .remote import RpcDevice

        RpcDevice.parse(text)

    def run_on_device_farm(self, target: Target, folder: Path, manifest: Manifest, address: str,
                           inputs: np.ndarray) -> RemoteRun:
        from .remote import RpcDevice, run_on_boards

        return run_on_boards(RpcDevice.parse(address), folder / LIBRARY, inputs, manifest.input.batch)

    def build(self, context: BuildContext) -> TargetBuild:
        input_shape = [context.batch, *context.model.preprocessing.input_shape]
        host_build = _HostBuildBeside(context.int8_model, input_shape) if context.target.arch == "aarch64" else None
        try:
            return self._build(context, input_shape, host_build)
        except BaseException:
            if host_build:
                host_build.discard()
            raise

    def _build(self, context: BuildContext, input_shape: list[int], host_build: _HostBuildBeside | None) -> TargetBuild:
        from .module import compile_integer_module
        from .runners import QemuRunner, TvmHostRunner

        target, folder = context.target, context.folder
        details: CpuDetails = target.details
        llvm = llvm_target(target)
        with ThreadPoolExecutor(1) as background:
            # The native runner's cross-compilation (a subprocess) runs beside the TVM build.
            runner_build = background.submit(_build_native_runner, folder, details.cross_compiler) if target.arch == "aarch64" else None
            executable, stats, scheduled = compile_integer_module(context.int8_model, input_shape, llvm, context.records)
            native_files = _native_runner_files(runner_build)
        cross = details.cross_compiler
        executable.export_library(str(folder / LIBRARY), **({"cc": cross} if cross else {}))
        write_bytes_atomically(folder / QDQ_MODEL, context.int8_model.SerializeToString())

        copy_templates(folder, __package__, RUNNER_FILES)
        copy_device_support(folder)
        (folder / DEPLOY_FILE).write_text(json.dumps({
            "target": target.name, "library": LIBRARY, "input_name": "input", "input_shape": input_shape,
            "threads": details.threads, "preprocessing": context.model.preprocessing.to_dict(),
        }, indent=2) + "\n")
        files = [LIBRARY, QDQ_MODEL, DEPLOY_FILE, *DEVICE_SUPPORT_FILES, *RUNNER_FILES]

        total_ops = stats.lowered + stats.float_convs_left + stats.float_dense_left
        build_details = {
            "llvm_target": llvm, "lowering": stats.to_dict(),
            "integer_share": round(stats.lowered / total_ops, 4) if total_ops else 0.0,
            "schedules": scheduled.to_dict(),
            "scheduled_share": scheduled.share,
            "parallel_split": scheduled.parallel_split(details.threads),
            "toolchain": _cross_compiler_version(cross),
        }
        # Tuning records are an input of the build, like the calibration data: which, and how made.
        provenance: dict[str, Any] = {} if context.records is None else {"tuning_records": records_provenance(context.records)}
        build_details.update(provenance)
        not_measured = ["latency on the board itself: run run.py there (emulated timings say nothing about the board)"]
        threads = os.cpu_count() or 1
        if target.arch != "aarch64":
            runner = TvmHostRunner(folder / LIBRARY, context.batch, threads, f"{llvm.get('mcpu', 'generic')}, integer module")
            return TargetBuild(files, runner, build_details, not_measured, provenance=provenance)

        # The self-contained form: TVM's aarch64 runtime and a native runner, for boards without Python.
        if isinstance(native_files, MissingDependency):
            not_measured.append(f"no native runner (edgeresnet-run) in this artifact: {native_files}")
        else:
            files += native_files
            build_details.update(native_runner={"runner": native.RUNNER, "files": list(native.FILES),
                                                "bytes": native.size_bytes(folder), "tvm_runtime": emulation.TVM_VERSION})

        kernels = int8_kernel_summary(folder / LIBRARY)
        build_details.update(kernels.to_dict())
        if details.dotprod and (kernels.conv_kernels_with_sdot < kernels.conv_kernels or not kernels.conv_kernels):
            raise CheckFailed(f"{target.name} has the dot-product extension, but only {kernels.conv_kernels_with_sdot} "
                              f"of the {kernels.conv_kernels} convolution kernels in {LIBRARY} use sdot")
        if not details.dotprod and kernels.sdot_instructions:
            raise CheckFailed(f"{target.name}'s {details.cpu} lacks sdot, yet {LIBRARY} contains {kernels.sdot_instructions}")
        if not details.dotprod and kernels.conv_kernels_with_widening_multiply < kernels.conv_kernels:
            raise CheckFailed(f"only {kernels.conv_kernels_with_widening_multiply} of the {kernels.conv_kernels} convolution "
                              f"kernels in {target.name}'s {LIBRARY} use the smull + sadalp or Winograd smlal kernel")

        # The same integer module built for this host: the full-evaluation-set measurement.
        host = host_build.runner()
        try:
            emulated = QemuRunner(folder, emulation.build_runtime(), details.qemu_cpu, context.batch, threads)
            assert isinstance(context.options, TvmOptions)
            samples = context.options.emulated_samples or emulation.default_emulated_samples(input_shape[1:])
            return TargetBuild(files, emulated, build_details, not_measured, sample_limit=samples,
                               reference_runners=[host], host_twin=host, provenance=provenance)
        except MissingDependency as exc:
            not_measured.append(f"the shipped aarch64 library under emulation: {exc}")
            return TargetBuild(files, host, build_details, not_measured, provenance=provenance)


def _build_native_runner(folder: Path, cross_compiler: str) -> list[str]:
    return native.build_native_runner(folder, cross_compiler, emulation.build_runtime() / "site", emulation.TVM_VERSION)


def _native_runner_files(build: Future | None) -> list[str] | MissingDependency | None:
    try:
        return build.result() if build else None
    except MissingDependency as exc:
        return exc


def _host_build(int8_model, input_shape: list[int]) -> Runner:
    """The same integer module built for this host's CPU, in a folder that goes with its runner."""
    folder = Path(tempfile.mkdtemp(prefix="edgeresnet-tvm-host-"))
    cpu = _build_host_library(int8_model.SerializeToString(), input_shape, str(folder / LIBRARY))
    return _host_runner(folder, input_shape, cpu)


class _HostBuildBeside:
    """`_host_build` in a child process, beside the board's build (TVM's compiler is not thread-safe, and the
    two builds then take the machine's two cores instead of one after the other)."""

    def __init__(self, int8_model, input_shape: list[int]):
        import multiprocessing

        from edgeresnet.processes import die_with_parent, remove_on_forced_exit

        self.input_shape = input_shape
        self.folder = Path(tempfile.mkdtemp(prefix="edgeresnet-tvm-host-"))
        remove_on_forced_exit(self.folder)
        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent())
        self.cpu = self.pool.submit(_build_host_library, int8_model.SerializeToString(), input_shape, str(self.folder / LIBRARY))

    def runner(self) -> Runner:
        try:
            cpu = self.cpu.result()
        except BaseException:
            self.discard()
            raise
        self.pool.shutdown()
        return _host_runner(self.folder, self.input_shape, cpu)

    def discard(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def _build_host_library(int8_model: bytes, input_shape: list[int], library: str) -> str:
    import onnx

    from .module import compile_integer_module, host_cpu

    cpu = host_cpu()
    executable, _, _ = compile_integer_module(onnx.ModelProto.FromString(int8_model), input_shape, {"kind": "llvm", "mcpu": cpu})
    executable.export_library(library)
    return cpu


def _host_runner(folder: Path, input_shape: list[int], cpu: str) -> Runner:
    from .runners import TvmHostRunner

    runner = TvmHostRunner(folder / LIBRARY, input_shape[0], os.cpu_count() or 1, f"host build of the same integer module, {cpu}")
    weakref.finalize(runner, shutil.rmtree, str(folder), True)  # its folder goes when the runner does (or at exit)
    return runner


def _package_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _compiler_version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def _cross_compiler_version(compiler: str | None) -> dict[str, str]:
    """The toolchain entry of a cross build: the compiler's version line; nothing for a native build."""
    return {"cross_compiler": _compiler_version(compiler)} if compiler else {}
