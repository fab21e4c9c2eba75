"""Winograd F(4x4, 3x3) in integers (`targets/tvm/winograd.py`): its sums and which layers it takes."""

import numpy as np
import pytest

from helpers import direct_conv_nchw8c, run_kernels_on_a72


@pytest.mark.parametrize("channels, height, width, case", [(8, 4, 8, "random"), (16, 8, 12, "extremes"), (128, 4, 4, "wrapping"),
                                                           (8, 7, 14, "random")])
def test_winograd_gives_the_convolution_s_sums(channels, height, width, case):
    """F(4x4, 3x3) in integers (kernel rows scaled to integers, 576 y taken back out modulo 2^32):
    the same int32 sums as the direct convolution, also where the last tiles are partial (7 x 14).
    "wrapping": inputs and weights chosen so that a
    Winograd-domain sum leaves int32 (as layer 2 of ResNet-18 can), where only the modular
    recovery makes it exact. Built without the smlal tensorization, on the host."""
    import tvm
    from tvm import te

    from edgeresnet.targets.tvm.winograd import INPUT_ROWS, conv_winograd, transform_kernel

    rng = np.random.default_rng(channels)
    values = np.array([-128, 127], np.int8) if case != "random" else np.arange(-128, 128).astype(np.int8)
    data = rng.choice(values, (1, channels // 8, height, width, 8))
    weight = rng.choice(values, (16, channels, 3, 3))
    if case == "wrapping":  # position (3, 3): every product the same sign, at its largest
        signs = np.sign(INPUT_ROWS[3][1:5])
        data[:] = np.where(np.outer(signs, signs) > 0, -128, 127).astype(np.int8)[None, None, :, :, None]
        weight[0] = -128
    kernel = transform_kernel(weight)
    data_t = te.placeholder(data.shape, "int8", name="data")
    kernel_t = te.placeholder(kernel.shape, "int16", name="kernel")
    out = conv_winograd(data_t, kernel_t, (1, 1, 1, 1))
    built = tvm.compile(te.create_prim_func([data_t, kernel_t, out]), target="llvm")
    got = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], np.int32))
    built(tvm.runtime.tensor(data), tvm.runtime.tensor(kernel), got)

    if case == "wrapping":
        image = np.pad(data[0].transpose(0, 3, 1, 2).reshape(channels, height, width).astype(np.int64), [(0, 0), (1, 1), (1, 1)])
        v = np.einsum("xi,cij,yj->xyc", INPUT_ROWS, image[:, :6, :6], INPUT_ROWS).reshape(36, channels)
        u = kernel.astype(np.int64).transpose(1, 0, 3, 2).reshape(36, 16, channels)
        assert np.abs(np.einsum("ec,eoc->eo", v, u)).max() >= 2 ** 31
    assert np.array_equal(got.numpy(), direct_conv_nchw8c(data, weight))


def test_winograd_takes_only_layers_it_computes_exactly_and_splits_evenly():
    """`winograd.applies`: 3x3 stride 1 only; |y| < 2^25 for any input (128 x sum|w| per output
    channel): ResNet-18's 512-channel layer with every weight at -128 is refused, realistic weights
    are taken; every parallel loop a multiple of 4 (the reference model's 28x28 stage is not)."""
    from edgeresnet.targets.tvm.winograd import applies

    def conv(channels, size, weight=None, **attrs):
        weight = np.full((channels, channels, 3, 3), -128, np.int8) if weight is None else weight
        args = {"strides": (1, 1), "padding": (1, 1, 1, 1), "dilation": (1, 1), **attrs}
        return applies(weight, (1, channels // 8, size, size, 8), args["strides"], args["padding"], args["dilation"])

    assert conv(128, 28)  # the bound holds for any weights up to 227 input channels
    assert not conv(512, 7)  # 128 x 4608 x 128 > 2^25
    trained = np.random.default_rng(0).normal(0, 20, (512, 512, 3, 3)).clip(-127, 127).astype(np.int8)
    assert conv(512, 7, trained)  # partial tiles: 7 = 4 + 3
    assert not conv(64, 56, strides=(2, 2)) and not conv(64, 56, dilation=(2, 2))
    assert not conv(16, 28) and conv(16, 32)  # 7 x 7 tiles x 2 channel blocks = 98 parallel iterations, 8 x 8 x 2 = 128
    assert not conv(64, 2, padding=(0, 0, 0, 0))  # no whole tile


LAYERS = [  # (channels, size, order, its parallel loop): one layer per order, chosen by `order_of` from the layer's bytes
    (16, 56, "tile-chunks", 28),  # a ResNet's 56x56 stage in miniature: 0.7 MB of Winograd-domain tensors, 18 KB of weights
    (32, 14, "output-blocks", 4),  # the transformed input (74 KB) stays in cache
    (128, 56, "layer", 16 * 36),  # 1.8 MB of transformed input and 1.2 MB of weights: neither stays
]


def test_winograd_orders_follow_the_layer_s_bytes():
    """ResNet-18's 3x3 layers on the Cortex-A72: 56x56 x 64 by tile chunks (its 2.7 MB of
    Winograd-domain tensors would go to DRAM between passes; its 295 KB of weights stay), the
    deeper ones by output blocks; a chunk count that does not divide among 4 cores keeps the
    layer order."""
    from edgeresnet.targets.tvm.schedule_steps import largest_divisor
    from edgeresnet.targets.tvm.winograd import Order, order_of

    assert order_of(196, 64, 64, chunk=7, images=1) is Order.TILE_CHUNKS
    assert order_of(49, 128, 128, chunk=7, images=1) is Order.OUTPUT_BLOCKS
    assert order_of(16, 256, 256, chunk=4, images=1) is Order.OUTPUT_BLOCKS
    assert order_of(4, 512, 512, chunk=2, images=1) is Order.OUTPUT_BLOCKS
    assert order_of(196, 128, 128, chunk=7, images=1) is Order.LAYER
    assert order_of(196, 64, 64, chunk=14, images=1) is Order.LAYER  # 14 chunks: 4, 4, 4, 2 per core
    assert order_of(169, 64, 64, chunk=1, images=1) is Order.LAYER  # 13 tiles a row: chunks of one tile
    assert order_of(16, 8, 32, chunk=4, images=1) is Order.LAYER  # one input block
    for channels, size, order, _ in LAYERS:
        rows = size // 4
        chunk = largest_divisor(rows, 7)
        assert order_of(rows * rows, channels, channels, chunk=chunk, images=1).value == order


@pytest.mark.slow
def test_each_winograd_order_gives_the_convolution_s_sums_on_the_a72(tmp_path):
    """The scheduled, tensorized kernels (smlal by element) of each `Order`, cross-compiled for the
    rpi4 target and run under qemu -cpu cortex-a72: the same int32 sums as numpy's direct convolution."""
    import tvm
    from tvm import te

    from edgeresnet.targets import get_target
    from edgeresnet.targets.tvm.backend import llvm_target
    from edgeresnet.targets.tvm.rules import ConvRules, ScheduleStats
    from edgeresnet.targets.tvm.schedules import _parallel_iterations, rule_schedule
    from edgeresnet.targets.tvm.winograd import conv_winograd, transform_kernel

    target = tvm.target.Target(llvm_target(get_target("rpi4")))
    rng = np.random.default_rng(4)
    kernels, wants = {}, {}
    for channels, size, order, parallel_loop in LAYERS:
        data = rng.integers(-128, 128, (1, channels // 8, size, size, 8), dtype=np.int8)
        weight = rng.integers(-20, 21, (channels, channels, 3, 3), dtype=np.int8)
        kernel = transform_kernel(weight)
        data_t = te.placeholder(data.shape, "int8", name="data")
        kernel_t = te.placeholder(kernel.shape, "int16", name="kernel")
        out = conv_winograd(data_t, kernel_t, (1, 1, 1, 1))
        stats = ScheduleStats()
        with target:
            sch = rule_schedule(te.create_prim_func([data_t, kernel_t, out]), stats, ConvRules.for_target(target))
        assert sch is not None and stats.tensorized == 1, order
        assert parallel_loop in _parallel_iterations(sch), (order, _parallel_iterations(sch))
        kernels[order] = (sch.mod, [data, kernel], data.shape)
        wants[order] = direct_conv_nchw8c(data, weight)
    for order, got in run_kernels_on_a72(tmp_path, kernels).items():
        assert np.array_equal(got, wants[order]), order
