"""Winograd F(4x4, 3x3) in integers (`targets/tvm/winograd.py`): its sums and which layers it takes."""

import numpy as np
import pytest


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

    image = np.pad(data[0].transpose(0, 3, 1, 2).reshape(channels, height, width).astype(np.int64), [(0, 0), (1, 1), (1, 1)])
    want = np.zeros((16, height, width), np.int64)
    for y in range(height):
        for x in range(width):
            want[:, y, x] = np.tensordot(weight.astype(np.int64), image[:, y:y + 3, x:x + 3], axes=3)
    if case == "wrapping":
        v = np.einsum("xi,cij,yj->xyc", INPUT_ROWS, image[:, :6, :6], INPUT_ROWS).reshape(36, channels)
        u = kernel.astype(np.int64).transpose(0, 1, 3, 2).reshape(36, 16, channels)
        assert np.abs(np.einsum("ec,eoc->eo", v, u)).max() >= 2 ** 31
    assert np.array_equal(got.numpy()[0].transpose(0, 3, 1, 2).reshape(16, height, width), want)


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
