"""What the aarch64 library really contains: sdot instructions per kernel, from its disassembly."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from edgeresnet.errors import MissingDependency


def objdump() -> str:
    tool = shutil.which("aarch64-linux-gnu-objdump")
    if tool is None:
        raise MissingDependency("aarch64-linux-gnu-objdump not found: install it with 'apt-get install binutils-aarch64-linux-gnu'")
    return tool


def sdot_by_kernel(library: Path) -> dict[str, int]:
    """sdot instructions per kernel of an aarch64 library. A kernel's parallel body
    (`<kernel>_compute_`) and its FFI entry (`__tvm_ffi_<kernel>`) count with it."""
    text = subprocess.run([objdump(), "-d", str(library)], capture_output=True, text=True, check=True).stdout
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
