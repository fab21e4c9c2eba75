"""The integer CPU pipeline (`targets/tvm/pipeline.py`): every quantized layer lowered, every kernel scheduled."""


def test_every_quantized_layer_becomes_scheduled_integer_compute(host_library):
    _, stats, scheduled = host_library
    assert stats.conv == 21 and stats.dense == 1 and stats.add == 9 and stats.pool == 1
    assert stats.float_convs_left == 0 and stats.float_dense_left == 0
    assert scheduled.share == 1.0 and scheduled.convolutions >= 10
    # On an x86 host with AVX2 every blocked integer convolution is tensorized (vpdpbusd or pmaddwd),
    # the first one too (its single image channel is zero-padded to a group of 4).
    assert scheduled.tensorized == scheduled.convolutions
