"""The schedule rules (`targets/tvm/schedules.py`): dispatch by the computes' marks, even parallel splits."""

import re

import pytest

from edgeresnet.targets import get_target
from edgeresnet.targets.tvm.module import compile_integer_module


@pytest.mark.parametrize("target", ["rpi4", "rpi5"])
def test_every_kernel_splits_evenly_on_the_boards_four_cores(reference_qdq, target):
    """TVM gives each of N threads ceil(iterations / N) of a parallel loop: every loop a multiple of 4."""
    from edgeresnet.targets.tvm.backend import llvm_target

    _, qdq, _ = reference_qdq
    profile = get_target(target)
    _, _, scheduled = compile_integer_module(qdq, [1, 1, 28, 28], llvm_target(profile))
    split = scheduled.parallel_split(profile.details.threads)
    # 15 kernels: the residual adds run in their convolution's epilogue
    assert split["threads"] == 4 and split["parallel_kernels"] >= 12
    assert split["uneven"] == {} and split["split_evenly"] == split["parallel_kernels"]
    assert scheduled.parallel_split(3)["uneven"], "a 3-core split must find loops that do not divide"


@pytest.mark.parametrize("target, families", [("rpi4", {"winograd", "conv_partial_sums"}),
                                              ("rpi5", {"conv_flat_rows", "conv_blocked_grouped"})])
def test_each_convolution_names_a_known_rule_and_its_schedule_drops_the_name(reference_qdq, target, families):
    """Every convolution kernel of the fused module names its rule (`rules.rule_attrs`), each name is
    in the registry, each marked kernel is scheduled by it, and no mark is left in the scheduled
    kernels (they are the same TIR as computes that were never marked)."""
    import tvm

    from edgeresnet.targets.tvm.backend import llvm_target
    from edgeresnet.targets.tvm.module import integer_module
    from edgeresnet.targets.tvm.pipeline import fused_module
    from edgeresnet.targets.tvm.rules import RULE_ATTR, ConvRules, ScheduleStats
    from edgeresnet.targets.tvm.schedules import KERNEL_RULES, schedule_pass

    _, qdq, _ = reference_qdq
    llvm = tvm.target.Target(llvm_target(get_target(target)))
    fused = fused_module(integer_module(qdq, [1, 1, 28, 28], llvm)[0], llvm)
    marks = re.findall(rf'"{re.escape(RULE_ATTR)}": "(\w+)"', fused.script())
    assert families <= set(marks) <= set(KERNEL_RULES), marks
    stats = ScheduleStats()
    with llvm:
        scheduled = schedule_pass(stats, ConvRules.for_target(llvm))(fused)
    assert stats.convolutions == len(marks) and stats.share == 1.0
    assert RULE_ATTR not in scheduled.script()
