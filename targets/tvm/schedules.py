"""Rule-based CPU schedules for the FP32 and integer ResNet kernels: no tuning session, deterministic.

TVM 0.27's default CPU pipeline legalizes and fuses but leaves every loop nest
naive and single-threaded. Here convolutions first move to blocked layouts
(`conv`), then, after fusion, each fused kernel gets one rule:

* blocked convolutions (NCHW8c): a tile of output pixels x 8 channels accumulates in
  registers (a `local` buffer LLVM promotes), over (ic-block, kh, kw, ic); the tile loop
  is unrolled, the 8 channels are the vector (for integer kernels, the dot-product
  intrinsic of the target: sdot, vpdpbusd, pmaddwd); (n, oc-block, oh) are fused and parallel;
  the epilogue (bias, requantize, residual add, relu) is inlined and runs per tile;
* Winograd convolutions (`winograd.py`, cores without a dot product): input transform,
  products (tensorized into smlal by element) and output transform with the epilogue, each
  one parallel pass (`_schedule_winograd`);
* plain NCHW convolutions (shapes the blocked layout does not take): (n, oc, oh) parallel,
  the accumulation row over `ow` innermost and contiguous for LLVM's vectorizer;
* other reductions (pooling sums, the dense layer): outer spatial loops fused and parallel;
* everything else (pads, casts, elementwise): outer spatial loops fused and parallel,
  the innermost spatial loop vectorized.

Blocks a rule cannot handle keep TVM's default loops; `ScheduleStats` counts
both, and the report gives the share of kernels that got a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import s_tir

from . import winograd
from .blocking import ACCUMULATOR_SCOPE, BLOCK, PARALLEL_GRAIN
from .conv import DotKind, conv_layouts, dot_kind, is_aarch64, layout_source, legalize_conv2d
from .records import open_records

MIN_PARALLEL_EXTENT = 2


@dataclass
class ScheduleStats:
    kernels: int = 0
    scheduled: int = 0
    convolutions: int = 0
    tensorized: int = 0  # blocked integer convolutions whose inner product is a dot-product instruction
    from_records: int = 0  # kernels scheduled by a tuning record (edgeresnet tune) instead of a rule
    # kernel -> iterations of each of its parallel loops (a convolution has two: padding, compute)
    parallel_iterations: dict[str, list[int]] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return round(self.scheduled / self.kernels, 4) if self.kernels else 0.0

    def parallel_split(self, threads: int) -> dict:
        """How the kernels' parallel loops divide among `threads` cores. TVM's runtime gives each
        thread one contiguous chunk of ceil(iterations / threads): a kernel splits evenly when
        every parallel loop's iterations are a multiple of the thread count (else a core idles part of the time)."""
        uneven = {name: loops for name, loops in sorted(self.parallel_iterations.items()) if any(n % threads for n in loops)}
        return {"threads": threads, "parallel_kernels": len(self.parallel_iterations),
                "split_evenly": len(self.parallel_iterations) - len(uneven), "uneven": uneven}

    def to_dict(self) -> dict:
        fields = {k: v for k, v in self.__dict__.items() if k != "parallel_iterations"}
        return {**fields, "share": self.share}


def _iter_kinds(sch: s_tir.Schedule, block) -> list[int]:
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def _is_reduction(sch, block) -> bool:
    return any(kind == 2 for kind in _iter_kinds(sch, block))  # IterVar.CommReduce


def _extent(sch, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, (tvm.tirx.IntImm,)) else None


def _parallel_vectorize(sch: s_tir.Schedule, block, keep_inner: int = 1) -> bool:
    loops = sch.get_loops(block)
    kinds = _iter_kinds(sch, block)
    if not loops or len(loops) != len(kinds) or any(k != 0 for k in kinds):
        return False
    if len(loops) > keep_inner:
        outer = sch.fuse(*loops[: len(loops) - keep_inner]) if len(loops) - keep_inner > 1 else loops[0]
        if (_extent(sch, outer) or 0) >= MIN_PARALLEL_EXTENT:
            sch.parallel(outer)
    inner = sch.get_loops(block)[-1]
    if len(sch.get_loops(block)) > 1 and (_extent(sch, inner) or 0) > 1:
        lanes = next((n for n in (16, 8) if (_extent(sch, inner) or 0) > n and _extent(sch, inner) % n == 0), None)
        if lanes:  # a row of 224 as one 224-lane vector: LLVM splits it into scalar lane moves
            inner = sch.split(inner, [None, lanes])[1]
        sch.vectorize(inner)
    return True


def _parallel_spatial(sch: s_tir.Schedule, block) -> bool:
    """A reduction other than a convolution (pooling, the dense layer): parallel over its outer spatial loops.

    In a blocked layout the innermost spatial loop is the 8-channel block: it moves inside
    the reduction window, so each window step is one vector max/add (LLVM vectorizes it)."""
    loops, kinds = sch.get_loops(block), _iter_kinds(sch, block)
    spatial = 0
    while spatial < len(kinds) and kinds[spatial] == 0:
        spatial += 1
    if spatial == 0 or len(loops) != len(kinds):
        return False
    channel_block = spatial > 1 and spatial < len(loops) and (_extent(sch, loops[spatial - 1]) or 0) <= 16
    if channel_block:
        sch.reorder(*loops[: spatial - 1], *loops[spatial:], loops[spatial - 1])
    outer_loops = loops[: spatial - 1] if channel_block else loops[:spatial]
    if channel_block and len(outer_loops) > 2 and (_extent(sch, outer_loops[-1]) or 0) > 1 \
            and int(np.prod([_extent(sch, loop) or 0 for loop in outer_loops[:-1]])) % PARALLEL_GRAIN == 0:
        outer_loops = outer_loops[:-1]  # rows in parallel, a row's pixels serial: no division per pixel
    outer = sch.fuse(*outer_loops) if len(outer_loops) > 1 else outer_loops[0]
    if (_extent(sch, outer) or 0) >= MIN_PARALLEL_EXTENT:
        sch.parallel(outer)
    if channel_block:
        sch.decompose_reduction(block, sch.get_loops(block)[1])
    return True


def _schedule_dense(sch: s_tir.Schedule, block) -> bool:
    """The dense layer, [1, K] x [K, N]: a vector of outputs (N, the weights' contiguous axis)
    accumulates over K. Reduced one output at a time (K innermost), each step is a scalar
    multiply-add on a weight N bytes away from the last. Only where the output blocks divide
    evenly among the boards' cores."""
    loops = sch.get_loops(block)
    if _iter_kinds(sch, block) != [0, 0, 2] or _extent(sch, loops[0]) != 1:
        return False
    outputs = _extent(sch, loops[1]) or 0
    lanes = next((n for n in (16, 8, 10, 4) if outputs % n == 0 and outputs // n % PARALLEL_GRAIN == 0), None)
    if lanes is None:
        return False
    blocks, vector = sch.split(loops[1], [None, lanes])
    sch.reorder(blocks, loops[2], vector)
    sch.parallel(sch.fuse(loops[0], blocks))
    sch.vectorize(vector)
    sch.decompose_reduction(block, loops[2])
    return True


def _inline_epilogue(sch: s_tir.Schedule, conv):
    """Inline the elementwise chain after a convolution into its last block; return that block (or None)."""
    epilogue = None
    consumers = sch.get_consumers(conv)
    while len(consumers) == 1:
        epilogue = consumers[0]
        nxt = sch.get_consumers(epilogue)
        if len(nxt) != 1:
            break
        try:
            sch.compute_inline(epilogue)
        except s_tir.ScheduleError:
            break
        consumers = [nxt[0]]
        epilogue = nxt[0]
    return epilogue


def _inline_side_inputs(sch: s_tir.Schedule, epilogue, conv) -> None:
    """Inline into the epilogue the elementwise blocks that prepare its other inputs (a residual
    add's dequantized shortcut): left at the root, they would keep the epilogue from moving into
    the tile loop (a full-size pass after the convolution)."""
    if epilogue is None:
        return
    pending = [p for p in sch.get_producers(epilogue) if not sch.get(p).same_as(sch.get(conv))]
    while pending:
        block = pending.pop()
        if _is_reduction(sch, block):
            continue
        inner = sch.get_producers(block)
        try:
            sch.compute_inline(block)
        except s_tir.ScheduleError:
            continue
        pending.extend(inner)


def _parallel_producers(sch: s_tir.Schedule, block) -> None:
    """The padded (and widened) input: one parallel, vectorized pass."""
    producers = [p for p in sch.get_producers(block) if not _is_reduction(sch, p)]
    for producer in producers:
        for inner in sch.get_producers(producer):
            if not _is_reduction(sch, inner):
                try:
                    sch.compute_inline(inner)
                except s_tir.ScheduleError:
                    pass
    for producer in sch.get_producers(block):
        if not _is_reduction(sch, producer):
            try:
                if not _parallel_rows(sch, producer):
                    _parallel_vectorize(sch, producer)
            except s_tir.ScheduleError:
                pass


def _parallel_rows(sch: s_tir.Schedule, block) -> bool:
    """A padding copy [.., rows, columns, channel block]: parallel over rows (or over rows x 2 or
    4 column strips, whichever divides evenly among the boards' cores), the columns a serial loop,
    the channel block the vector. One parallel iteration per pixel instead pays a division and a
    modulo per pixel (~16 cycles per 8 bytes on the A76 model); per row, the row's bounds test is
    hoisted and the pixel loop only compares. False (nothing changed) when no split is even."""
    loops = sch.get_loops(block)
    if len(loops) < 3 or any(kind != 0 for kind in _iter_kinds(sch, block)):
        return False
    extents = [_extent(sch, loop) or 0 for loop in loops]
    rows, columns = int(np.prod(extents[:-2])), extents[-2]
    strips = next((f for f in (1, 2, 4) if columns % f == 0 and rows * f % PARALLEL_GRAIN == 0), None)
    if strips is None or rows * strips < MIN_PARALLEL_EXTENT:
        return False
    outer_loops = list(loops[:-2])
    if strips > 1:
        strip, _ = sch.split(loops[-2], [strips, None])
        outer_loops.append(strip)
    sch.parallel(sch.fuse(*outer_loops) if len(outer_loops) > 1 else outer_loops[0])
    if extents[-1] > 1:
        sch.vectorize(loops[-1])
    return True


def _schedule_convolution(sch: s_tir.Schedule, conv) -> bool:
    """Plain NCHW convolution (grouped or odd shapes the blocked layout does not take)."""
    loops = sch.get_loops(conv)
    if len(loops) != 7:  # n, oc, oh, ow, ic, kh, kw (NCHW conv2d)
        return False
    n, oc, oh, ow, ic, kh, kw = loops
    epilogue = _inline_epilogue(sch, conv)
    sch.reorder(n, oc, oh, ic, kh, kw, ow)
    outer = sch.fuse(n, oc, oh)
    sch.parallel(outer)
    # The accumulation row over `ow` is now innermost and contiguous: LLVM's loop
    # vectorizer turns it into vector multiply-adds (TIR's vectorize refuses a loop
    # under reduction loops).
    sch.decompose_reduction(conv, ic)
    if epilogue is not None:
        try:
            sch.reverse_compute_at(epilogue, outer)
            inner = sch.get_loops(epilogue)[-1]
            if inner != outer:
                sch.vectorize(inner)
        except s_tir.ScheduleError:
            pass
    _parallel_producers(sch, conv)
    return True


def _split_flat_rows(sch: s_tir.Schedule, conv) -> None:
    """The flat padded rows of `conv._conv_flat_rows`: their byte loop split into pixels x the
    input's C channels, so that the copy is a padding copy like the others (`_parallel_rows`),
    with no division per byte."""
    for producer in sch.get_producers(conv):
        block = sch.get(producer)
        if block.name_hint == "data_pad_flat" and block.reads:
            channels = int(block.reads[0].source.shape[-1])
            sch.split(sch.get_loops(producer)[-1], [None, channels])


def _register_tile(sch: s_tir.Schedule, conv, outer_loops, tile_loop, in_tile_loop):
    """Outer loops fused and parallel; the tile's accumulators in a buffer written back per tile
    (its loop `in_tile_loop` unrolled, so LLVM keeps them in registers). Returns the write-back block."""
    outer = sch.fuse(*outer_loops)
    if (_extent(sch, outer) or 0) >= MIN_PARALLEL_EXTENT:
        sch.parallel(outer)
    write_back = sch.cache_write(conv, 0, ACCUMULATOR_SCOPE)
    sch.reverse_compute_at(write_back, tile_loop)
    sch.unroll(in_tile_loop)
    return write_back


def _vectorize_tile_epilogue(sch: s_tir.Schedule, block) -> None:
    """The per-tile epilogue: the 8 channels are the vector, the tile's pixels unrolled. A pixel loop
    left as a loop is vectorized again by LLVM across pixels (lane-by-lane gathers, a stack round
    trip): ~170 cycles per 64 outputs on the A76 model instead of straight-line vector code."""
    loops = sch.get_loops(block)
    try:
        sch.vectorize(loops[-1])
    except s_tir.ScheduleError:
        return
    if len(loops) > 1 and (_extent(sch, loops[-2]) or 0) > 1:
        try:
            sch.unroll(loops[-2])
        except s_tir.ScheduleError:
            pass


def _unroll_window_row(sch: s_tir.Schedule, ry, rx) -> None:
    """A one-column window (1x1, or the folded first convolution's 7x1) gives a loop body of one
    micro-kernel step: unroll the window's rows so the loop overhead spreads over several."""
    if _extent(sch, rx) == 1 and (_extent(sch, ry) or 0) > 1:
        sch.unroll(ry)


def _largest_divisor(n: int, at_most: int) -> int:
    return next(d for d in range(min(n, at_most), 0, -1) if n % d == 0)


def _schedule_blocked_convolution(sch: s_tir.Schedule, conv, rules, stats: ScheduleStats) -> bool:
    """NCHW8c convolution: a row tile of `ow` x 8 output channels accumulates in registers.

    Loop nest: (n, oc-block, oh) parallel | ow tile | (ic-block, kh, kw, ic) | ow in tile
    (unrolled) | 8 output channels (the vector; tensorized into dot-product instructions
    for integer kernels). The epilogue runs per finished tile, from the registers."""
    loops = sch.get_loops(conv)
    integer = len(loops) == 10
    if integer:
        n, occ, oh, ow, ocb, rc, ry, rx, rq, rj = loops
    elif len(loops) == 9:
        n, occ, oh, ow, ocb, rc, ry, rx, ri = loops
    else:
        return False
    epilogue = _inline_epilogue(sch, conv)
    _inline_side_inputs(sch, epilogue, conv)
    _split_flat_rows(sch, conv)
    _parallel_producers(sch, conv)
    tile = _largest_divisor(_extent(sch, ow) or 1, rules.int8_tile if integer else rules.float_tile)
    ow_o, ow_i = sch.split(ow, [None, tile])
    dot = rules.dot if integer else None
    tensorized, intrinsic = None, None  # the loop an intrinsic replaces, and which
    pixel_pairs = sch.get(conv).name_hint.endswith("_pixel_pairs")
    if dot is not None and dot.block_intrinsic and _extent(sch, rj) == dot.group and _extent(sch, ocb) == BLOCK \
            and (_extent(sch, rq) or 0) % 2 == 0:
        # the block intrinsic takes two groups: of one pixel's input channels, or two pixels' (pairs)
        rq_o, rq_i = sch.split(rq, [None, 2])
        sch.reorder(n, occ, oh, ow_o, rc, ry, rx, rq_o, ow_i, ocb, rq_i, rj)
        tensorized, intrinsic = ocb, dot.pixel_pair_intrinsic if pixel_pairs else dot.block_intrinsic
    elif dot is not None and dot.intrinsic and (_extent(sch, rj) == dot.group):
        ocb_o, tensorized = sch.split(ocb, [None, dot.lanes])
        sch.reorder(n, occ, oh, ow_o, rc, ry, rx, rq, ow_i, ocb_o, tensorized, rj)
        intrinsic = dot.intrinsic
    elif integer:
        sch.reorder(n, occ, oh, ow_o, rc, ry, rx, rq, ow_i, ocb, rj)
    else:
        sch.reorder(n, occ, oh, ow_o, rc, ry, rx, ri, ow_i, ocb)
    write_back = _register_tile(sch, conv, (n, occ, oh), ow_o, ow_i)
    _unroll_window_row(sch, ry, rx)
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
    _vectorize_tile_epilogue(sch, write_back)
    stats.tensorized += int(tensorized is not None)
    return True


def _schedule_partial_sums_convolution(sch: s_tir.Schedule, conv, rules, stats: ScheduleStats) -> bool:
    """NCHW8c convolution accumulated as partial sums (cores without a dot product, `conv.SMULL`).

    Loop nest: (n, oc-block, oh) parallel | ow tile | (ic-block, kh, kw) | ow in tile, 8 output
    channels (both unrolled: 2 x 8 accumulator vectors, the 8 weight vectors shared by the tile's
    pixels) | the partial-sum lanes x their input channels, tensorized (smull + sadalp). The
    epilogue adds the partial sums and requantizes per finished tile."""
    loops = sch.get_loops(conv)
    if len(loops) != 10 or rules.dot.partial_sums == 1:
        return False
    n, occ, oh, ow, ocb, lane, rc, ry, rx, rh = loops
    (total,) = sch.get_consumers(conv)
    epilogue = _inline_epilogue(sch, total)
    _inline_side_inputs(sch, epilogue, total)
    _parallel_producers(sch, conv)
    tile = _largest_divisor(_extent(sch, ow) or 1, rules.partial_sums_tile)
    ow_o, ow_i = sch.split(ow, [None, tile])
    sch.reorder(n, occ, oh, ow_o, rc, ry, rx, ow_i, ocb, lane, rh)
    write_back = _register_tile(sch, conv, (n, occ, oh), ow_o, ow_i)
    sch.unroll(ocb)
    _unroll_window_row(sch, ry, rx)
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


def _schedule_winograd(sch: s_tir.Schedule, product, rules, stats: ScheduleStats) -> bool:
    """`winograd.conv_winograd`'s stages, each one parallel pass:

    * input: (tile, input block) parallel; per tile, the 6x6 window's row transform then the
      column transform, the 36 positions unrolled (their coefficients fold to adds and shifts),
      the 8 channels the vector;
    * products: (position, output block) parallel | tile group | input block | tiles of the group
      (unrolled: their 2 x 4 accumulators each stay in registers, the 8 weight vectors are shared)
      | 8 output x 8 input channels, tensorized (16 smlal by element);
    * output: (image, output block, tile row) parallel | tile column | the 6x4 row transform, then
      per output pixel the column transform, the exact recovery of y and the epilogue (unrolled,
      the 8 channels the vector)."""
    transformed = sch.get_producers(product)[0]
    rows = sch.get_producers(transformed)[0]
    (output_rows,) = sch.get_consumers(product)
    (output,) = sch.get_consumers(output_rows)
    epilogue = _inline_epilogue(sch, output)
    _inline_side_inputs(sch, epilogue, output)
    if epilogue is not None:
        sch.compute_inline(output)
        output = epilogue

    _parallel_producers(sch, rows)  # the padding copy, as for the direct convolutions

    e, t, c, k = sch.get_loops(transformed)
    sch.reorder(t, c, e, k)
    tile_block = sch.fuse(t, c)
    sch.parallel(tile_block)
    sch.compute_at(rows, tile_block)
    sch.unroll(e)
    sch.vectorize(k)
    for loop in sch.get_loops(rows)[1:-1]:
        sch.unroll(loop)
    sch.vectorize(sch.get_loops(rows)[-1])

    e, o, t, c, rc, rk = sch.get_loops(product)
    group = _largest_divisor(_extent(sch, t) or 1, rules.winograd_tiles)
    t_o, t_i = sch.split(t, [None, group])
    sch.reorder(e, o, t_o, rc, t_i, c, rk)
    write_back = _register_tile(sch, product, (e, o), t_o, t_i)
    sch.decompose_reduction(product, rc)
    sch.tensorize(c, winograd.INTRINSIC)
    _vectorize_tile_epilogue(sch, write_back)

    b, o, y, x, c = sch.get_loops(output)
    ty, iy = sch.split(y, [None, winograd.TILE])
    tx, ix = sch.split(x, [None, winograd.TILE])
    sch.reorder(b, o, ty, tx, iy, ix, c)
    sch.parallel(sch.fuse(b, o, ty))
    sch.compute_at(output_rows, tx)
    for loop in sch.get_loops(output_rows)[-3:-1]:
        sch.unroll(loop)
    sch.vectorize(sch.get_loops(output_rows)[-1])
    sch.unroll(iy)
    sch.unroll(ix)
    sch.vectorize(c)
    stats.tensorized += 1
    return True


@dataclass(frozen=True)
class ConvRules:
    """Per-target register tiles: output pixels per tile of 8 channels (x86 AVX2: 16 vector
    registers, one per 8 float channels; NEON: 32 registers, two per 8 channels)."""

    dot: DotKind
    float_tile: int
    int8_tile: int
    partial_sums_tile: int = 2  # pixels: 2 x 8 accumulator vectors + 8 weight + 2 input registers of 32
    winograd_tiles: int = 7  # tiles at most per register group: 7 x 2 accumulators + 8 weight + 7 input vectors of 32

    @classmethod
    def for_target(cls, target: tvm.target.Target) -> "ConvRules":
        return cls(dot=dot_kind(target), float_tile=8 if is_aarch64(target) else 14, int8_tile=8)


def _inline_elementwise(sch: s_tir.Schedule, blocks: list) -> list:
    """One pass over memory instead of one per op: every elementwise block that is not the
    kernel's output is computed inside its consumers (a residual add's dequantize, add and
    requantize were ten parallel loops, each reading and writing the whole tensor)."""
    for block in blocks[:-1]:
        # A block read by several consumers stays (inlined, it would be recomputed by each).
        if not _is_reduction(sch, block) and len(sch.get_consumers(block)) == 1:
            try:
                sch.compute_inline(block)
            except s_tir.ScheduleError:
                pass
    return sch.get_child_blocks(sch.get_sblock("root"))


def rule_schedule(func: tvm.tirx.PrimFunc, stats: ScheduleStats, rules: ConvRules) -> s_tir.Schedule | None:
    """The rule's schedule of one kernel (its trace is what `tune` measures as the baseline), or None."""
    sch = s_tir.Schedule(func)
    stats.kernels += 1
    blocks = sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []
    convs = [b for b in blocks if _is_reduction(sch, b) and "conv" in sch.get(b).name_hint]
    done = False
    try:
        if convs:
            name = sch.get(convs[0]).name_hint
            if name == "conv2d_winograd_product":
                done = _schedule_winograd(sch, convs[0], rules, stats)
            elif name.endswith("_partial"):
                done = _schedule_partial_sums_convolution(sch, convs[0], rules, stats)
            elif name.startswith("conv2d_NCHWc"):
                done = _schedule_blocked_convolution(sch, convs[0], rules, stats)
            else:
                done = _schedule_convolution(sch, convs[0])
            stats.convolutions += int(done)
        else:
            blocks = _inline_elementwise(sch, blocks)
            for block in blocks:
                if _is_reduction(sch, block):
                    dense = sch.get(block).name_hint == "matmul" and _schedule_dense(sch, block)
                    scheduled = dense or _parallel_spatial(sch, block)
                else:
                    scheduled = _parallel_vectorize(sch, block)
                done = scheduled or done
    except s_tir.ScheduleError:
        return None  # left to TVM's default loops
    stats.scheduled += int(done)
    return sch if done else None


def _parallel_iterations(sch: s_tir.Schedule) -> list[int]:
    loops = {}
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        for loop in sch.get_loops(block):
            if sch.get(loop).kind == tvm.tirx.ForKind.PARALLEL:
                loops[sch.get(loop)] = _extent(sch, loop) or 0
    return list(loops.values())


def schedule_function(func: tvm.tirx.PrimFunc, stats: ScheduleStats, rules: ConvRules, name: str = "") -> tvm.tirx.PrimFunc:
    sch = rule_schedule(func, stats, rules)
    if sch is None:
        return func
    iterations = _parallel_iterations(sch)
    if iterations:
        stats.parallel_iterations[name] = iterations
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def _has_root(sch: s_tir.Schedule) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except (s_tir.ScheduleError, tvm.error.TVMError, ValueError):
        return False


def schedule_pass(stats: ScheduleStats, rules: ConvRules):
    @tvm.transform.module_pass(opt_level=0, name="EdgeresnetCpuSchedules")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gv, func in mod.functions.items():
            already = bool(func.attrs and func.attrs.get("tirx.is_scheduled", False)) if isinstance(func, tvm.tirx.PrimFunc) else True
            if not already:
                updates[gv] = schedule_function(func, stats, rules, gv.name_hint)
        for gv, func in updates.items():
            mod[gv] = func
        return mod

    return apply


def _uniform_value(bb, expr):
    """The one value of a constant whose elements are all equal, also behind the layout transform
    ConvertLayout puts on a per-channel constant (a permutation: the same elements), else None."""
    source = layout_source(bb, expr)
    if source is None:
        return None
    if int(np.prod([int(d) for d in source.ty.shape])) != int(np.prod([int(d) for d in expr.ty.shape])):
        return None  # a padding layout transform adds elements
    expr = source
    if not isinstance(expr, tvm.ir.expr.GenericConst) or not isinstance(expr.value, tvm.runtime.Tensor):
        return None
    values = expr.value.numpy()
    if values.size == 0 or not np.all(values == values.flat[0]):
        return None
    return tvm.tirx.const(values.flat[0].item(), str(expr.ty.dtype))


# round-half-to-even by one float add: for |v| <= 2^22, v + 1.5 * 2^23 lands where the float's
# spacing is 1, so the add itself rounds v to an integer, held in the low mantissa bits.
ROUNDING_BIAS = 12582912.0
BIAS_BITS = 0x4B400000  # the bits of ROUNDING_BIAS


class ElementwiseLegalizer:
    """LegalizeOps entries for the elementwise ops around the integer kernels (state per build).

    * An operand that is one value repeated (the requantize clamp bounds 127 / -128, a relu's 0, a
      scale of 1: per-channel constants only so that ConvertLayout carries the blocked layout
      through the op) becomes an immediate in the kernel. Loaded from a buffer, the compiler cannot
      see the value: a float min/max is a compare and a select each instead of one fminnm/fmaxnm,
      and the constants take vector registers the epilogue spills. Same values, same results.
    * The requantize tail astype(int8, max(min(round(v), 127), -128)) (`lowering._requantize`) is
      computed as low_byte(bits(max(min(v, 127), -128) + 1.5 * 2^23)): clamping before rounding
      gives the same integer (the bounds are integers), and for |v| <= 128 the float add rounds to
      nearest even exactly as round() does, leaving the integer in the low bits. One add instead
      of a round and a float-to-int conversion, each a 2-cycle single-pipe op on the Cortex-A76
      (Neoverse-N1 model): the epilogue of every convolution. Bit-identical results.
    * `dequantize_by_bias` (sdot cores): int8 -> float32 as a widening integer add of bits(1.5 * 2^23)
      and a float subtract of 1.5 * 2^23 instead of an scvtf, which is also 2 uops on one pipe
      there. On the A72 model (smull cores) it came out slower (261.72 against 261.64 M cycles)."""

    def __init__(self, dequantize_by_bias: bool = False) -> None:
        self.stage: dict = {}  # hash of a legalized call -> (the call, (requantize stage, the value v))
        self.dequantize_by_bias = dequantize_by_bias

    def entries(self) -> dict:
        from tvm import topi

        entries = {f"relax.{name}": self._binary(getattr(topi, name), name)
                   for name in ("add", "multiply", "minimum", "maximum")}
        entries["relax.round"] = self._round
        entries["relax.astype"] = self._astype
        return entries

    def _stage_of(self, bb, expr):
        from tvm import relax

        bound = bb.lookup_binding(expr) if isinstance(expr, relax.Var) else None
        entry = self.stage.get(hash(bound)) if bound is not None else None
        return entry[1] if entry is not None and entry[0].same_as(bound) else None

    def _record(self, call, stage):
        # Keyed by the call itself, not its GlobalVar: the block builder shares one PrimFunc among
        # same-shaped calls, so a GlobalVar would name the last value of that shape, not this one.
        if stage is not None:
            self.stage[hash(call)] = (call, stage)
        return call

    def _round(self, bb, call):
        from tvm import topi

        (value,) = call.args
        result = bb.call_te(topi.round, value, primfunc_name_hint="round")
        return self._record(result, ("round", value) if str(value.ty.dtype) == "float32" else None)

    def _binary(self, te_func, name: str):
        bounds = {"minimum": ("round", 127.0, "clamp_high"), "maximum": ("clamp_high", -128.0, "clamp")}

        def legalize(bb, call):
            a, b = call.args
            shape = [int(d) for d in call.ty.shape]
            for keep, other, swap in ((a, b, False), (b, a, True)):
                value = _uniform_value(bb, other)
                if value is not None and [int(d) for d in keep.ty.shape] == shape and str(keep.ty.dtype) == str(other.ty.dtype):
                    result = bb.call_te((lambda x: te_func(value, x)) if swap else (lambda x: te_func(x, value)), keep,
                                        primfunc_name_hint=name)
                    stage = self._stage_of(bb, keep)
                    if name in bounds and stage is not None and stage[0] == bounds[name][0] and float(value.value) == bounds[name][1]:
                        return self._record(result, (bounds[name][2], stage[1]))
                    return result
            return bb.call_te(te_func, a, b, primfunc_name_hint=name)

        return legalize

    def _astype(self, bb, call):
        from tvm import te, topi

        (value,) = call.args
        dtype = str(call.attrs.dtype)
        stage = self._stage_of(bb, value)
        if dtype == "int8" and stage is not None and stage[0] == "clamp":
            def requantize_tail(v):
                return te.compute(v.shape, lambda *i: tvm.tirx.reinterpret("int32", _biased(v(*i))).astype("int8"),
                                  name="requantize")

            return bb.call_te(requantize_tail, stage[1], primfunc_name_hint="requantize")
        if dtype == "float32" and str(value.ty.dtype) == "int8" and self.dequantize_by_bias:
            # float(x) for an int8 x as bits(1.5 * 2^23) + x, read as a float, minus 1.5 * 2^23: exact
            # (|x| <= 128 stays in the binade where the spacing is 1). A widening integer add (sshll,
            # saddw) and an fsub, on either vector pipe, instead of an scvtf (2 uops on one pipe on the
            # Cortex-A76). The bit cast also keeps TVM's simplifier from folding the float arithmetic.
            bias = tvm.tirx.const(ROUNDING_BIAS, "float32")
            return bb.call_te(lambda x: te.compute(
                x.shape, lambda *i: tvm.tirx.reinterpret("float32", x(*i).astype("int32") + tvm.tirx.const(BIAS_BITS, "int32")) - bias,
                name="dequantize"), value, primfunc_name_hint="cast")
        if dtype == "float32" and str(value.ty.dtype) == "int8":
            # through int32 explicitly: LLVM widens int8 -> int32 with sshll; int8 -> float directly
            # came out as zip / shl / sshr sign extensions. The same values.
            return bb.call_te(lambda x: te.compute(x.shape, lambda *i: x(*i).astype("int32").astype("float32"), name="dequantize"),
                              value, primfunc_name_hint="cast")
        return bb.call_te(topi.cast, value, dtype, primfunc_name_hint="cast")


def _biased(v):
    """clamp(v, -128, 127) + 1.5 * 2^23: the float whose low mantissa bits are round(clamp(v))."""
    from tvm import te

    return te.max(te.min(v, tvm.tirx.const(127.0, "float32")), tvm.tirx.const(-128.0, "float32")) \
        + tvm.tirx.const(ROUNDING_BIAS, "float32")


def layout_passes(target: tvm.target.Target) -> list:
    """Blocked layouts, legalization with the blocked convolutions, pre-packed weights, fusion."""
    from tvm import relax

    return [
        relax.transform.ConvertLayout({}, layout_cb=conv_layouts),
        relax.transform.LegalizeOps({"relax.nn.conv2d": legalize_conv2d(target),
                                     **ElementwiseLegalizer(dequantize_by_bias=dot_kind(target).name == "sdot").entries()}),
        relax.transform.DeadCodeElimination(),  # the round / clamp a requantize tail no longer reads
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),  # packs the weights once, here
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]


def fused_module(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """The module as the schedules see it (blocked layouts, packed weights, fused kernels): what `tune` tunes."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    with target:
        return tvm.transform.Sequential(cpu.library_dispatch_passes(target) + layout_passes(target))(mod)


def cpu_pipeline(target: tvm.target.Target, stats: ScheduleStats, records=None):
    """TVM's CPU pipeline with blocked layouts and the schedule rules between fusion and lowering.

    With `records` (a MetaSchedule database folder from `edgeresnet tune`), kernels that have a
    record take its schedule; the rules schedule the rest."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    rules = ConvRules.for_target(target)

    @tvm.transform.module_pass(opt_level=0, name="EdgeresnetCpuPipeline")
    def run(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        mod = fused_module(mod, target)
        with target:
            if records is not None:
                mod = _apply_records(mod, target, records, stats)
            return tvm.transform.Sequential(
                [schedule_pass(stats, rules)] + cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target)
            )(mod)

    return run


def _apply_records(mod: tvm.IRModule, target: tvm.target.Target, records, stats: ScheduleStats) -> tvm.IRModule:
    from tvm import relax

    with open_records(records):
        mod = relax.transform.MetaScheduleApplyDatabase()(mod)
    stats.from_records = sum(1 for func in mod.functions.values()
                             if isinstance(func, tvm.tirx.PrimFunc) and func.attrs and func.attrs.get("tirx.is_scheduled", False))
    stats.kernels += stats.from_records
    stats.scheduled += stats.from_records
    return mod
