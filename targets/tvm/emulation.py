"""An aarch64 runtime folder for running ARM artifacts on an x86 host under qemu-user.

The folder holds an arm64 Python 3.11 sysroot unpacked from Debian's own
packages (fetched with a private apt configuration; no root, no binfmt, no
chroot) and the aarch64 wheels of apache-tvm (runtime only), apache-tvm-ffi and
numpy from PyPI. Built once and cached; `qemu-aarch64 -cpu <board's core> -L sysroot`
runs the artifact's own run.py in it, so the emulated CPU refuses any
instruction the board lacks (an sdot on a Cortex-A72 dies with SIGILL).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgeresnet.atomic import first_use_lock
from edgeresnet.errors import MissingDependency
from edgeresnet.processes import die_with_parent, forget_on_forced_exit, remove_on_forced_exit

DEFAULT_FOLDER = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeresnet" / "aarch64-runtime"
FOLDER_ENV = "EDGERESNET_AARCH64_RUNTIME"
SYSROOT_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6")
TVM_VERSION = "0.27.0.post1"  # the aarch64 runtime the artifacts ship (runtime/) and are emulated with
WHEELS = (f"apache-tvm=={TVM_VERSION}", "apache-tvm-ffi==0.1.14.post1", "numpy==2.4.*", "ml_dtypes", "typing_extensions")
# The compiler half of the TVM wheel is not needed to run a compiled library.
DROP_FROM_TVM = ("tvm/lib/libtvm_compiler.so", "tvm/lib/libtvm_runtime_cuda.so", "tvm/3rdparty/")
COMPLETE_MARK = ".complete"
# Evaluation images run under emulation unless --emulated-samples says otherwise: 1,000 of the reference
# model's 28x28 inputs, fewer as inputs grow (ResNet-18 at 224x224 takes ~0.6 s an image under qemu here,
# 1,000 of them ~10 minutes), never fewer than 32. Beyond being measured themselves, they decide
# whether the host build's whole-set figure stands for the shipped library (bit-identical logits).
EMULATED_INPUT_BUDGET = 1000 * 28 * 28
MIN_EMULATED_SAMPLES = 32


def default_emulated_samples(input_shape) -> int:
    """Images run under emulation by default for inputs of `input_shape` (no batch dimension)."""
    from edgeresnet.evaluate import samples_within

    return samples_within(EMULATED_INPUT_BUDGET, input_shape, MIN_EMULATED_SAMPLES)


def runtime_folder() -> Path:
    return Path(os.environ.get(FOLDER_ENV) or DEFAULT_FOLDER)


def qemu_binary() -> str:
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if qemu is None:
        raise MissingDependency("qemu-aarch64 not found: install it with 'apt-get install qemu-user'")
    return qemu


def _run(command: list[str], **kwargs) -> None:
    result = subprocess.run(command, capture_output=True, text=True, preexec_fn=die_with_parent(), **kwargs)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise MissingDependency(f"building the aarch64 runtime failed at '{' '.join(command[:3])} ...': {detail[-1] if detail else result.returncode}")


def _apt_config(work: Path) -> Path:
    for sub in ("lists/partial", "cache/archives/partial", "etc/preferences.d", "etc/apt.conf.d", "sources.d"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "status").touch()
    sources = [p for p in Path("/etc/apt/sources.list.d").glob("*.sources") if "debian" in p.read_text()]
    if not sources:
        raise MissingDependency("no Debian apt source found in /etc/apt/sources.list.d to fetch arm64 packages from")
    for source in sources:
        shutil.copy(source, work / "sources.d" / source.name)
    config = work / "apt.conf"
    config.write_text("\n".join([
        f'Dir::State "{work}";', f'Dir::State::Lists "{work}/lists";', f'Dir::State::status "{work}/status";',
        f'Dir::Cache "{work}/cache";', 'Dir::Etc::SourceList "/dev/null";', f'Dir::Etc::SourceParts "{work}/sources.d";',
        f'Dir::Etc::Preferences "{work}/etc/preferences";', f'Dir::Etc::PreferencesParts "{work}/etc/preferences.d";',
        f'Dir::Etc::Parts "{work}/etc/apt.conf.d";', 'APT::Architecture "arm64";', 'APT::Architectures { "arm64"; };',
    ]) + "\n")
    return config


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)  # stdout is --json's


def build_runtime(folder: Path | None = None, log=_to_stderr) -> Path:
    """Build (or reuse) the runtime folder; returns it. Needs network access to Debian's and PyPI's mirrors."""
    folder = folder or runtime_folder()
    if (folder / COMPLETE_MARK).is_file():
        return folder
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise MissingDependency("building the aarch64 runtime needs apt-get and dpkg-deb (Debian)")
    with first_use_lock(folder):
        if (folder / COMPLETE_MARK).is_file():  # built by a compile started beside this one
            return folder
        _build_runtime_into(folder, log)
    return folder


def _build_runtime_into(folder: Path, log) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".aarch64-runtime.", dir=folder.parent))
    remove_on_forced_exit(staging)
    try:
        log("building the aarch64 emulation runtime (arm64 Python from Debian, aarch64 wheels from PyPI; once)")
        env = {**os.environ, "APT_CONFIG": str(_apt_config(staging / "apt"))}
        _run(["apt-get", "update", "-qq"], env=env)
        _run(["apt-get", "install", "-y", "-qq", "--download-only", "--no-install-recommends", *SYSROOT_PACKAGES], env=env)
        sysroot = staging / "sysroot"
        for deb in sorted((staging / "apt" / "cache" / "archives").glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(sysroot)])
        wheels = staging / "wheels"
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
              "--platform", "manylinux_2_28_aarch64", "--python-version", "3.11", "--implementation", "cp",
              "-d", str(wheels), *WHEELS])
        site = staging / "site"
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                members = [m for m in archive.namelist() if not m.startswith(DROP_FROM_TVM)]
                archive.extractall(site, members)
        shutil.rmtree(staging / "apt")
        shutil.rmtree(wheels)
        (staging / COMPLETE_MARK).write_text("ok\n")
        if folder.exists():  # an incomplete one (no mark), which no process uses
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        forget_on_forced_exit(staging)


def native_command(folder: Path, qemu_cpu: str, program: Path, *args: str) -> list[str]:
    """The command that runs an aarch64 program (the artifact's edgeresnet-run) under qemu with the folder's libraries."""
    return [qemu_binary(), "-cpu", qemu_cpu, "-L", str(folder / "sysroot"), str(program), *args]


def python_command(folder: Path, qemu_cpu: str, script: Path, *args: str) -> tuple[list[str], dict]:
    """The command and environment that run `script` with the folder's arm64 Python under qemu."""
    sysroot = folder / "sysroot"
    command = [qemu_binary(), "-cpu", qemu_cpu, "-L", str(sysroot), str(sysroot / "usr/bin/python3.11"), str(script), *args]
    env = {**os.environ, "PYTHONPATH": str(folder / "site"), "TVM_USE_RUNTIME_LIB": "1", "PYTHONNOUSERSITE": "1"}
    return command, env
