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

import shutil
import subprocess
from importlib import resources
from pathlib import Path

from edgeresnet.errors import MissingDependency

RUNNER = "edgeresnet-run"
RUNTIME_DIR = "runtime"
RUNTIME_LIBRARIES = {"libtvm_runtime.so": "tvm/lib/libtvm_runtime.so", "libtvm_ffi.so": "tvm_ffi/lib/libtvm_ffi.so"}
SOURCE = "edgeresnet_run.cc"
FILES = (RUNNER, *(f"{RUNTIME_DIR}/{name}" for name in RUNTIME_LIBRARIES))
# Without --no-as-needed the linker drops libtvm_runtime.so (nothing references it by name), and with it
# the VM executable loader that `vm_load_executable` needs.
LINK_FLAGS = ("-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN/runtime", "-Wl,--disable-new-dtags")


def build_native_runner(folder: Path, cross_compiler: str, site: Path, tvm_version: str) -> list[str]:
    """Compile the runner into `folder` and copy the runtime libraries beside it; returns the files added."""
    include = site / "tvm_ffi" / "include"
    libraries = {name: site / relative for name, relative in RUNTIME_LIBRARIES.items()}
    missing = [str(path) for path in (include, *libraries.values()) if not path.exists()]
    if missing:
        raise MissingDependency(f"the aarch64 TVM runtime folder lacks {missing[0]}; remove it to have it built again")
    runtime = folder / RUNTIME_DIR
    runtime.mkdir(exist_ok=True)
    for name, path in libraries.items():
        shutil.copyfile(path, runtime / name)  # already stripped in the wheels
    with resources.as_file(resources.files(__package__) / SOURCE) as source:
        command = [cross_compiler, "-std=c++17", "-O2", "-s", f"-DEDGERESNET_TVM_VERSION=\"{tvm_version}\"",
                   "-I", str(include), str(source), "-o", str(folder / RUNNER), "-L", str(runtime), *LINK_FLAGS]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()[-1:]
        raise MissingDependency(f"{cross_compiler} could not build {RUNNER}: {errors[0] if errors else result.returncode}")
    return list(FILES)


def size_bytes(folder: Path) -> int:
    """What the self-contained runtime adds to the artifact: the runner and TVM's two libraries."""
    return sum((folder / name).stat().st_size for name in FILES)
