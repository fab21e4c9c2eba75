"""The blocked direct convolutions' computes (`targets/tvm/conv_blocked.py`), built on the host."""

import numpy as np
import pytest


@pytest.mark.parametrize("block, kernel, stride, pad", [(8, 3, 1, 1), (16, 1, 2, 0), (4, 7, 2, 3)])
def test_shifted_activations_give_the_convolution_s_sums(block, kernel, stride, pad):
    """vpdpbusd's form: int8 activations stored +128 as uint8 (the padding too), 128 x each output
    channel's weight sum taken back out: the same int32 sums as the signed convolution, extremes
    included. Built without the VNNI tensorization, so it runs on any host."""
    import tvm
    from tvm import te

    from edgeresnet.targets.tvm.conv_blocked import conv_nchwc, conv_shifted, group_kernel, offset_products
    from edgeresnet.targets.tvm.dot import VPDPBUSD

    rng = np.random.default_rng(1)
    data = rng.choice(np.array([-128, -127, -1, 0, 1, 126, 127], np.int8), (1, 2, 9, 10, block))
    weight = rng.choice(np.array([-128, -127, -3, 0, 5, 127], np.int8), (2, 2, kernel, kernel, block, 8))
    data_t = te.placeholder(data.shape, "int8", name="data")
    weight_t = te.placeholder(weight.shape, "int8", name="weight")
    args = ((stride, stride), (pad,) * 4, (1, 1))
    plain = conv_nchwc(data_t, weight_t, *args, "int32")
    grouped = group_kernel(weight_t, VPDPBUSD.group)
    shifted = conv_shifted(data_t, grouped, offset_products(grouped, VPDPBUSD.activation_offset), *args, VPDPBUSD)
    func = te.create_prim_func([data_t, weight_t, plain, shifted])
    assert "data_shift" in func.script() and "uint8" in func.script()
    built = tvm.compile(func, target="llvm")
    outputs = [tvm.runtime.tensor(np.zeros([int(d) for d in plain.shape], np.int32)) for _ in range(2)]
    built(tvm.runtime.tensor(data), tvm.runtime.tensor(weight), *outputs)
    want, got = (o.numpy() for o in outputs)
    assert np.abs(want).max() > 0 and np.array_equal(got, want)
