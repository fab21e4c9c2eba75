"""TensorRT's calibration cache format: the header's NV_TENSORRT_VERSION encoding, re-stamping, big-endian scales."""

import struct

import pytest

from edgeresnet.errors import InputError
from edgeresnet.targets.tensorrt.calibration_cache import (cache_version_tag, read_calibration_cache, restamp,
                                                           write_calibration_cache)


@pytest.mark.parametrize("version,tag", [
    ("7.1.3", "7103"), ("7.2.2", "7202"), ("8.2.3", "8203"),  # cache headers quoted in NVIDIA/TensorRT#2036 and trtexec logs
    ("8.5.2", "8502"), ("8.5.10", "8510"), ("8.6.2", "8602"),
    ("10.3.0", "100300"), ("10.7.0", "100700"), ("10.16.0", "101600"), ("10.16.1", "101601"),  # trtexec banners [TensorRT vN]
])
def test_cache_header_encodes_nv_tensorrt_version(version, tag):
    assert cache_version_tag(version) == tag
    assert restamp("TRT-8600-EntropyCalibration2\ninput: 3c010204\n", version) == f"TRT-{tag}-EntropyCalibration2\ninput: 3c010204\n"


def test_write_and_read_round_trip_bit_exactly():
    scales = {"input": 0.0078125, "/conv1/Conv_output_0": 1.0, "odd": 1 / 3}
    text = write_calibration_cache(scales, "10.3.0")
    header, read = read_calibration_cache(text)
    assert header == "TRT-100300-EntropyCalibration2" and read == {k: struct.unpack(">f", struct.pack(">f", v))[0] for k, v in scales.items()}
    assert "/conv1/Conv_output_0: 3f800000" in text  # 1.0, big-endian float32
    with pytest.raises(InputError, match="not a TensorRT calibration cache header"):
        read_calibration_cache("hello\nx: 00000000\n")
