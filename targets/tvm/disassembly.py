"""What the aarch64 library really contains: its int8 multiply instructions per kernel, from its disassembly."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from edgeresnet.errors import MissingDependency


def objdump() -> str:
    tool = shutil.which("aarch64-linux-gnu-objdump")
    if tool is None:
        raise MissingDependency("aarch64-linux-gnu-objdump not found: install it with 'apt-get install binutils-aarch64-linux-gnu'")
    return tool


class InstructionCounts(NamedTuple):
    """The multiply instructions of the convolution kernels: sdot (dot-product cores); on Armv8.0 NEON
    the smull + sadalp pair (direct int8 convolutions) and smlal by element (Winograd's int16
    products). The high-half forms (smull2, smlal2) count with their base instruction."""
    sdot: int = 0
    smull: int = 0
    sadalp: int = 0
    smlal: int = 0


INT8_INSTRUCTIONS = InstructionCounts._fields


def instructions_by_kernel(library: Path) -> dict[str, InstructionCounts]:
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
            columns = line.split("\t")  # address, encoding, mnemonic, operands
            # Vector forms only: `smull x0, w1, w2` is the scalar multiply-long.
            mnemonic = columns[2].strip().removesuffix("2") if len(columns) >= 4 else ""
            if mnemonic in INT8_INSTRUCTIONS and re.search(r"\bv\d+\.", columns[3]):
                counts[kernel][mnemonic] += 1
    return {kernel: InstructionCounts(**n) for kernel, n in counts.items()}


@dataclass(frozen=True)
class Int8KernelSummary:
    """The multiply instructions per library and per convolution kernel: sdot; the smull + sadalp
    pair; smlal (Winograd, `winograd.py`). Field order is the order of the build details' keys."""
    sdot_instructions: int
    conv_kernels: int
    conv_kernels_with_sdot: int
    smull_instructions: int
    conv_kernels_with_smull_sadalp: int
    conv_kernels_winograd_smlal: int
    conv_kernels_with_widening_multiply: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def int8_kernel_summary(library: Path) -> Int8KernelSummary:
    counts = instructions_by_kernel(library)
    convolutions = [n for name, n in counts.items() if "conv2d" in name]
    smull_sadalp = sum(1 for n in convolutions if n.smull and n.sadalp)
    winograd = sum(1 for n in convolutions if n.smlal and not n.sadalp)
    return Int8KernelSummary(
        sdot_instructions=sum(n.sdot for n in counts.values()), conv_kernels=len(convolutions),
        conv_kernels_with_sdot=sum(1 for n in convolutions if n.sdot),
        smull_instructions=sum(n.smull for n in counts.values()),
        conv_kernels_with_smull_sadalp=smull_sadalp, conv_kernels_winograd_smlal=winograd,
        conv_kernels_with_widening_multiply=smull_sadalp + winograd)
