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


# The Cortex-A72's L1 data cache (the core `dot.SMULL` serves): 32 KB, 2-way. A tile's reduction
# that reads nearly all of it (an output block's weights, read again by every tile of the row, and
# the input lines the tile reads) evicts itself between tiles: ResNet-50's 1x1 layer from 2048 to
# 512 channels on 7x7 maps read 16 KB of weights and 256 input lines 392 bytes apart again per
# pixel from L2 (9.0 M memory-stall cycles under benchmarks/arm_cost.py's rpi4 model, against
# 16.8 M of compute). Such a reduction runs in parts of a quarter of the L1: with two ways, the
# weights, the input lines and the stack share few sets. Both bounds are the model's measured
# crossovers: parts of half the L1 left ResNet-18's stride-2 layer from 256 to 512 channels (a
# 30 KB reduction) at 201 k L2 loads, parts of a quarter at 69 k, against 260 k unsplit; splitting
# the 25 KB reductions of ResNet-50's 1x1 layers from 1024 channels in halves raised their L2 loads
# (from 243 k to 348 k in the layer to 256 channels).
L1_BYTES = 32 * 1024
SPLIT_ABOVE = L1_BYTES * 7 // 8


def reduction_part(blocks: int, rows: int, columns: int) -> int | None:
    """Input blocks per reduction part when the reduction of one tile of outputs reads more than
    `SPLIT_ABOVE` (each part then runs over the whole output row before the next; the row's
    accumulators are written back once), else None. Per input block: the block's weights (`rows` x
    `columns` x 64 bytes) and the input lines a tile reads (`rows` x 2: a tile's 8-byte pixels may
    straddle two lines; the row's next tiles continue them)."""
    per_block = rows * columns * 64 + rows * 2 * 64
    if blocks * per_block <= SPLIT_ABOVE:
        return None
    return largest_divisor(blocks, max(1, L1_BYTES // 4 // per_block))


def schedule_partial_sums(sch: s_tir.Schedule, conv, rules, stats) -> bool:
    """NCHW8c convolution accumulated as partial sums.

    Loop nest: (n, oc-block, oh) parallel (or (n, oh, oc-block): `outer_order`) | ow tile |
    (ic-block, kh, kw) | ow in tile, 8 output channels (both unrolled: 2 x 8 accumulator vectors,
    the 8 weight vectors shared by the tile's pixels) | the partial-sum lanes x their input
    channels, tensorized (smull + sadalp). The epilogue adds the partial sums and requantizes per
    finished tile. A reduction that outgrows the L1 (`reduction_part`) runs in parts of input
    blocks outside the ow tiles, and the epilogue per finished row."""
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
    part = reduction_part(extent(sch, rc) or 1, extent(sch, ry) or 1, extent(sch, rx) or 1)
    if part is None:
        sch.reorder(*outer, ow_o, rc, ry, rx, ow_i, ocb, lane, rh)
        write_back = register_tile(sch, conv, outer, ow_o, ow_i)
        finished, outermost_reduction = ow_o, rc  # outputs are final per tile
    else:
        rc_o, rc_i = sch.split(rc, [None, part])
        sch.reorder(*outer, rc_o, ow_o, rc_i, ry, rx, ow_i, ocb, lane, rh)
        write_back = register_tile(sch, conv, outer, None, ow_i)
        finished, outermost_reduction = sch.get_loops(write_back)[0], rc_o  # per row, after the last part
    sch.unroll(ocb)
    unroll_window_row(sch, ry, rx)
    sch.decompose_reduction(conv, outermost_reduction)
    sch.tensorize(lane, rules.dot.intrinsic)
    sch.compute_inline(write_back)
    sch.reverse_compute_at(total, finished)
    if epilogue is not None:
        sch.reverse_compute_at(epilogue, finished)
        try:
            sch.vectorize(sch.get_loops(epilogue)[-1])
        except s_tir.ScheduleError:
            pass
    stats.tensorized += 1
    return True


SCHEDULE_RULES: dict[str, ScheduleRule] = {RULE: schedule_partial_sums}
