"""Rule-based CPU schedules for the integer ResNet kernels: no tuning session, deterministic.

TVM 0.27's default CPU pipeline legalizes and fuses but leaves every loop nest
naive and single-threaded. After fusion, each fused kernel gets one rule:

* convolutions (a reduction block over (ic, kh, kw) feeding an elementwise epilogue):
  the epilogue (bias, requantize, residual add, relu) is inlined into one block;
  the loop order becomes (n, oc, oh) | (ic, kh, kw) | ow, the outer three fused and
  run in parallel, the accumulation row over `ow` innermost and contiguous (LLVM
  vectorizes it; its initialisation is split off first), and the epilogue computed
  right after each finished row while it is still in cache;
* other reductions (pooling sums, the dense layer): outer spatial loops fused and parallel;
* everything else (pads, casts, elementwise): outer spatial loops fused and parallel,
  the innermost spatial loop vectorized.

Blocks a rule cannot handle keep TVM's default loops; `ScheduleStats` counts
both, and the report gives the share of kernels that got a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import s_tir

MIN_PARALLEL_EXTENT = 2


@dataclass
class ScheduleStats:
    kernels: int = 0
    scheduled: int = 0
    convolutions: int = 0

    @property
    def share(self) -> float:
        return round(self.scheduled / self.kernels, 4) if self.kernels else 0.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "share": self.share}


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
    """A reduction other than a convolution (pooling sums, the dense layer): parallel over its outer spatial loops."""
    loops, kinds = sch.get_loops(block), _iter_kinds(sch, block)
    spatial = 0
    while spatial < len(kinds) and kinds[spatial] == 0:
        spatial += 1
    if spatial == 0 or len(loops) != len(kinds):
        return False
    outer = sch.fuse(*loops[:spatial]) if spatial > 1 else loops[0]
    if (_extent(sch, outer) or 0) >= MIN_PARALLEL_EXTENT:
        sch.parallel(outer)
    return True


def _schedule_convolution(sch: s_tir.Schedule, conv) -> bool:
    loops = sch.get_loops(conv)
    if len(loops) != 7:  # n, oc, oh, ow, ic, kh, kw (NCHW conv2d)
        return False
    n, oc, oh, ow, ic, kh, kw = loops
    # Inline the elementwise epilogue into a single consumer block.
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
    for producer in sch.get_producers(conv):  # the padded input
        if not _is_reduction(sch, producer):
            try:
                _parallel_vectorize(sch, producer)
            except s_tir.ScheduleError:
                pass
    return True


def schedule_function(func: tvm.tirx.PrimFunc, stats: ScheduleStats) -> tvm.tirx.PrimFunc:
    sch = s_tir.Schedule(func)
    stats.kernels += 1
    blocks = sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []
    convs = [b for b in blocks if _is_reduction(sch, b) and "conv" in sch.get(b).name_hint]
    done = False
    try:
        if convs:
            done = _schedule_convolution(sch, convs[0])
            stats.convolutions += int(done)
        else:
            for block in blocks:
                scheduled = _parallel_spatial(sch, block) if _is_reduction(sch, block) else _parallel_vectorize(sch, block)
                done = scheduled or done
    except s_tir.ScheduleError:
        return func  # left to TVM's default loops
    stats.scheduled += int(done)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True) if done else func


def _has_root(sch: s_tir.Schedule) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except (s_tir.ScheduleError, tvm.error.TVMError, ValueError):
        return False


def schedule_pass(stats: ScheduleStats):
    @tvm.transform.module_pass(opt_level=0, name="EdgeresnetCpuSchedules")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gv, func in mod.functions.items():
            already = bool(func.attrs and func.attrs.get("tirx.is_scheduled", False)) if isinstance(func, tvm.tirx.PrimFunc) else True
            if not already:
                updates[gv] = schedule_function(func, stats)
        for gv, func in updates.items():
            mod[gv] = func
        return mod

    return apply


def cpu_pipeline(target: tvm.target.Target, stats: ScheduleStats):
    """TVM's CPU pipeline with the schedule rules between fusion and lowering."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    @tvm.transform.module_pass(opt_level=0, name="EdgeresnetCpuPipeline")
    def run(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential(
                cpu.library_dispatch_passes(target) + cpu.legalize_passes(target) + [schedule_pass(stats)]
                + cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target)
            )(mod)

    return run
