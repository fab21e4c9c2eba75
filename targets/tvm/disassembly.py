"""What the aarch64 library really contains: its int8 multiply instructions per kernel, from its disassembly."""

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


# The multiply instructions of the convolution kernels: sdot (dot-product cores); on Armv8.0 NEON
# the smull + sadalp pair (direct int8 convolutions) and smlal by element (Winograd's int16
# products). The high-half forms (smull2, smlal2) count with their base instruction.
INT8_INSTRUCTIONS = ("sdot", "smull", "sadalp", "smlal")


def instructions_by_kernel(library: Path) -> dict[str, dict[str, int]]:
    """Counts of INT8_INSTRUCTIONS per kernel of an aarch64 library. A kernel's parallel body
    (`<kernel>_compute_`) and its FFI entry (`__tvm_ffi_<kernel>`) count with it."""
    text = subprocess.run([objdump(), "-d", str(library)], capture_output=True, text=True, check=True).stdout
    counts: dict[str, dict[str, int]] = {}
    kernel = None
    for line in text.splitlines():
        symbol = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if symbol:
            kernel = symbol.group(1).removeprefix("__tvm_ffi_").split("_compute_")[0]
            counts.setdefault(kernel, dict.fromkeys(INT8_INSTRUCTIONS, 0))
        elif kernel is not None:
            fields = line.split("\t")  # address, encoding, mnemonic, operands
            # Vector forms only: `smull x0, w1, w2` is the scalar multiply-long.
            mnemonic = fields[2].strip().removesuffix("2") if len(fields) >= 4 else ""
            if mnemonic in INT8_INSTRUCTIONS and re.search(r"\bv\d+\.", fields[3]):
                counts[kernel][mnemonic] += 1
    return counts


def int8_kernel_summary(library: Path) -> dict:
    """The multiply instructions per library and per convolution kernel: sdot; the smull + sadalp
    pair; smlal (Winograd, `winograd.py`)."""
    counts = instructions_by_kernel(library)
    convolutions = {name: n for name, n in counts.items() if "conv2d" in name}
    smull_sadalp = sum(1 for n in convolutions.values() if n["smull"] and n["sadalp"])
    winograd = sum(1 for n in convolutions.values() if n["smlal"] and not n["sadalp"])
    return {"sdot_instructions": sum(n["sdot"] for n in counts.values()), "conv_kernels": len(convolutions),
            "conv_kernels_with_sdot": sum(1 for n in convolutions.values() if n["sdot"]),
            "smull_instructions": sum(n["smull"] for n in counts.values()),
            "conv_kernels_with_smull_sadalp": smull_sadalp, "conv_kernels_winograd_smlal": winograd,
            "conv_kernels_with_widening_multiply": smull_sadalp + winograd}
