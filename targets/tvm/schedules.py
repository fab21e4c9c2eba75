"""Rule-based CPU schedules for the fused kernels: no tuning session, deterministic.

TVM 0.27's default CPU pipeline legalizes and fuses but leaves every loop nest naive and
single-threaded. Here each fused kernel gets one rule:

* blocked convolutions (`conv_blocked`, `conv_flat_rows`): a tile of output pixels x 8 channels
  accumulates in registers, the 8 channels the vector (for integer kernels, the dot-product
  intrinsic of the target: sdot, vpdpbusd, pmaddwd); the epilogue (bias, requantize, residual
  add, relu) is inlined and runs per tile;
* partial-sum convolutions (`conv_partial_sums`, cores without a dot product): smull + sadalp;
* Winograd convolutions (`winograd`, the same cores): input transform, products (smlal by
  element) and output transform with the epilogue, in the order that keeps their tensors in
  cache (by the layer, by chunks of tiles or by output blocks: `winograd.order_of`);
* the kernels TOPI computes (`topi_kernels`): plain convolutions, pooling, the dense layer,
  elementwise kernels.

Blocks a rule cannot handle keep TVM's default loops; `ScheduleStats` counts
both, and the report gives the share of kernels that got a schedule.
"""

from __future__ import annotations

import tvm
from tvm import s_tir

from . import conv_blocked, conv_flat_rows, conv_partial_sums, winograd
from .rules import RULE_ATTR, ConvRules, ScheduleRule, ScheduleStats
from .schedule_steps import extent, is_reduction
from .topi_kernels import schedule_convolution, schedule_elementwise

# Every rule a compute of ours can name (`rules.rule_attrs`): each a convolution's.
KERNEL_RULES: dict[str, ScheduleRule] = {**conv_blocked.SCHEDULE_RULES, **conv_flat_rows.SCHEDULE_RULES,
                                          **conv_partial_sums.SCHEDULE_RULES, **winograd.SCHEDULE_RULES}


def rule_schedule(func: tvm.tirx.PrimFunc, stats: ScheduleStats, rules: ConvRules) -> s_tir.Schedule | None:
    """The rule's schedule of one kernel (its trace is what `tune` measures as the baseline), or None."""
    sch = s_tir.Schedule(func)
    stats.kernels += 1
    blocks = sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []
    marked = [(block, str(sch.get(block).annotations[RULE_ATTR])) for block in blocks if RULE_ATTR in sch.get(block).annotations]
    # TOPI's plain convolution carries no mark of ours; TOPI names its blocks after the op.
    topi_convs = [b for b in blocks if is_reduction(sch, b) and "conv" in sch.get(b).name_hint]
    done = False
    try:
        if marked:
            block, rule = marked[0]
            sch.unannotate(block, RULE_ATTR)  # scheduled, the kernel is the TIR an unmarked compute would give
            done = KERNEL_RULES[rule](sch, block, rules, stats)
            stats.convolutions += int(done)
        elif topi_convs:
            done = schedule_convolution(sch, topi_convs[0])
            stats.convolutions += int(done)
        else:
            done = schedule_elementwise(sch, blocks)
    except s_tir.ScheduleError:
        return None  # left to TVM's default loops
    stats.scheduled += int(done)
    return sch if done else None


def _parallel_iterations(sch: s_tir.Schedule) -> list[int]:
    loops = {}
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        for loop in sch.get_loops(block):
            if sch.get(loop).kind == tvm.tirx.ForKind.PARALLEL:
                loops[sch.get(loop)] = extent(sch, loop) or 0
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
