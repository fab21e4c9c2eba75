"""Blocked direct convolutions (NCHW[8]c): their computes, the dot-product tensor intrinsics they
are tensorized into, and their schedule.

TVM 0.27's default conv2d works on plain NCHW and cannot keep a tile of outputs
in registers. Here every convolution is converted (Relax's ConvertLayout) to the
blocked layout NCHW8c, where eight output channels are one vector and a row of
output pixels a set of vector accumulators (the layout oneDNN and TVM's old x86
schedules use). Layouts propagate through the elementwise ops between
convolutions, so activations stay blocked from the first convolution to the
global pool; the weights are packed once, at compile time (FoldConstant).

Integer convolutions group their input channels by the target's dot-product
instruction (`dot`): sdot, pmaddwd, vpdpbusd each have a tensor intrinsic here. Cores
without a dot product accumulate partial sums instead (`conv_partial_sums`) or run
3x3 stride-1 layers as Winograd (`winograd`); an image's few channels may be read as
flat rows (`conv_flat_rows`).
"""

from __future__ import annotations

import tvm
from functools import partial

from tvm import s_tir, te, topi
from tvm.script import tirx as T
from tvm.s_tir import TensorIntrin

from .blocking import ACCUMULATOR_SCOPE, BLOCK
from .dot import PMADDWD, SDOT, VPDPBUSD, DotKind
from .rules import ScheduleRule, rule_attrs
from .schedule_steps import (extent, inline_epilogue, inline_side_inputs, largest_divisor, outer_order, parallel_producers,
                             register_tile, unroll_window_row, vectorize_tile_epilogue)


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
TensorIntrin.register(PMADDWD.intrinsic, _dot_description(8, 2, "int16"), _dot_implementation(8, 2, "int16", _pmaddwd),
                      override=True)
TensorIntrin.register(VPDPBUSD.intrinsic, _dot_description(8, 4, "uint8"), _dot_implementation(8, 4, "uint8", _vpdpbusd),
                      override=True)


# The blocked convolutions' schedule rules (`rules.rule_attrs`): input channels reduced one by one
# (float, or integers the float way), in dot-product groups, or two taps of an image's row per group.
ONE_BY_ONE, GROUPED, PIXEL_PAIRS = "conv_blocked", "conv_blocked_grouped", "conv_blocked_pixel_pairs"


def group_kernel(kernel, group: int, pixel_pairs: bool = False):
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


def pairs_pixels(dot: DotKind, input_block: int, dilation) -> bool:
    """Whether a convolution runs on `dot.pixel_pair_intrinsic`: an input block of one group (an
    image's channels padded to 4) and undilated rows, so that two neighbouring taps read two
    neighbouring pixels, 8 contiguous bytes."""
    return dot.pixel_pair_intrinsic is not None and input_block == dot.group and int(dilation[1]) == 1


def padded_input(data, kernel, strides, padding, dilation, row_taps: int = 0):
    """The input padded for a blocked convolution, and the output's height and width: (padded, oh, ow).
    `row_taps` > 0: the kernel is grouped by tap pairs (`group_kernel`), its rows `row_taps` wide
    before an odd row got its zero tap."""
    _, _, height, width, _ = (int(d) for d in data.shape)
    kh, kw = (int(d) for d in kernel.shape[2:4])
    kw = 2 * kw if row_taps else kw
    (sh, sw), (dh, dw) = (int(s) for s in strides), (int(d) for d in dilation)
    top, left, bottom, right = (int(p) for p in padding)
    oh = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (width + left + right - dw * ((row_taps or kw) - 1) - 1) // sw + 1
    if row_taps:
        # The zero tap of an odd row reads one column further right; the padded row is then made
        # a multiple of 4 pixels wide, so that the padding copy's loop splits evenly on 4 cores.
        right += kw - row_taps
        right += -(width + left + right) % 4
    return topi.nn.pad(data, [0, 0, top, left, 0], [0, 0, bottom, right, 0], name="data_pad"), oh, ow


def conv_nchwc(data, kernel, strides, padding, dilation, out_dtype, dot: DotKind | None = None, row_taps: int = 0):
    """data [N, C/cb, H, W, cb], kernel [O/8, C/cb, KH, KW, cb, 8] (grouped for an integer `dot`)
    -> [N, O/8, OH, OW, 8]. `row_taps` > 0: two neighbouring taps per step (`pairs_pixels`)."""
    n, icc, _, _, icb = (int(d) for d in data.shape)
    occ, _, kh, kw = (int(d) for d in kernel.shape[:4])
    kw = 2 * kw if row_taps else kw
    ocb = int(kernel.shape[-2] if dot is not None else kernel.shape[-1])
    (sh, sw), (dh, dw) = (int(s) for s in strides), (int(d) for d in dilation)
    padded, oh, ow = padded_input(data, kernel, strides, padding, dilation, row_taps)
    rc, ry, rx = te.reduce_axis((0, icc), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    if dot is None:
        ri = te.reduce_axis((0, icb), "ri")
        return te.compute(
            (n, occ, oh, ow, ocb),
            lambda b, o, y, x, c: te.sum(
                padded[b, rc, y * sh + ry * dh, x * sw + rx * dw, ri].astype(out_dtype)
                * kernel[o, rc, ry, rx, ri, c].astype(out_dtype), axis=[rc, ry, rx, ri]),
            name="conv2d_NCHWc", attrs=rule_attrs(ONE_BY_ONE))
    g = dot.group
    if dot.activation_offset:
        padded = te.compute(padded.shape, lambda *i: (padded(*i).astype("int32") + dot.activation_offset).astype(
            dot.activation_dtype), name="data_shift")
    elif dot.activation_dtype != "int8":
        padded = te.compute(padded.shape, lambda *i: padded(*i).astype(dot.activation_dtype), name="data_widen")
    if row_taps:
        # The row's taps in pairs (rx, rq): tap 2 rx + rq reads pixel x sw + 2 rx + rq, so a pair is
        # two adjacent pixels; the loop names match the grouped form below, the schedule is shared.
        rx, rq, rj = te.reduce_axis((0, kw // 2), "rx"), te.reduce_axis((0, 2), "rq"), te.reduce_axis((0, g), "rj")
        return te.compute(
            (n, occ, oh, ow, ocb),
            lambda b, o, y, x, c: te.sum(
                padded[b, rc, y * sh + ry * dh, x * sw + rx * 2 + rq, rj].astype("int32")
                * kernel[o, rc, ry, rx, rq, c, rj].astype("int32"), axis=[rc, ry, rx, rq, rj]),
            name="conv2d_NCHWc_int8_pixel_pairs", attrs=rule_attrs(PIXEL_PAIRS))
    rq, rj = te.reduce_axis((0, icb // g), "rq"), te.reduce_axis((0, g), "rj")
    return te.compute(
        (n, occ, oh, ow, ocb),
        lambda b, o, y, x, c: te.sum(
            padded[b, rc, y * sh + ry * dh, x * sw + rx * dw, rq * g + rj].astype("int32")
            * kernel[o, rc, ry, rx, rq, c, rj].astype("int32"), axis=[rc, ry, rx, rq, rj]),
        name="conv2d_NCHWc_int8", attrs=rule_attrs(GROUPED))


def offset_products(kernel, offset: int):
    """[O/8, C/cb, KH, KW, cb/g, 8, g] grouped weights -> [O/8, 8]: what `offset` added to every
    activation adds to each output channel's sum."""
    occ, icc, kh, kw, steps, ocb, g = (int(d) for d in kernel.shape)
    axes = [te.reduce_axis((0, n), name) for n, name in ((icc, "rc"), (kh, "ry"), (kw, "rx"), (steps, "rq"), (g, "rj"))]
    return te.compute((occ, ocb), lambda o, c: te.sum(kernel[o, axes[0], axes[1], axes[2], axes[3], c, axes[4]].astype(
        "int32") * offset, axis=axes), name="offset_products")


def conv_shifted(data, kernel, products, strides, padding, dilation, dot: DotKind, row_taps: int = 0):
    """`conv_nchwc` on activations shifted by `dot.activation_offset`, the shift's products
    (`offset_products`) taken back out: the same int32 sums."""
    shifted = conv_nchwc(data, kernel, strides, padding, dilation, "int32", dot, row_taps)
    return te.compute(shifted.shape, lambda b, o, y, x, c: shifted[b, o, y, x, c] - products[o, c],
                      name="conv2d_unshift")


def schedule_blocked(sch: s_tir.Schedule, conv, rules, stats, grouped: bool, pixel_pairs: bool = False,
                     prepare_input=None) -> bool:
    """NCHW8c convolution: a row tile of `ow` x 8 output channels accumulates in registers.

    Loop nest: (n, oc-block, oh) parallel (or (n, oh, oc-block): `outer_order`) | ow tile |
    (ic-block, kh, kw, ic) | ow in tile (unrolled) | 8 output channels (the vector; tensorized
    into dot-product instructions for integer kernels). The epilogue runs per finished tile, from the registers.

    `grouped`: the input channels reduced in groups of the dot product (`group_kernel`), else one
    by one (float, or integers the float way); `pixel_pairs`: the groups are two taps (`pairs_pixels`);
    `prepare_input(sch, conv)` reshapes the input's padding copy before it is made parallel."""
    loops = sch.get_loops(conv)
    if len(loops) != (10 if grouped else 9):  # a compute of this family that the rule does not know
        return False
    if grouped:
        n, occ, oh, ow, ocb, rc, ry, rx, rq, rj = loops
    else:
        n, occ, oh, ow, ocb, rc, ry, rx, ri = loops
    epilogue = inline_epilogue(sch, conv)
    inline_side_inputs(sch, epilogue, conv)
    if prepare_input is not None:
        prepare_input(sch, conv)
    parallel_producers(sch, conv)
    outer = outer_order(sch, conv, n, occ, oh)
    tile = largest_divisor(extent(sch, ow) or 1, rules.int8_tile if grouped else rules.float_tile)
    ow_o, ow_i = sch.split(ow, [None, tile])
    dot = rules.dot if grouped else None
    tensorized, intrinsic = None, None  # the loop an intrinsic replaces, and which
    if dot is not None and dot.block_intrinsic and extent(sch, rj) == dot.group and extent(sch, ocb) == BLOCK \
            and (extent(sch, rq) or 0) % 2 == 0:
        # the block intrinsic takes two groups: of one pixel's input channels, or two pixels' (pairs)
        rq_o, rq_i = sch.split(rq, [None, 2])
        sch.reorder(*outer, ow_o, rc, ry, rx, rq_o, ow_i, ocb, rq_i, rj)
        tensorized, intrinsic = ocb, dot.pixel_pair_intrinsic if pixel_pairs else dot.block_intrinsic
    elif dot is not None and dot.intrinsic and (extent(sch, rj) == dot.group):
        ocb_o, tensorized = sch.split(ocb, [None, dot.lanes])
        sch.reorder(*outer, ow_o, rc, ry, rx, rq, ow_i, ocb_o, tensorized, rj)
        intrinsic = dot.intrinsic
    elif grouped:
        sch.reorder(*outer, ow_o, rc, ry, rx, rq, ow_i, ocb, rj)
    else:
        sch.reorder(*outer, ow_o, rc, ry, rx, ri, ow_i, ocb)
    write_back = register_tile(sch, conv, outer, ow_o, ow_i)
    unroll_window_row(sch, ry, rx)
    sch.decompose_reduction(conv, rc)
    if tensorized is not None:
        sch.tensorize(tensorized, intrinsic)
    if epilogue is not None:
        try:
            sch.compute_inline(write_back)
            write_back = epilogue
            sch.reverse_compute_at(epilogue, ow_o)
        except s_tir.ScheduleError:
            pass
    vectorize_tile_epilogue(sch, write_back)
    stats.tensorized += int(tensorized is not None)
    return True


SCHEDULE_RULES: dict[str, ScheduleRule] = {
    ONE_BY_ONE: partial(schedule_blocked, grouped=False),
    GROUPED: partial(schedule_blocked, grouped=True),
    PIXEL_PAIRS: partial(schedule_blocked, grouped=True, pixel_pairs=True),
}
