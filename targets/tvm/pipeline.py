"""The Relax pipeline of the integer CPU path, as pass lists around TVM's own CPU pipeline
(`tvm.relax.backend.cpu_generic.pipeline`): blocked layouts, our legalization, fusion, then the
schedule rules (`schedules`) between fusion and lowering, where TVM's default schedules nothing."""

from __future__ import annotations

import tvm

from .blocking import BLOCK
from .legalize import legalize_ops
from .records import open_records
from .rules import ConvRules, ScheduleStats
from .schedules import schedule_pass


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


def layout_passes(target: tvm.target.Target) -> list:
    """Blocked layouts, legalization with the blocked convolutions, pre-packed weights, fusion."""
    from tvm import relax

    return [
        relax.transform.ConvertLayout({}, layout_cb=conv_layouts),
        relax.transform.LegalizeOps(legalize_ops(target)),
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
                mod = _apply_records(mod, records, stats)
            return tvm.transform.Sequential(
                [schedule_pass(stats, rules)] + cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target)
            )(mod)

    return run


def _apply_records(mod: tvm.IRModule, records, stats: ScheduleStats) -> tvm.IRModule:
    from tvm import relax

    with open_records(records):
        mod = relax.transform.MetaScheduleApplyDatabase()(mod)
    stats.from_records = sum(1 for func in mod.functions.values()
                             if isinstance(func, tvm.tirx.PrimFunc) and func.attrs and func.attrs.get("tirx.is_scheduled", False))
    stats.kernels += stats.from_records
    stats.scheduled += stats.from_records
    return mod
