"""Schedule steps the kernel families' rules share: loop queries, parallel and vector loops, the
padding copy, the epilogue inlined into a convolution, register tiles."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import s_tir

from .blocking import ACCUMULATOR_SCOPE, PARALLEL_GRAIN

MIN_PARALLEL_EXTENT = 2


def iter_kinds(sch: s_tir.Schedule, block) -> list[int]:
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def is_reduction(sch, block) -> bool:
    return any(kind == 2 for kind in iter_kinds(sch, block))  # IterVar.CommReduce


def extent(sch, loop) -> int | None:
    value = sch.get(loop).extent
    return int(value) if isinstance(value, (tvm.tirx.IntImm,)) else None


def largest_divisor(n: int, at_most: int) -> int:
    return next(d for d in range(min(n, at_most), 0, -1) if n % d == 0)


def parallel_vectorize(sch: s_tir.Schedule, block, keep_inner: int = 1) -> bool:
    loops = sch.get_loops(block)
    kinds = iter_kinds(sch, block)
    if not loops or len(loops) != len(kinds) or any(k != 0 for k in kinds):
        return False
    if len(loops) > keep_inner:
        outer = sch.fuse(*loops[: len(loops) - keep_inner]) if len(loops) - keep_inner > 1 else loops[0]
        if (extent(sch, outer) or 0) >= MIN_PARALLEL_EXTENT:
            sch.parallel(outer)
    inner = sch.get_loops(block)[-1]
    size = extent(sch, inner) or 0
    if len(sch.get_loops(block)) > 1 and size > 1:
        lanes = next((n for n in (16, 8) if size > n and size % n == 0), None)
        if lanes:  # a row of 224 as one 224-lane vector: LLVM splits it into scalar lane moves
            inner = sch.split(inner, [None, lanes])[1]
        sch.vectorize(inner)
    return True


def parallel_rows(sch: s_tir.Schedule, block) -> bool:
    """A padding copy [.., rows, columns, channel block]: parallel over rows (or over rows x 2 or
    4 column strips, whichever divides evenly among the boards' cores), the columns a serial loop,
    the channel block the vector. One parallel iteration per pixel instead pays a division and a
    modulo per pixel (~16 cycles per 8 bytes on the A76 model); per row, the row's bounds test is
    hoisted and the pixel loop only compares. False (nothing changed) when no split is even."""
    loops = sch.get_loops(block)
    if len(loops) < 3 or any(kind != 0 for kind in iter_kinds(sch, block)):
        return False
    extents = [extent(sch, loop) or 0 for loop in loops]
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


def parallel_producers(sch: s_tir.Schedule, block) -> None:
    """The padded (and widened) input: one parallel, vectorized pass."""
    producers = [p for p in sch.get_producers(block) if not is_reduction(sch, p)]
    for producer in producers:
        for inner in sch.get_producers(producer):
            if not is_reduction(sch, inner):
                try:
                    sch.compute_inline(inner)
                except s_tir.ScheduleError:
                    pass
    for producer in sch.get_producers(block):
        if not is_reduction(sch, producer):
            try:
                if not parallel_rows(sch, producer):
                    parallel_vectorize(sch, producer)
            except s_tir.ScheduleError:
                pass


def inline_epilogue(sch: s_tir.Schedule, conv):
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


def inline_side_inputs(sch: s_tir.Schedule, epilogue, conv) -> None:
    """Inline into the epilogue the elementwise blocks that prepare its other inputs (a residual
    add's dequantized shortcut): left at the root, they would keep the epilogue from moving into
    the tile loop (a full-size pass after the convolution)."""
    if epilogue is None:
        return
    pending = [p for p in sch.get_producers(epilogue) if not sch.get(p).same_as(sch.get(conv))]
    while pending:
        block = pending.pop()
        if is_reduction(sch, block):
            continue
        inner = sch.get_producers(block)
        try:
            sch.compute_inline(block)
        except s_tir.ScheduleError:
            continue
        pending.extend(inner)


def _bytes(buffer) -> int:
    return int(np.prod([int(d) for d in buffer.shape])) * tvm.DataType(buffer.dtype).bits // 8


def outer_order(sch: s_tir.Schedule, conv, batch, blocks, rows) -> tuple:
    """A blocked convolution's outer loops: (batch, output block, output row) or (batch, row, block),
    whichever reads fewer bytes again. Blocks outermost read the whole input once per output block
    and each block's weights once; rows outermost read the input once (a row's input rows stay in
    L1 for every block) and all the weights once per row. ResNet-50's 1x1 convolutions on
    256-channel 56x56 maps (800 KB, more than a Cortex-A76's L2) read that map from L3 eight
    times with blocks outermost; its 3x3 512-channel layers at 7x7 (2.4 MB of weights) would read
    those from DRAM seven times with rows outermost."""
    # The blocked computes multiply the (padded) input by the weights, so they are read in that order.
    data, kernel = (region.source for region in sch.get(conv).reads[:2])
    out_blocks, out_rows = extent(sch, blocks) or 1, extent(sch, rows) or 1
    if _bytes(data) * (out_blocks - 1) > _bytes(kernel) * (out_rows - 1):
        return batch, rows, blocks
    return batch, blocks, rows


def register_tile(sch: s_tir.Schedule, conv, outer_loops, tile_loop, in_tile_loop, parallel: bool = True):
    """Outer loops fused and parallel (unless a loop around them is); the tile's accumulators in a
    buffer written back per tile (its loop `in_tile_loop` unrolled, so LLVM keeps them in
    registers), or once per outer iteration where `tile_loop` is None (a reduction split into parts
    that each run over all the tiles: LLVM loads and stores a tile's accumulators around each part).
    Returns the write-back block."""
    outer = sch.fuse(*outer_loops)
    if parallel and (extent(sch, outer) or 0) >= MIN_PARALLEL_EXTENT:
        sch.parallel(outer)
    write_back = sch.cache_write(conv, 0, ACCUMULATOR_SCOPE)
    sch.reverse_compute_at(write_back, tile_loop if tile_loop is not None else outer)
    sch.unroll(in_tile_loop)
    return write_back


def vectorize_tile_epilogue(sch: s_tir.Schedule, block) -> None:
    """The per-tile epilogue: the 8 channels are the vector, the tile's pixels unrolled. A pixel loop
    left as a loop is vectorized again by LLVM across pixels (lane-by-lane gathers, a stack round
    trip): ~170 cycles per 64 outputs on the A76 model instead of straight-line vector code."""
    loops = sch.get_loops(block)
    try:
        sch.vectorize(loops[-1])
    except s_tir.ScheduleError:
        return
    if len(loops) > 1 and (extent(sch, loops[-2]) or 0) > 1:
        try:
            sch.unroll(loops[-2])
        except s_tir.ScheduleError:
            pass


def unroll_window_row(sch: s_tir.Schedule, ry, rx) -> None:
    """A one-column window (1x1, or the folded first convolution's 7x1) gives a loop body of one
    micro-kernel step: unroll the window's rows so the loop overhead spreads over several."""
    if extent(sch, rx) == 1 and (extent(sch, ry) or 0) > 1:
        sch.unroll(ry)
