"""Schedules for the kernels TOPI computes (their computes are TVM's, not ours): plain NCHW
convolutions, the other reductions (pooling sums, the dense layer) and elementwise kernels.

* plain NCHW convolutions (shapes the blocked layout does not take): (n, oc, oh) parallel,
  the accumulation row over `ow` innermost and contiguous for LLVM's vectorizer;
* other reductions: outer spatial loops fused and parallel;
* everything else (pads, casts, elementwise): outer spatial loops fused and parallel,
  the innermost spatial loop vectorized.
"""

from __future__ import annotations

import numpy as np
from tvm import s_tir

from .blocking import PARALLEL_GRAIN
from .schedule_steps import (MIN_PARALLEL_EXTENT, extent, inline_epilogue, is_reduction, iter_kinds, parallel_producers,
                             parallel_vectorize)


def parallel_spatial(sch: s_tir.Schedule, block) -> bool:
    """A reduction other than a convolution (pooling, the dense layer): parallel over its outer spatial loops.

    In a blocked layout the innermost spatial loop is the 8-channel block: it moves inside
    the reduction window, so each window step is one vector max/add (LLVM vectorizes it)."""
    loops, kinds = sch.get_loops(block), iter_kinds(sch, block)
    spatial = 0
    while spatial < len(kinds) and kinds[spatial] == 0:
        spatial += 1
    if spatial == 0 or len(loops) != len(kinds):
        return False
    channel_block = spatial > 1 and spatial < len(loops) and (extent(sch, loops[spatial - 1]) or 0) <= 16
    if channel_block:
        sch.reorder(*loops[: spatial - 1], *loops[spatial:], loops[spatial - 1])
    outer_loops = loops[: spatial - 1] if channel_block else loops[:spatial]
    if channel_block and len(outer_loops) > 2 and (extent(sch, outer_loops[-1]) or 0) > 1 \
            and int(np.prod([extent(sch, loop) or 0 for loop in outer_loops[:-1]])) % PARALLEL_GRAIN == 0:
        outer_loops = outer_loops[:-1]  # rows in parallel, a row's pixels serial: no division per pixel
    outer = sch.fuse(*outer_loops) if len(outer_loops) > 1 else outer_loops[0]
    if (extent(sch, outer) or 0) >= MIN_PARALLEL_EXTENT:
        sch.parallel(outer)
    if channel_block:
        sch.decompose_reduction(block, sch.get_loops(block)[1])
    return True


def schedule_dense(sch: s_tir.Schedule, block) -> bool:
    """The dense layer, [1, K] x [K, N] (N the weights' contiguous axis), split over K (`rfactor`)
    into one part per core: a part reads its K / parts rows of weights front to back, one ascending
    stream that the core's prefetcher follows, into a row of N partial sums (in L1, N the vector);
    the parts' rows are added after. Reduced one output at a time instead, each step reads a weight
    N bytes from the last: no stream, and ResNet-50's 2 MB of weights waited on DRAM line by line
    (4.7 M cycles against 1.7 M of arithmetic under benchmarks/arm_cost.py's Cortex-A76 model)."""
    loops = sch.get_loops(block)
    if iter_kinds(sch, block) != [0, 0, 2] or extent(sch, loops[0]) != 1:
        return False
    outputs, depth = extent(sch, loops[1]) or 0, extent(sch, loops[2]) or 0
    lanes = next((n for n in (16, 8, 4) if outputs % n == 0), None)
    if lanes is None or depth % PARALLEL_GRAIN or outputs % PARALLEL_GRAIN:
        return False
    parts, _ = sch.split(loops[2], [PARALLEL_GRAIN, None])
    partial = sch.rfactor(parts, 0)
    batch, output, parts, step = sch.get_loops(partial)
    sch.reorder(parts, batch, step, output)
    sch.parallel(sch.fuse(parts, batch))
    sch.vectorize(sch.split(output, [None, lanes])[1])
    sch.decompose_reduction(partial, step)
    batch, output, _ = sch.get_loops(block)
    sch.parallel(sch.fuse(batch, output))
    return True


def schedule_convolution(sch: s_tir.Schedule, conv) -> bool:
    """Plain NCHW convolution (grouped or odd shapes the blocked layout does not take)."""
    loops = sch.get_loops(conv)
    if len(loops) != 7:  # n, oc, oh, ow, ic, kh, kw (NCHW conv2d)
        return False
    n, oc, oh, ow, ic, kh, kw = loops
    epilogue = inline_epilogue(sch, conv)
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
    parallel_producers(sch, conv)
    return True


def inline_elementwise(sch: s_tir.Schedule, blocks: list) -> list:
    """One pass over memory instead of one per op: every elementwise block that is not the
    kernel's output is computed inside its consumers (a residual add's dequantize, add and
    requantize were ten parallel loops, each reading and writing the whole tensor)."""
    for block in blocks[:-1]:
        # A block read by several consumers stays (inlined, it would be recomputed by each).
        if not is_reduction(sch, block) and len(sch.get_consumers(block)) == 1:
            try:
                sch.compute_inline(block)
            except s_tir.ScheduleError:
                pass
    return sch.get_child_blocks(sch.get_sblock("root"))


def schedule_elementwise(sch: s_tir.Schedule, blocks: list) -> bool:
    """A kernel with no convolution: its elementwise chains inlined, each remaining block parallel."""
    done = False
    for block in inline_elementwise(sch, blocks):
        if is_reduction(sch, block):
            dense = sch.get(block).name_hint == "matmul" and schedule_dense(sch, block)
            scheduled = dense or parallel_spatial(sch, block)
        else:
            scheduled = parallel_vectorize(sch, block)
        done = scheduled or done
    return done
