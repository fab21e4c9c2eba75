"""The flat-row stem convolution's compute (`targets/tvm/conv_flat_rows.py`), built on the host."""

import numpy as np
import pytest


@pytest.mark.parametrize("channels, kernel, stride, pad, width", [(3, 7, 2, 3, 20), (1, 3, 1, 1, 9), (3, 3, 2, 1, 11)])
def test_flat_row_convolution_is_the_convolution(channels, kernel, stride, pad, width):
    """The stem on an image's unpadded channels, each kernel row read as flat bytes 8 at a time
    (weights regrouped, zero past the row's last tap, rows padded for the over-read): the same
    int32 sums as a plain convolution. Built here without the sdot tensorization, on the host."""
    import tvm
    from tvm import te

    from edgeresnet.targets.tvm.conv_flat_rows import conv_flat_rows, group_kernel_flat
    from edgeresnet.targets.tvm.dot import SDOT

    rng = np.random.default_rng(0)
    height, outputs = width - 1, 16
    data = rng.integers(-128, 128, (1, 1, height, width, channels), dtype=np.int8)
    weight = rng.integers(-128, 128, (outputs // 8, 1, kernel, kernel, channels, 8), dtype=np.int8)
    data_t = te.placeholder(data.shape, "int8", name="data")
    weight_t = te.placeholder(weight.shape, "int8", name="weight")
    conv = conv_flat_rows(data_t, group_kernel_flat(weight_t, SDOT.group), (stride, stride), (pad,) * 4, kernel, SDOT)
    built = tvm.compile(te.create_prim_func([data_t, weight_t, conv]), target="llvm")
    got = tvm.runtime.tensor(np.zeros([int(d) for d in conv.shape], np.int32))
    built(tvm.runtime.tensor(data), tvm.runtime.tensor(weight), got)

    image = np.pad(data[0, 0].astype(np.int64), [(pad, pad), (pad, pad), (0, 0)])  # H, W, C
    w = weight.astype(np.int64).transpose(0, 5, 2, 3, 4, 1).reshape(outputs, kernel, kernel, channels)  # O, KH, KW, C
    oh, ow = (height + 2 * pad - kernel) // stride + 1, (width + 2 * pad - kernel) // stride + 1
    want = np.zeros((outputs, oh, ow), np.int64)
    for y in range(oh):
        for x in range(ow):
            window = image[y * stride:y * stride + kernel, x * stride:x * stride + kernel]
            want[:, y, x] = np.tensordot(w, window, axes=3)
    got = got.numpy()  # [1, O/8, OH, OW, 8]
    assert got.shape == (1, outputs // 8, oh, ow, 8)
    assert np.array_equal(got[0].transpose(0, 3, 1, 2).reshape(outputs, oh, ow), want)
