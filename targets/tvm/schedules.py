"""Rule-based CPU schedules for the FP32 and integer ResNet kernels: no tuning session, deterministic.

TVM 0.27's default CPU pipeline legalizes and fuses but leaves every loop nest
naive and single-threaded. Here convolutions first move to blocked layouts
(`conv`), then, after fusion, each fused kernel gets one rule:

* blocked convolutions (NCHW8c): a tile of output pixels x 8 channels accumulates in
  registers (a `local` buffer LLVM promotes), over (ic-block, kh, kw, ic); the tile loop
  is unrolled, the 8 channels are the vector (for integer kernels, the dot-product
  intrinsic of the target: sdot, pmaddwd); (n, oc-block, oh) are fused and parallel;
  the epilogue (bias, requantize, residual add, relu) is inlined and runs per tile;
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

import tvm
from tvm import s_tir

from .conv import ACCUMULATOR_SCOPE, BLOCK, DotKind, conv_layouts, dot_kind, is_aarch64, legalize_conv2d
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
    outer = sch.fuse(*outer_loops) if len(outer_loops) > 1 else outer_loops[0]
    if (_extent(sch, outer) or 0) >= MIN_PARALLEL_EXTENT:
        sch.parallel(outer)
    if channel_block:
        sch.decompose_reduction(block, sch.get_loops(block)[1])
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
                _parallel_vectorize(sch, producer)
            except s_tir.ScheduleError:
                pass


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
    _parallel_producers(sch, conv)
    tile = _largest_divisor(_extent(sch, ow) or 1, rules.int8_tile if integer else rules.float_tile)
    ow_o, ow_i = sch.split(ow, [None, tile])
    dot = rules.dot if integer else None
    tensorized, intrinsic = None, None  # the loop an intrinsic replaces, and which
    if dot is not None and dot.block_intrinsic and _extent(sch, rj) == dot.group and _extent(sch, ocb) == BLOCK \
            and (_extent(sch, rq) or 0) % 2 == 0:
        rq_o, rq_i = sch.split(rq, [None, 2])  # the block intrinsic takes two groups of input channels
        sch.reorder(n, occ, oh, ow_o, rc, ry, rx, rq_o, ow_i, ocb, rq_i, rj)
        tensorized, intrinsic = ocb, dot.block_intrinsic
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
            sch.reverse_compute_at(epilogue, ow_o)
            write_back = epilogue
        except s_tir.ScheduleError:
            pass
    try:
        sch.vectorize(sch.get_loops(write_back)[-1])
    except s_tir.ScheduleError:
        pass
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


@dataclass(frozen=True)
class ConvRules:
    """Per-target register tiles: output pixels per tile of 8 channels (x86 AVX2: 16 vector
    registers, one per 8 float channels; NEON: 32 registers, two per 8 channels)."""

    dot: DotKind
    float_tile: int
    int8_tile: int
    partial_sums_tile: int = 2  # pixels: 2 x 8 accumulator vectors + 8 weight + 2 input registers of 32

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
            if name.endswith("_partial"):
                done = _schedule_partial_sums_convolution(sch, convs[0], rules, stats)
            elif name.startswith("conv2d_NCHWc"):
                done = _schedule_blocked_convolution(sch, convs[0], rules, stats)
            else:
                done = _schedule_convolution(sch, convs[0])
            stats.convolutions += int(done)
        else:
            blocks = _inline_elementwise(sch, blocks)
            for block in blocks:
                scheduled = _parallel_spatial(sch, block) if _is_reduction(sch, block) else _parallel_vectorize(sch, block)
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


def layout_passes(target: tvm.target.Target) -> list:
    """Blocked layouts, legalization with the blocked convolutions, pre-packed weights, fusion."""
    from tvm import relax

    return [
        relax.transform.ConvertLayout({}, layout_cb=conv_layouts),
        relax.transform.LegalizeOps({"relax.nn.conv2d": legalize_conv2d(target)}),
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
