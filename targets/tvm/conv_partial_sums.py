"""Partial-sum convolutions for cores without a dot product (`dot.SMULL`, the Cortex-A72): their
compute, the smull + sadalp tensor intrinsic and their schedule.

Each output channel accumulates 4 int32 partial sums, one vector per output: smull multiplies one
pixel's 8 input channels by one output channel's 8 weights into int16 lanes, sadalp adds the lanes
pairwise into the 4 sums. They are added together in the epilogue.
"""

from __future__ import annotations

from tvm import s_tir, te
from tvm.script import tirx as T
from tvm.s_tir import TensorIntrin

from .blocking import ACCUMULATOR_SCOPE
from .conv_blocked import padded_input
from .dot import SMULL, DotKind
from .rules import ScheduleRule, rule_attrs
from .schedule_steps import (extent, inline_epilogue, inline_side_inputs, largest_divisor, outer_order, parallel_producers,
                             register_tile, unroll_window_row)


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


RULE = "conv_partial_sums"

TensorIntrin.register(SMULL.intrinsic, _partial_sums_description, _smull_sadalp_implementation, override=True)


def conv_partial_sums(data, kernel, strides, padding, dilation, dot: DotKind):
    """data [N, C/8, H, W, 8] int8, kernel grouped by `conv_blocked.group_kernel` into whole 8-channel
    groups -> [N, O/8, OH, OW, 8] int32: `dot.partial_sums` sums per output, then their total."""
    n, icc = (int(d) for d in data.shape[:2])
    occ, _, kh, kw = (int(d) for d in kernel.shape[:4])
    ocb = int(kernel.shape[-2])
    (sh, sw), (dh, dw) = (int(s) for s in strides), (int(d) for d in dilation)
    padded, oh, ow = padded_input(data, kernel, strides, padding, dilation)
    rc, ry, rx = te.reduce_axis((0, icc), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    lanes_per_sum = dot.group // dot.partial_sums
    rh = te.reduce_axis((0, lanes_per_sum), "rh")
    partial = te.compute(
        (n, occ, oh, ow, ocb, dot.partial_sums),
        lambda b, o, y, x, c, l: te.sum(
            padded[b, rc, y * sh + ry * dh, x * sw + rx * dw, l * lanes_per_sum + rh].astype("int32")
            * kernel[o, rc, ry, rx, 0, c, l * lanes_per_sum + rh].astype("int32"), axis=[rc, ry, rx, rh]),
        name="conv2d_NCHWc_int8_partial", attrs=rule_attrs(RULE))
    rl = te.reduce_axis((0, dot.partial_sums), "rl")
    return te.compute((n, occ, oh, ow, ocb), lambda b, o, y, x, c: te.sum(partial[b, o, y, x, c, rl], axis=rl),
                      name="conv2d_NCHWc_int8_sum")


def schedule_partial_sums(sch: s_tir.Schedule, conv, rules, stats) -> bool:
    """NCHW8c convolution accumulated as partial sums.

    Loop nest: (n, oc-block, oh) parallel (or (n, oh, oc-block): `outer_order`) | ow tile |
    (ic-block, kh, kw) | ow in tile, 8 output channels (both unrolled: 2 x 8 accumulator vectors,
    the 8 weight vectors shared by the tile's pixels) | the partial-sum lanes x their input
    channels, tensorized (smull + sadalp). The epilogue adds the partial sums and requantizes per finished tile."""
    loops = sch.get_loops(conv)
    if len(loops) != 10 or rules.dot.partial_sums == 1:
        return False
    n, occ, oh, ow, ocb, lane, rc, ry, rx, rh = loops
    (total,) = sch.get_consumers(conv)
    epilogue = inline_epilogue(sch, total)
    inline_side_inputs(sch, epilogue, total)
    parallel_producers(sch, conv)
    outer = outer_order(sch, conv, n, occ, oh)
    tile = largest_divisor(extent(sch, ow) or 1, rules.partial_sums_tile)
    ow_o, ow_i = sch.split(ow, [None, tile])
    sch.reorder(*outer, ow_o, rc, ry, rx, ow_i, ocb, lane, rh)
    write_back = register_tile(sch, conv, outer, ow_o, ow_i)
    sch.unroll(ocb)
    unroll_window_row(sch, ry, rx)
    sch.decompose_reduction(conv, rc)
    sch.tensorize(lane, rules.dot.intrinsic)
    sch.compute_inline(write_back)
    sch.reverse_compute_at(total, ow_o)
    if epilogue is not None:
        sch.reverse_compute_at(epilogue, ow_o)
        try:
            sch.vectorize(sch.get_loops(epilogue)[-1])
        except s_tir.ScheduleError:
            pass
    stats.tensorized += 1
    return True


SCHEDULE_RULES: dict[str, ScheduleRule] = {RULE: schedule_partial_sums}
