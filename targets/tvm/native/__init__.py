"""The self-contained ARM artifact: TVM's aarch64 runtime libraries and a native runner, no Python on the board.

`edgeresnet_run.cc` is compiled with the board's cross compiler against the
tvm-ffi headers of the apache-tvm-ffi wheel and linked to the aarch64
`libtvm_runtime.so` / `libtvm_ffi.so` of PyPI's wheels (the files the emulation
runtime folder already unpacked: one cache). The artifact gets

    edgeresnet-run                 the runner (rpath $ORIGIN/runtime)
    runtime/libtvm_runtime.so      TVM's runtime (VM, thread pool), from apache-tvm's aarch64 wheel
    runtime/libtvm_ffi.so          TVM's FFI, from apache-tvm-ffi's aarch64 wheel

so the board needs only its C and C++ runtime libraries (glibc >= 2.28, libstdc++ of GCC >= 12).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from edgeresnet.errors import MissingDependency
from edgeresnet.processes import die_with_parent

RUNNER = "edgeresnet-run"
RUNTIME_DIR = "runtime"
RUNTIME_LIBRARIES = {"libtvm_runtime.so": "tvm/lib/libtvm_runtime.so", "libtvm_ffi.so": "tvm_ffi/lib/libtvm_ffi.so"}
SOURCE = "edgeresnet_run.cc"
FILES = (RUNNER, *(f"{RUNTIME_DIR}/{name}" for name in RUNTIME_LIBRARIES))
# Without --no-as-needed the linker drops libtvm_runtime.so (nothing references it by name), and with it
# the VM executable loader that `vm_load_executable` needs.
LINK_FLAGS = ("-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN/runtime", "-Wl,--disable-new-dtags")


def build_native_runner(folder: Path, cross_compiler: str, site: Path, tvm_version: str) -> list[str]:
    """Compile the runner into `folder` and copy the runtime libraries beside it; returns the files added.

    The runner is the same program for every model, so a compiled one is kept beside the runtime folder,
    keyed by its source, the headers, the compiler and the flags, and copied on later builds (the
    cross-compilation takes ~8 s)."""
    include = site / "tvm_ffi" / "include"
    libraries = {name: site / relative for name, relative in RUNTIME_LIBRARIES.items()}
    missing = [str(path) for path in (include, *libraries.values()) if not path.exists()]
    if missing:
        raise MissingDependency(f"the aarch64 TVM runtime folder lacks {missing[0]}; remove it to have it built again")
    runtime = folder / RUNTIME_DIR
    runtime.mkdir(exist_ok=True)
    for name, path in libraries.items():
        shutil.copyfile(path, runtime / name)  # already stripped in the wheels
    flags = ["-std=c++17", "-O2", "-s", f"-DEDGERESNET_TVM_VERSION=\"{tvm_version}\""]
    source_text = (resources.files(__package__) / SOURCE).read_bytes()
    cached = site.parent / "native-runners" / _build_key(source_text, cross_compiler, flags, include, runtime) / RUNNER
    if not cached.exists():
        _compile(cached, cross_compiler, flags, include, runtime)
    shutil.copy2(cached, folder / RUNNER)
    return list(FILES)


def _compile(output: Path, cross_compiler: str, flags: list[str], include: Path, runtime: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{RUNNER}.{os.getpid()}.partial")
    with resources.as_file(resources.files(__package__) / SOURCE) as source:
        command = [cross_compiler, *flags, "-I", str(include), str(source), "-o", str(partial), "-L", str(runtime), *LINK_FLAGS]
        result = subprocess.run(command, capture_output=True, text=True, preexec_fn=die_with_parent())
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        errors = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()[-1:]
        raise MissingDependency(f"{cross_compiler} could not build {RUNNER}: {errors[0] if errors else result.returncode}")
    os.replace(partial, output)  # complete or absent, also with compiles running side by side


def _build_key(source: bytes, cross_compiler: str, flags: list[str], include: Path, runtime: Path) -> str:
    digest = hashlib.sha256(source)
    version = subprocess.run([cross_compiler, "--version"], capture_output=True, text=True).stdout
    for part in (version, *flags, *LINK_FLAGS):
        digest.update(part.encode() + b"\0")
    for path in sorted((*include.rglob("*.h"), *runtime.iterdir())):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def size_bytes(folder: Path) -> int:
    """What the self-contained runtime adds to the artifact: the runner and TVM's two libraries."""
    return sum((folder / name).stat().st_size for name in FILES)
