"""Blocked convolutions for TVM's CPU path: NCHW[8]c layouts, pre-packed weights, int8 dot-product intrinsics.

TVM 0.27's default conv2d works on plain NCHW and cannot keep a tile of outputs
in registers. Here every convolution is converted (Relax's ConvertLayout) to the
blocked layout NCHW8c, where eight output channels are one vector and a row of
output pixels a set of vector accumulators (the layout oneDNN and TVM's old x86
schedules use). Layouts propagate through the elementwise ops between
convolutions, so activations stay blocked from the first convolution to the
global pool; the weights are packed once, at compile time (FoldConstant).

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
* ``generic`` (Armv8.0 NEON without dot product, others): groups of 4, no intrinsic;
  LLVM vectorizes the loops it can.

On cores without a dot product (``smull``), 3x3 stride-1 convolutions (outputs at least 4x4)
run as Winograd F(4x4, 3x3) instead (`winograd.py`): a quarter of the products, in int16.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import tvm
from tvm import te, topi
from tvm.script import tirx as T
from tvm.s_tir import TensorIntrin

from . import winograd
from .blocking import ACCUMULATOR_SCOPE, BLOCK


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
    as one contiguous byte string (`_conv_flat_rows`): where the by-element block intrinsic exists."""
    return dot_kind(target).block_intrinsic is not None


def is_aarch64(target: tvm.target.Target) -> bool:
    from tvm.target import codegen

    return str(target.attrs.get("mtriple") or codegen.llvm_get_system_triple()).startswith("aarch64")


def _dot_description(lanes: int, group: int, a_dtype: str):
    @T.prim_func(s_tir=True)
    def description(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (group,), a_dtype, offset_factor=1)
        B = T.match_buffer(b, (lanes, group), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:group], B[0:lanes, 0:group])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, group):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return description


def _sdot(accumulator, weights, operand):
    return T.call_llvm_pure_intrin("int32x4", "llvm.aarch64.neon.sdot.v4i32.v16i8", accumulator, weights, operand)


def _group_in_every_lane(pixel, group: int):
    """sdot's by-element operand: 4-byte group `group` of the pixel's 8 bytes in all four lanes."""
    words = T.reinterpret("int32x2", pixel.vload([0] * len(pixel.shape), "int8x8"))
    return T.reinterpret("int8x16", tvm.tirx.Shuffle([words, words], [group] * 4))


def _dot_implementation(lanes: int, group: int, a_dtype: str, accumulate):
    """`_dot_description`'s step as one instruction: `accumulate(acc, a, b)` gets the accumulator
    vector, the activation group (32 bits) in every lane, and the weights [lanes, group] as bytes."""
    @T.prim_func(s_tir=True)
    def implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (group,), a_dtype, offset_factor=1)
        B = T.match_buffer(b, (lanes, group), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:group], B[0:lanes, 0:group])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = accumulate(
                C.vload([0], f"int32x{lanes}"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], f"{a_dtype}x{group}"), dtype="int32"), lanes),
                              dtype=f"{a_dtype}x{lanes * group}"),
                B.vload([0, 0], f"int8x{lanes * group}"))

    return implementation


def _block_description(lanes: int, groups: int, group: int):
    """`lanes` output channels += one pixel's `groups` x `group` input channels, weights [groups, lanes, group]."""

    @T.prim_func(s_tir=True)
    def description(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (groups * group,), "int8", offset_factor=1)
        B = T.match_buffer(b, (groups, lanes, group), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:groups * group], B[0:groups, 0:lanes, 0:group])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for q in T.serial(0, groups):
                    for k in T.serial(0, group):
                        with T.sblock("update"):
                            vi, vq, vk = T.axis.remap("SRR", [i, q, k])
                            C[vi] = C[vi] + T.cast(A[vq * group + vk], "int32") * T.cast(B[vq, vi, vk], "int32")

    return description


@T.prim_func(s_tir=True)
def _sdot_lane_implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
    # The pixel's 8 bytes are loaded once (one `ldr d`, which takes an immediate offset) and each
    # 4-byte group feeds sdot's by-element form: LLVM folds the lane splat into the instruction,
    # so no `ld1r` (a vector-pipe op next to the sdots) and no address `add` per group. The
    # operands are built by Python helpers, not TVMScript variables: a named vector temporary
    # becomes a local buffer, i.e. a workspace allocation per parallel iteration.
    A = T.match_buffer(a, (8,), "int8", offset_factor=1)
    B = T.match_buffer(b, (2, 8, 4), "int8", offset_factor=1)
    C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)
    with T.sblock("root"):
        T.reads(C[0:8], A[0:8], B[0:2, 0:8, 0:4])
        T.writes(C[0:8])
        C[T.ramp(T.int32(0), 1, 4)] = _sdot(_sdot(C.vload([0], "int32x4"), B.vload([0, 0, 0], "int8x16"), _group_in_every_lane(A, 0)),
                                            B.vload([1, 0, 0], "int8x16"), _group_in_every_lane(A, 1))
        C[T.ramp(T.int32(4), 1, 4)] = _sdot(_sdot(C.vload([4], "int32x4"), B.vload([0, 4, 0], "int8x16"), _group_in_every_lane(A, 0)),
                                            B.vload([1, 4, 0], "int8x16"), _group_in_every_lane(A, 1))


@T.prim_func(s_tir=True)
def _pixel_pair_description(a: T.handle, b: T.handle, c: T.handle) -> None:
    """8 output channels += two adjacent pixels' 4 channels (two kernel taps), weights [tap, 8, 4]."""
    A = T.match_buffer(a, (2, 4), "int8", offset_factor=1)
    B = T.match_buffer(b, (2, 8, 4), "int8", offset_factor=1)
    C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)
    with T.sblock("root"):
        T.reads(C[0:8], A[0:2, 0:4], B[0:2, 0:8, 0:4])
        T.writes(C[0:8])
        for i in T.serial(0, 8):
            for q in T.serial(0, 2):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vq, vk = T.axis.remap("SRR", [i, q, k])
                        C[vi] = C[vi] + T.cast(A[vq, vk], "int32") * T.cast(B[vq, vi, vk], "int32")


@T.prim_func(s_tir=True)
def _sdot_pixel_pair_implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
    # The by-element sdot of `_sdot_lane_implementation`, its 8 bytes two pixels of a 4-channel input
    # instead of one pixel's 8 channels: one `ldr d` per two taps instead of an `ld1r` per tap.
    A = T.match_buffer(a, (2, 4), "int8", offset_factor=1)
    B = T.match_buffer(b, (2, 8, 4), "int8", offset_factor=1)
    C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)
    with T.sblock("root"):
        T.reads(C[0:8], A[0:2, 0:4], B[0:2, 0:8, 0:4])
        T.writes(C[0:8])
        C[T.ramp(T.int32(0), 1, 4)] = _sdot(_sdot(C.vload([0], "int32x4"), B.vload([0, 0, 0], "int8x16"), _group_in_every_lane(A, 0)),
                                            B.vload([1, 0, 0], "int8x16"), _group_in_every_lane(A, 1))
        C[T.ramp(T.int32(4), 1, 4)] = _sdot(_sdot(C.vload([4], "int32x4"), B.vload([0, 4, 0], "int8x16"), _group_in_every_lane(A, 0)),
                                            B.vload([1, 4, 0], "int8x16"), _group_in_every_lane(A, 1))


@T.prim_func(s_tir=True)
def _partial_sums_description(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (8,), "int8", offset_factor=1)
    B = T.match_buffer(b, (8,), "int8", offset_factor=1)
    C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)
    with T.sblock("root"):
        T.reads(C[0:4], A[0:8], B[0:8])
        T.writes(C[0:4])
        for lane in T.serial(0, 4):
            for h in T.serial(0, 2):
                with T.sblock("update"):
                    vl, vh = T.axis.remap("SR", [lane, h])
                    C[vl] = C[vl] + T.cast(A[vl * 2 + vh], "int32") * T.cast(B[vl * 2 + vh], "int32")


@T.prim_func(s_tir=True)
def _smull_sadalp_implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
    A = T.match_buffer(a, (8,), "int8", offset_factor=1)
    B = T.match_buffer(b, (8,), "int8", offset_factor=1)
    C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=ACCUMULATOR_SCOPE)
    with T.sblock("root"):
        T.reads(C[0:4], A[0:8], B[0:8])
        T.writes(C[0:4])
        C[T.ramp(T.int32(0), 1, 4)] = C.vload([0], "int32x4") + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.saddlp.v4i32.v8i16"),
            T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smull.v8i16"),
                                    A.vload([0], "int8x8"), B.vload([0], "int8x8"), dtype="int16x8"),
            dtype="int32x4")


def _pmaddwd(acc, a, b):
    return acc + T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), T.Cast("int16x16", b), a,
                                         dtype="int32x8")


def _vpdpbusd(acc, a, b):
    # The 256-bit EVEX intrinsic: LLVM selects the VEX (AVX-VNNI) encoding where the target has that.
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.256"), acc, a, b, dtype="int32x8")


# Registered here rather than importing tvm.s_tir.tensor_intrin, whose import takes ~50 s.
TensorIntrin.register(SDOT.intrinsic, _dot_description(4, 4, "int8"),
                      _dot_implementation(4, 4, "int8", lambda acc, a, b: _sdot(acc, b, a)), override=True)
TensorIntrin.register(SDOT.block_intrinsic, _block_description(8, 2, 4), _sdot_lane_implementation, override=True)
TensorIntrin.register(SDOT.pixel_pair_intrinsic, _pixel_pair_description, _sdot_pixel_pair_implementation, override=True)
TensorIntrin.register(SMULL.intrinsic, _partial_sums_description, _smull_sadalp_implementation, override=True)
TensorIntrin.register(PMADDWD.intrinsic, _dot_description(8, 2, "int16"), _dot_implementation(8, 2, "int16", _pmaddwd),
                      override=True)
TensorIntrin.register(VPDPBUSD.intrinsic, _dot_description(8, 4, "uint8"), _dot_implementation(8, 4, "uint8", _vpdpbusd),
                      override=True)


def _input_block(channels: int) -> int:
    return BLOCK if channels % BLOCK == 0 else channels


def conv_layouts(call) -> dict:
    """ConvertLayout callback: every plain 2-D convolution to NCHW8c (input NCHW{C}c when C is not a multiple of 8)."""
    if call.op.name != "relax.nn.conv2d":
        return {}
    attrs = call.attrs
    kernel_shape = call.args[1].ty.shape
    out_channels, in_channels = int(kernel_shape[0]), int(kernel_shape[1])
    if (attrs.data_layout, attrs.kernel_layout, int(attrs.groups)) != ("NCHW", "OIHW", 1) or out_channels % BLOCK:
        return {}
    icb = _input_block(in_channels)
    return {"relax.nn.conv2d": [f"NCHW{icb}c", f"OIHW{icb}i{BLOCK}o", f"NCHW{BLOCK}c"]}


def _group_kernel(kernel, group: int, pixel_pairs: bool = False):
    """[O/8, C/cb, KH, KW, cb, 8] -> [O/8, C/cb, KH, KW, cb/g, 8, g]: the g input channels that one
    instruction reduces into a lane sit next to each other (the dot-product tile).

    `pixel_pairs` (cb == g): [O/8, C/cb, KH, ceil(KW/2), 2, 8, g], two neighbouring taps of a row side
    by side in the place of the channel groups; an odd row's last pair ends with a zero tap."""
    occ, icc, kh, kw, icb, ocb = (int(d) for d in kernel.shape)
    if not pixel_pairs:
        return te.compute((occ, icc, kh, kw, icb // group, ocb, group),
                          lambda o, c, y, x, q, oc, j: kernel[o, c, y, x, q * group + j, oc], name="kernel_group")
    return te.compute((occ, icc, kh, (kw + 1) // 2, 2, ocb, group),
                      lambda o, c, y, x, p, oc, j: te.if_then_else(
                          x * 2 + p < kw, kernel[o, c, y, te.min(x * 2 + p, kw - 1), j, oc], tvm.tirx.const(0, kernel.dtype)),
                      name="kernel_group")


FLAT_STEP = 8  # bytes of a flat row one block-intrinsic step reads: two groups of 4


def _flat_row_length(kernel_w: int, channels: int) -> int:
    return -(-kernel_w * channels // FLAT_STEP) * FLAT_STEP


def _group_kernel_flat(kernel, group: int):
    """[O/8, 1, KH, KW, C, 8] -> [O/8, 1, KH, L/8, 2, 8, g]: a kernel row's KW x C weights in the
    order of the input row's bytes (tap-major, as NCHW{C}c stores a row), zero-padded to L, a
    multiple of 8 bytes."""
    occ, icc, kh, kw, icb, ocb = (int(d) for d in kernel.shape)
    length = _flat_row_length(kw, icb)

    def weight(o, c, y, x, p, oc, j):
        k = x * FLAT_STEP + p * group + j
        return te.if_then_else(k < kw * icb, kernel[o, c, y, te.min(k // icb, kw - 1), k % icb, oc], tvm.tirx.const(0, kernel.dtype))

    return te.compute((occ, icc, kh, length // FLAT_STEP, FLAT_STEP // group, ocb, group), weight, name="kernel_group")


def _conv_flat_rows(data, kernel, strides, padding, row_taps: int, dot: DotKind):
    """data [N, 1, H, W, C] for an image's C < 4 channels, kernel grouped by `_group_kernel_flat`
    -> [N, O/8, OH, OW, 8] int32. A kernel row over C channels reads KW x C contiguous bytes of the
    input row; read flat, 8 bytes at a time (the block intrinsic: one `ldr d`, two by-element
    sdot), they take ceil(KW x C / 8) steps: 3 for ResNet's 7x7 stem on 3 channels, where padding
    the image to 4 channels costs 4 (one step of 2 taps x 4 channels each, the 7th with a zero
    tap). The bytes read past the row's last tap meet zero weights; the padded row is made wide
    enough for them (and a multiple of 4 pixels, so that its copy splits evenly on 4 cores)."""
    n, icc, height, width, icb = (int(d) for d in data.shape)
    occ, _, kh, steps = (int(d) for d in kernel.shape[:4])
    ocb, g = int(kernel.shape[-2]), dot.group
    (sh, sw), (top, left, bottom, right) = (int(s) for s in strides), (int(p) for p in padding)
    oh = (height + top + bottom - kh) // sh + 1
    ow = (width + left + right - row_taps) // sw + 1
    padded_w = max(width + left + right, -(-((ow - 1) * sw * icb + steps * FLAT_STEP) // icb))
    padded_w += -padded_w % 4
    padded_h = height + top + bottom

    def pad(b, c, y, j):
        x = j // icb - left
        inside = tvm.tirx.all(y >= top, y < top + height, x >= 0, x < width)
        return te.if_then_else(inside, data[b, c, y - top, x, j % icb], tvm.tirx.const(0, data.dtype))

    # flat rows: byte j of a row is pixel j // C, channel j % C (the schedule splits j by C)
    padded = te.compute((n, icc, padded_h, padded_w * icb), pad, name="data_pad_flat")
    rc, ry = te.reduce_axis((0, icc), "rc"), te.reduce_axis((0, kh), "ry")
    rx, rq, rj = te.reduce_axis((0, steps), "rx"), te.reduce_axis((0, FLAT_STEP // g), "rq"), te.reduce_axis((0, g), "rj")
    return te.compute(
        (n, occ, oh, ow, ocb),
        lambda b, o, y, x, c: te.sum(
            padded[b, rc, y * sh + ry, x * sw * icb + rx * FLAT_STEP + rq * g + rj].astype("int32")
            * kernel[o, rc, ry, rx, rq, c, rj].astype("int32"), axis=[rc, ry, rx, rq, rj]),
        name="conv2d_NCHWc_int8_flat_rows")


def pairs_pixels(dot: DotKind, input_block: int, dilation) -> bool:
    """Whether a convolution runs on `dot.pixel_pair_intrinsic`: an input block of one group (an
    image's channels padded to 4) and undilated rows, so that two neighbouring taps read two
    neighbouring pixels, 8 contiguous bytes."""
    return dot.pixel_pair_intrinsic is not None and input_block == dot.group and int(dilation[1]) == 1


def _conv_nchwc(data, kernel, strides, padding, dilation, out_dtype, dot: DotKind | None = None, row_taps: int = 0):
    """data [N, C/cb, H, W, cb], kernel [O/8, C/cb, KH, KW, cb, 8] (grouped for an integer `dot`)
    -> [N, O/8, OH, OW, 8]. `row_taps` > 0: the kernel is grouped by tap pairs (`_group_kernel`),
    its rows `row_taps` wide before an odd row got its zero tap."""
    n, icc, height, width, icb = (int(d) for d in data.shape)
    occ, _, kh, kw = (int(d) for d in kernel.shape[:4])
    pixel_pairs = row_taps > 0
    kw = 2 * kw if pixel_pairs else kw
    ocb = int(kernel.shape[-2] if dot is not None else kernel.shape[-1])
    (sh, sw), (dh, dw) = (int(s) for s in strides), (int(d) for d in dilation)
    top, left, bottom, right = (int(p) for p in padding)
    oh = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (width + left + right - dw * ((row_taps or kw) - 1) - 1) // sw + 1
    if pixel_pairs:
        # The zero tap of an odd row reads one column further right; the padded row is then made
        # a multiple of 4 pixels wide, so that the padding copy's loop splits evenly on 4 cores.
        right += kw - row_taps
        right += -(width + left + right) % 4
    padded = topi.nn.pad(data, [0, 0, top, left, 0], [0, 0, bottom, right, 0], name="data_pad")
    rc, ry, rx = te.reduce_axis((0, icc), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    if dot is None:
        ri = te.reduce_axis((0, icb), "ri")
        return te.compute(
            (n, occ, oh, ow, ocb),
            lambda b, o, y, x, c: te.sum(
                padded[b, rc, y * sh + ry * dh, x * sw + rx * dw, ri].astype(out_dtype)
                * kernel[o, rc, ry, rx, ri, c].astype(out_dtype), axis=[rc, ry, rx, ri]),
            name="conv2d_NCHWc")
    g = dot.group
    if dot.activation_offset:
        padded = te.compute(padded.shape, lambda *i: (padded(*i).astype("int32") + dot.activation_offset).astype(
            dot.activation_dtype), name="data_shift")
    elif dot.activation_dtype != "int8":
        padded = te.compute(padded.shape, lambda *i: padded(*i).astype(dot.activation_dtype), name="data_widen")
    if dot.partial_sums > 1:
        lanes_per_sum = g // dot.partial_sums
        rh = te.reduce_axis((0, lanes_per_sum), "rh")
        partial = te.compute(
            (n, occ, oh, ow, ocb, dot.partial_sums),
            lambda b, o, y, x, c, l: te.sum(
                padded[b, rc, y * sh + ry * dh, x * sw + rx * dw, l * lanes_per_sum + rh].astype("int32")
                * kernel[o, rc, ry, rx, 0, c, l * lanes_per_sum + rh].astype("int32"), axis=[rc, ry, rx, rh]),
            name="conv2d_NCHWc_int8_partial")
        rl = te.reduce_axis((0, dot.partial_sums), "rl")
        return te.compute((n, occ, oh, ow, ocb), lambda b, o, y, x, c: te.sum(partial[b, o, y, x, c, rl], axis=rl),
                          name="conv2d_NCHWc_int8_sum")
    if pixel_pairs:
        # The row's taps in pairs (rx, rq): tap 2 rx + rq reads pixel x sw + 2 rx + rq, so a pair is
        # two adjacent pixels; the loop names match the grouped form below, the schedule is shared.
        rx, rq, rj = te.reduce_axis((0, kw // 2), "rx"), te.reduce_axis((0, 2), "rq"), te.reduce_axis((0, g), "rj")
        return te.compute(
            (n, occ, oh, ow, ocb),
            lambda b, o, y, x, c: te.sum(
                padded[b, rc, y * sh + ry * dh, x * sw + rx * 2 + rq, rj].astype("int32")
                * kernel[o, rc, ry, rx, rq, c, rj].astype("int32"), axis=[rc, ry, rx, rq, rj]),
            name="conv2d_NCHWc_int8_pixel_pairs")
    rq, rj = te.reduce_axis((0, icb // g), "rq"), te.reduce_axis((0, g), "rj")
    return te.compute(
        (n, occ, oh, ow, ocb),
        lambda b, o, y, x, c: te.sum(
            padded[b, rc, y * sh + ry * dh, x * sw + rx * dw, rq * g + rj].astype("int32")
            * kernel[o, rc, ry, rx, rq, c, rj].astype("int32"), axis=[rc, ry, rx, rq, rj]),
        name="conv2d_NCHWc_int8")


def _offset_products(kernel, offset: int):
    """[O/8, C/cb, KH, KW, cb/g, 8, g] grouped weights -> [O/8, 8]: what `offset` added to every
    activation adds to each output channel's sum."""
    occ, icc, kh, kw, steps, ocb, g = (int(d) for d in kernel.shape)
    axes = [te.reduce_axis((0, n), name) for n, name in ((icc, "rc"), (kh, "ry"), (kw, "rx"), (steps, "rq"), (g, "rj"))]
    return te.compute((occ, ocb), lambda o, c: te.sum(kernel[o, axes[0], axes[1], axes[2], axes[3], c, axes[4]].astype(
        "int32") * offset, axis=axes), name="offset_products")


def _conv_shifted(data, kernel, offset_products, strides, padding, dilation, dot: DotKind, row_taps: int = 0):
    """`_conv_nchwc` on activations shifted by `dot.activation_offset`, the shift's products taken
    back out: the same int32 sums."""
    shifted = _conv_nchwc(data, kernel, strides, padding, dilation, "int32", dot, row_taps)
    return te.compute(shifted.shape, lambda b, o, y, x, c: shifted[b, o, y, x, c] - offset_products[o, c],
                      name="conv2d_unshift")


def layout_source(bb, expr):
    """`expr` itself, or, for a variable bound to a legalized layout transform (what ConvertLayout
    puts on a constant operand), the transform's input; None for any other binding."""
    from tvm import relax

    if not isinstance(expr, relax.Var):
        return expr
    bound = bb.lookup_binding(expr)
    if (isinstance(bound, relax.Call) and bound.op.same_as(tvm.ir.Op.get("relax.call_tir"))
            and "layout_transform" in bound.args[0].name_hint and len(bound.args[1]) == 1):
        return bound.args[1][0]
    return None


def _plain_weight(bb, kernel):
    """The OIHW int8 weight behind a blocked convolution's kernel, as numpy, or None."""
    source = layout_source(bb, kernel)
    if source is kernel or not isinstance(source, tvm.ir.expr.GenericConst) or not isinstance(source.value, tvm.runtime.Tensor):
        return None
    value = source.value
    return value.numpy() if len(value.shape) == 4 and str(value.dtype) == "int8" else None


def legalize_conv2d(target: tvm.target.Target):
    """LegalizeOps entry for relax.nn.conv2d: blocked layouts get the computes above, plain ones TOPI's."""
    from tvm import relax

    dot = dot_kind(target)

    def legalize(bb, call):
        attrs = call.attrs
        out_dtype = str(call.ty.dtype)
        if len(attrs.data_layout) == 4:
            return bb.call_te(topi.nn.conv, call.args[0], call.args[1], attrs.strides, attrs.padding, attrs.dilation,
                              attrs.groups, attrs.data_layout, attrs.kernel_layout, out_dtype, primfunc_name_hint="conv2d")
        data, kernel = call.args
        if str(data.ty.dtype) == "int8" and out_dtype == "int32":
            n_block = int(data.ty.shape[-1])
            if dot.block_intrinsic and n_block < dot.group and int(data.ty.shape[1]) == 1 \
                    and all(int(d) == 1 for d in attrs.dilation):
                # an image's 1 or 3 channels, kept by the lowering (`reads_rows_flat`)
                grouped = bb.emit_te(_group_kernel_flat, kernel, dot.group, primfunc_name_hint="kernel_group")
                return bb.call_te(partial(_conv_flat_rows, row_taps=int(kernel.ty.shape[3]), dot=dot), data, grouped,
                                  attrs.strides, attrs.padding, primfunc_name_hint="conv2d_NCHWc_int8")
            if dot.partial_sums > 1:  # no dot product: the multiply pipe is the limit, Winograd takes 1/4 of the products
                weight = _plain_weight(bb, kernel)
                if weight is not None and winograd.applies(weight, data.ty.shape, attrs.strides, attrs.padding, attrs.dilation):
                    return bb.call_te(winograd.conv_winograd, data, relax.const(winograd.transform_kernel(weight), "int16"),
                                      attrs.padding, primfunc_name_hint="conv2d_NCHWc_int8")
            use = dot if n_block % dot.group == 0 and (dot.partial_sums == 1 or n_block == dot.group) else GENERIC
            if n_block % use.group:  # e.g. a 3-channel input block: the float-style loop on integers
                return bb.call_te(_conv_nchwc, data, kernel, attrs.strides, attrs.padding, attrs.dilation, "int32",
                                  primfunc_name_hint="conv2d_NCHWc")
            # Pixel pairs: an odd row (a 7x7 kernel on a 4-channel image) gets a zero tap, read one padding column further
            # right: the same output width, the same sums (the extra products are 0).
            pairs = pairs_pixels(use, n_block, attrs.dilation)
            grouped = bb.emit_te(_group_kernel, kernel, use.group, pairs, primfunc_name_hint="kernel_group")
            row_taps = int(kernel.ty.shape[3]) if pairs else 0
            if use.activation_offset:
                products = bb.emit_te(_offset_products, grouped, use.activation_offset, primfunc_name_hint="offset_products")
                return bb.call_te(partial(_conv_shifted, dot=use, row_taps=row_taps), data, grouped, products,
                                  attrs.strides, attrs.padding, attrs.dilation, primfunc_name_hint="conv2d_NCHWc_int8")
            return bb.call_te(partial(_conv_nchwc, dot=use, row_taps=row_taps), data, grouped,
                              attrs.strides, attrs.padding, attrs.dilation, "int32", primfunc_name_hint="conv2d_NCHWc_int8")
        return bb.call_te(_conv_nchwc, data, kernel, attrs.strides, attrs.padding, attrs.dilation, out_dtype,
                          primfunc_name_hint="conv2d_NCHWc")

    return legalize
