"""Partial-sum convolutions (`targets/tvm/conv_partial_sums.py`, cores without a dot product): where
the reduction is split so that its weights and inputs fit L1, and the sums either way."""

import numpy as np
import pytest

from helpers import direct_conv_nchw8c, run_kernels_on_a72


def test_a_reduction_is_split_only_where_a_tile_reads_more_than_the_l1():
    """ResNet-50 on the Cortex-A72: the 1x1 layer from 2048 to 512 channels (16 KB of an output
    block's weights, read again by every pixel of a 7x7 map, and a line or two per input block) runs
    in parts of 32 input blocks; the stride-2 3x3 layers on 256 and 512 channels (30 and 60 KB)
    in parts of 8; the 1x1 layers from 1024 channels (25 KB), the 56x56 layers' 1x1
    reductions on 64 channels and the folded 7x7 stem (3 blocks of 7 rows) are not split."""
    from edgeresnet.targets.tvm.conv_partial_sums import L1_BYTES, SPLIT_ABOVE, reduction_part

    assert reduction_part(256, 1, 1) == 32
    assert reduction_part(64, 3, 3) == 8 and reduction_part(32, 3, 3) == 8
    assert reduction_part(128, 1, 1) is None
    assert reduction_part(8, 1, 1) is None
    assert reduction_part(3, 7, 1) is None
    for blocks, rows, columns in [(256, 1, 1), (64, 3, 3), (32, 3, 3), (96, 3, 3)]:
        part = reduction_part(blocks, rows, columns)
        per_block = (rows * columns + 2 * rows) * 64
        assert blocks * per_block > SPLIT_ABOVE and blocks % part == 0 and part * per_block <= L1_BYTES // 4


@pytest.mark.slow
def test_split_and_whole_reductions_give_the_convolution_s_sums_on_the_a72(tmp_path):
    """The scheduled, tensorized kernels (smull + sadalp), cross-compiled for the rpi4 target and run
    under qemu -cpu cortex-a72: a 1x1 reduction over 2048 channels in 8 parts, a stride-2 3x3 one
    over 256 channels in 4 parts, and an unsplit 3x3 one: numpy's int32 sums, each."""
    import tvm
    from tvm import te

    from edgeresnet.targets import get_target
    from edgeresnet.targets.tvm.backend import llvm_target
    from edgeresnet.targets.tvm.conv_partial_sums import conv_partial_sums
    from edgeresnet.targets.tvm.dot import SMULL
    from edgeresnet.targets.tvm.rules import ConvRules, ScheduleStats
    from edgeresnet.targets.tvm.schedules import rule_schedule

    target = tvm.target.Target(llvm_target(get_target("rpi4")))
    rng = np.random.default_rng(8)
    kernels, wants = {}, {}
    for name, channels, out_channels, size, taps, stride, parts in [("1x1-2048", 2048, 16, 7, 1, 1, 8),
                                                                     ("3x3s2-256", 256, 16, 14, 3, 2, 4),
                                                                     ("3x3-64", 64, 16, 14, 3, 1, 1)]:
        data = rng.integers(-128, 128, (1, channels // 8, size, size, 8), dtype=np.int8)
        weight = rng.integers(-128, 128, (out_channels, channels, taps, taps), dtype=np.int8)
        # [O/8, C/8, KH, KW, 1, 8 outputs, 8 inputs], as `conv_blocked.group_kernel` groups it
        kernel = weight.reshape(out_channels // 8, 8, channels // 8, 8, taps, taps).transpose(0, 2, 4, 5, 1, 3)[:, :, :, :, None]
        data_t = te.placeholder(data.shape, "int8", name="data")
        kernel_t = te.placeholder(kernel.shape, "int8", name="kernel")
        pad = taps // 2
        out = conv_partial_sums(data_t, kernel_t, (stride, stride), (pad,) * 4, (1, 1), SMULL)
        stats = ScheduleStats()
        with target:
            sch = rule_schedule(te.create_prim_func([data_t, kernel_t, out]), stats, ConvRules.for_target(target))
        assert sch is not None and stats.tensorized == 1, name
        script = sch.mod.script()
        assert script.count("conv2d_NCHWc_int8_partial_update") >= 1
        if parts > 1:  # the reduction's outer loop, of `parts` iterations
            assert "rc_0, " in script and f"T.grid({parts}, " in script, name
        kernels[name] = (sch.mod, [data, np.ascontiguousarray(kernel)], [int(d) for d in out.shape])
        wants[name] = direct_conv_nchw8c(data, weight, stride, pad)
    for name, got in run_kernels_on_a72(tmp_path, kernels).items():
        assert np.array_equal(got, wants[name]), name
