"""The integer module: the Q/DQ model imported into Relax, lowered to int8 compute, built for an LLVM target."""

from __future__ import annotations

from pathlib import Path

import tvm
from tvm import relax

from .dot import folds_first_convolution, reads_rows_flat
from .lowering import lower_to_integer
from .pipeline import cpu_pipeline
from .rules import ScheduleStats


def host_cpu() -> str:
    return str(tvm.get_global_func("target.llvm_get_system_cpu")())


def integer_module(int8_model, input_shape: list[int], target: tvm.target.Target):
    """The Q/DQ model imported into Relax and lowered to integer compute for `target`: (IRModule, lowering stats)."""
    from tvm.relax.frontend.onnx import from_onnx

    return lower_to_integer(from_onnx(int8_model, shape_dict={"input": list(input_shape)}, keep_params_in_input=False),
                            fold_first_convolution=folds_first_convolution(target), keep_image_channels=reads_rows_flat(target))


def compile_integer_module(int8_model, input_shape: list[int], target: dict, records: Path | None = None):
    """Import the Q/DQ model, lower it to integer compute, compile it for `target` with the schedule
    rules (and the tuning records of `edgeresnet tune`, where `records` has one for a kernel).

    Returns (executable, lowering stats, schedule stats)."""
    llvm = tvm.target.Target(target)
    mod, lowering = integer_module(int8_model, input_shape, llvm)
    scheduled = ScheduleStats()
    return relax.build(mod, target=llvm, relax_pipeline=cpu_pipeline(llvm, scheduled, records)), lowering, scheduled
