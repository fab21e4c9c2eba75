"""The integer dot-product instruction a target has, and what the kernels and the lowering choose by it.

Integer convolutions group the input channels of each output channel so that one
instruction multiplies a whole group and adds it to a 32-bit lane:

* ``sdot`` (Armv8.2 dot product, Cortex-A76/A78): groups of 4 int8, 4 lanes per
  instruction; the weight tile of 4 output x 4 input channels is 16 contiguous bytes.
* ``pmaddwd`` (x86 AVX2, no VNNI): groups of 2, int8 values widened to int16 once
  when the input is padded, 8 lanes per instruction.
* ``vpdpbusd`` (x86 AVX-VNNI, or AVX512-VNNI with VL): groups of 4 bytes, unsigned
  activations x signed weights, 8 lanes: twice ``pmaddwd``'s products per instruction,
  the add included. Our int8 activations are stored shifted by +128 into uint8 when the
  input is padded (padding included, so every tap reads a shifted value), and the
  convolution subtracts 128 x the sum of each output channel's weights, computed once at
  compile time: exact, as oneDNN does it.
* ``smull`` (Armv8.0 NEON without dot product, Cortex-A72): partial sums (`conv_partial_sums`),
  and Winograd for 3x3 stride-1 layers (`winograd`).
* ``generic`` (others): groups of 4, no intrinsic; LLVM vectorizes the loops it can.

The tensor intrinsics named here are registered by the kernel family that uses them
(`conv_blocked`, `conv_partial_sums`).
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm

from .blocking import BLOCK


@dataclass(frozen=True)
class DotKind:
    name: str
    group: int  # input channels reduced into one 32-bit lane per instruction
    lanes: int  # output channels one instruction produces
    activation_dtype: str  # the dtype the padded input is stored in
    intrinsic: str | None
    # One pixel's 8 input channels x 8 output channels in one step, when the instruction set has a
    # cheaper form for it than `intrinsic` per group (sdot's by-element form: no broadcast).
    block_intrinsic: str | None = None
    # The same step on an input block of one group (a 4-channel image): two horizontally adjacent
    # pixels (two taps of the kernel row, contiguous in NCHW4c whatever the stride) in one load.
    pixel_pair_intrinsic: str | None = None
    # >1: each output channel accumulates this many int32 partial sums (one vector per output),
    # added together in the epilogue: the widening multiply-accumulate scheme of cores without
    # a dot product (smull + sadalp), where the instruction's lanes run over input channels.
    partial_sums: int = 1
    # Added to every int8 activation as it is stored (int8 -> uint8 for an unsigned x signed
    # instruction); the convolution subtracts it times its weights' sum.
    activation_offset: int = 0


SDOT = DotKind("sdot", group=4, lanes=4, activation_dtype="int8", intrinsic="edgeresnet_sdot_4x4_i8i8i32",
               block_intrinsic="edgeresnet_sdot_lane_8x8_i8i8i32", pixel_pair_intrinsic="edgeresnet_sdot_pixel_pair_8x8_i8i8i32")
PMADDWD = DotKind("pmaddwd", group=2, lanes=8, activation_dtype="int16", intrinsic="edgeresnet_pmaddwd_8x2_i16i8i32")
VPDPBUSD = DotKind("vpdpbusd", group=4, lanes=8, activation_dtype="uint8", intrinsic="edgeresnet_vpdpbusd_8x4_u8i8i32",
                   activation_offset=128)
# Armv8.0 NEON: smull multiplies one pixel's 8 input channels by one output channel's 8 weights
# into int16 (one product per lane, so no overflow whatever the values), sadalp adds the lanes
# pairwise into 4 int32 partial sums. 8 MACs per multiply, the A72's multiply-pipe limit; the
# same throughput as ONNX Runtime's smull/smlal2/sadalp kernel, which needs weights in [-127, 127].
SMULL = DotKind("smull", group=8, lanes=4, activation_dtype="int8", intrinsic="edgeresnet_smull_sadalp_8_i8i8i32",
                partial_sums=4)
GENERIC = DotKind("generic", group=4, lanes=BLOCK, activation_dtype="int8", intrinsic=None)


def dot_kind(target: tvm.target.Target) -> DotKind:
    """The integer dot-product instruction the target has, from LLVM's view of the target's own
    CPU and features (not the host's; a target without a triple is this machine)."""
    from tvm.target import codegen

    def has(*features: str) -> bool:
        return all(codegen.target_has_features(feature, target) for feature in features)

    if is_aarch64(target):
        return SDOT if has("dotprod") else SMULL
    if has("avxvnni") or has("avx512vnni", "avx512vl"):
        return VPDPBUSD
    return PMADDWD if has("avx2") else GENERIC


def folds_first_convolution(target: tvm.target.Target) -> bool:
    """Whether the lowering folds an image's few channels x kernel width into channels (exact).

    It pays where the unfolded first convolution would be scalar code (the partial-sum kernel
    needs whole 8-channel blocks: ResNet-18's stem was half of the A72's cycles); where a
    4-channel group has its own instruction (sdot, pmaddwd), building the folded input costs
    more than it saves (cycle model, Cortex-A76: 10.4 M against 9.7 M cycles)."""
    return dot_kind(target).partial_sums > 1


def reads_rows_flat(target: tvm.target.Target) -> bool:
    """Whether a convolution on an image's few channels (1 or 3, not padded) reads each kernel row
    as one contiguous byte string (`conv_flat_rows`): where the by-element block intrinsic exists."""
    return dot_kind(target).block_intrinsic is not None


def is_aarch64(target: tvm.target.Target) -> bool:
    from tvm.target import codegen

    return str(target.attrs.get("mtriple") or codegen.llvm_get_system_triple()).startswith("aarch64")
