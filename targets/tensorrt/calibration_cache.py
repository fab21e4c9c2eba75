"""TensorRT's calibration cache format, written from the Q/DQ model's activation scales.

First line `TRT-<version>-EntropyCalibration2`, then `tensor_name: <8 hex digits>`,
the big-endian float32 scale (amax / 127). `<version>` is NV_TENSORRT_VERSION:
major*1000 + minor*100 + patch before TensorRT 10 (8.2.3 -> 8203, NVIDIA/TensorRT#2036),
major*10000 + minor*100 + patch from 10 on (NvInferVersion.h NV_TENSORRT_VERSION_INT;
10.3.0 -> 100300, the number trtexec prints as `[TensorRT v100300]`). TensorRT 10
rejects a cache stamped for another version ("Calibration table does not match
calibrator algorithm type" then an attempt to recalibrate without data: reported
with a TRT-8600 cache on 10.3, NVIDIA/Deep-Learning-Accelerator-SW#26), and the
patch digit is part of the number, so the device scripts re-stamp the header with
the exact version they find (`restamp`) instead of trusting the patch in versions.py.
A cache is used only for a Q/DQ-free model: with Q/DQ present TensorRT ignores it.
"""

from __future__ import annotations

import struct

import onnx
from onnx import numpy_helper

from edgeresnet.errors import InputError


def cache_version_tag(trt_version: str) -> str:
    """'8.5.2' -> '8502', '10.3.0' -> '100300': how TensorRT stamps its calibration caches."""
    major, minor, patch = (int(p) for p in (trt_version.split(".") + ["0", "0"])[:3])
    return f"{major}{minor}{patch:02d}" if major < 10 else f"{major}{minor:02d}{patch:02d}"


def restamp(text: str, trt_version: str) -> str:
    """The same cache with its header naming `trt_version` (build_engine.sh/.py do this on the device)."""
    header, _, rest = text.partition("\n")
    _, _, algorithm = header.split("-", 2)
    return f"TRT-{cache_version_tag(trt_version)}-{algorithm}\n{rest}"


def activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    """Tensor name -> per-tensor scale of every quantized activation (the float tensor before its QuantizeLinear)."""
    inits = {i.name: i for i in model.graph.initializer}
    scales: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            scale = numpy_helper.to_array(inits[node.input[1]])
            if scale.size == 1:
                scales[node.input[0]] = float(scale)
    return dict(sorted(scales.items()))


def write_calibration_cache(scales: dict[str, float], trt_version: str) -> str:
    """The cache text TensorRT `trt_version` reads: `tensor: scale` lines in name order (deterministic)."""
    lines = [f"TRT-{cache_version_tag(trt_version)}-EntropyCalibration2"]
    lines += [f"{name}: {struct.pack('>f', scale).hex()}" for name, scale in scales.items()]
    return "\n".join(lines) + "\n"


def read_calibration_cache(text: str) -> tuple[str, dict[str, float]]:
    header, *rows = text.strip().splitlines()
    if not (header.startswith("TRT-") and header.endswith("Calibration2")):
        raise InputError(f"not a TensorRT calibration cache header: {header!r}")
    scales = {}
    for row in rows:
        name, _, value = row.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
    return header, scales
