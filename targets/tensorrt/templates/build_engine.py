#!/usr/bin/env python3
"""Build this bundle's TensorRT engine on the Jetson through TensorRT's Python API.

The same engines, cache keys, timing caches and layer report as build_engine.sh:

    python3 build_engine.py [--dla N | --fp16-baseline] [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import layer_report  # noqa: E402


def load_config() -> dict:
    return json.loads((HERE / "bundle.json").read_text())


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9.]", "-", text.lower())).strip("-")


def jetson_model() -> str:
    if os.environ.get("JETSON_MODEL"):
        return os.environ["JETSON_MODEL"]
    try:
        return Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode()
    except OSError:
        return "unknown-module"


def l4t_version() -> str:
    if os.environ.get("L4T_VERSION"):
        return os.environ["L4T_VERSION"]
    try:
        match = re.search(r"^# R(\d+) \(release\), REVISION: ([\d.]+)", Path("/etc/nv_tegra_release").read_text(), re.M)
    except OSError:
        return "unknown"
    return f"{match.group(1)}.{match.group(2)}" if match else "unknown"


def engine_path(trt_version: str, config: dict, dla_core: int | None = None, fp16_baseline: bool = False) -> Path:
    """engines/<module>_L4T-<release>_TRT-<version>_<model sha256[:16]>[_dlaN|_fp16].engine, as build_engine.sh names it."""
    key = f"{_slug(jetson_model())}_L4T-{_slug(l4t_version())}_TRT-{trt_version}_{config['model_sha256'][:16]}"
    suffix = f"_dla{dla_core}" if dla_core is not None else "_fp16" if fp16_baseline else ""
    return HERE / "engines" / f"{key}{suffix}.engine"


def version_tag(trt_version: str) -> str:
    """NV_TENSORRT_VERSION as a calibration cache header spells it: '8.5.2' -> '8502', '10.16.1' -> '101601'."""
    major, minor, patch = (int(p) for p in (trt_version.split(".") + ["0", "0"])[:3])
    return f"{major}{minor}{patch:02d}" if major < 10 else f"{major}{minor:02d}{patch:02d}"


def dla_calibration_cache(trt_version: str, config: dict) -> bytes:
    """This bundle's cache for the TensorRT line, its header re-stamped with the exact version (patch included)."""
    major, minor = trt_version.split(".")[:2]
    if int(major) >= 11:
        raise SystemExit(f"build_engine.py: TensorRT {trt_version} has no calibrators, so this bundle's DLA recipe "
                         "(implicit INT8) cannot run; DLA is back only from TensorRT 11.4.1 on AGX Orin with JetPack "
                         ">= 7.2.2, strongly typed. Build for the GPU, or use TensorRT 8.5-10.x")
    cache = (config.get("dla") or {}).get("calibration_caches", {}).get(f"{int(major)}.{int(minor)}")
    if cache is None:
        raise SystemExit(f"build_engine.py: no DLA calibration cache for TensorRT {major}.{minor} in this bundle; recompile for this JetPack")
    header, _, rest = (HERE / cache).read_text().partition("\n")
    return f"TRT-{version_tag(trt_version)}-{header.split('-', 2)[2]}\n{rest}".encode()


def _cache_calibrator(trt, cache: bytes):
    """An entropy calibrator that never sees data: TensorRT takes every scale from the cache."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None

        def read_calibration_cache(self):
            return cache

        def write_calibration_cache(self, data):
            return None

    return CacheCalibrator()


def build(dla_core: int | None = None, force: bool = False, fp16_baseline: bool = False) -> Path:
    import tensorrt as trt

    config = load_config()
    version = os.environ.get("TRT_VERSION", trt.__version__)
    major = int(version.split(".")[0])
    target = engine_path(version, config, dla_core, fp16_baseline)
    if target.is_file() and target.stat().st_size and not force:
        return target
    if dla_core is not None and not 0 <= dla_core < config["dla_cores"]:
        raise SystemExit(f"build_engine.py: {config['module']} has DLA cores 0..{config['dla_cores'] - 1}; got {dla_core}")
    if fp16_baseline and major >= 11:
        raise SystemExit(f"build_engine.py: TensorRT {version} removed the FP16 flag; an FP16 baseline needs an FP16-typed ONNX")
    cache = dla_calibration_cache(version, config) if dla_core is not None else None
    model_file = config["dla"]["model_file"] if dla_core is not None else config["fp32_model_file"] if fp16_baseline else config["model_file"]

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = major >= 10 and dla_core is None and not fp16_baseline
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    elif strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(HERE / model_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SystemExit(f"build_engine.py: TensorRT's ONNX parser rejected the model: {errors}")

    builder_config = builder.create_builder_config()
    if fp16_baseline:
        builder_config.set_flag(trt.BuilderFlag.FP16)
    elif not strongly_typed and major < 11:
        builder_config.set_flag(trt.BuilderFlag.INT8)
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if dla_core is not None:
        builder_config.int8_calibrator = _cache_calibrator(trt, cache)
        builder_config.default_device_type = trt.DeviceType.DLA
        builder_config.DLA_core = dla_core
        builder_config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        fp16_layers = set(config["dla"].get("fp16_layers", []))
        if fp16_layers:
            builder_config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
            for i in range(network.num_layers):
                if network.get_layer(i).name in fp16_layers:
                    network.get_layer(i).precision = trt.DataType.HALF
    builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    dynamic = config.get("dynamic_shapes")
    if dynamic:
        profile = builder.create_optimization_profile()
        # DLA needs static shapes (min = opt = max): the optimal batch of the profile.
        low, high = (dynamic["opt"], dynamic["opt"]) if dla_core is not None else (dynamic["min"], dynamic["max"])
        profile.set_shape(config["input_name"], low, dynamic["opt"], high)
        builder_config.add_optimization_profile(profile)
        if dla_core is not None:
            builder_config.set_calibration_profile(profile)
    # A timing cache is valid only for the TensorRT version that wrote it (ITimingCache docs).
    timing_file = HERE / "engines" / f"timing-TRT-{version}.cache"
    timing = builder_config.create_timing_cache(timing_file.read_bytes() if timing_file.is_file() else b"")
    if not builder_config.set_timing_cache(timing, ignore_mismatch=False):
        print(f"build_engine.py: TensorRT {version} rejected {timing_file.name}; building without it", file=sys.stderr)
        builder_config.set_timing_cache(builder_config.create_timing_cache(b""), ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise SystemExit("build_engine.py: TensorRT failed to build the engine (see the log above)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".engine.partial")
    partial.write_bytes(bytes(serialized))
    partial.replace(target)
    timing_file.write_bytes(bytes(builder_config.get_timing_cache().serialize()))

    engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(serialized))
    inspector = engine.create_engine_inspector()
    layers = target.with_suffix(".layers.json")
    layers.write_text(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    print(layer_report.describe(layer_report.report(layers, dla_core is not None, config)))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--dla", type=int, default=None, help="build the DLA recipe for this core, with GPU fallback")
    target.add_argument("--fp16-baseline", action="store_true", help="build the FP32 model as an FP16 engine")
    parser.add_argument("--force", action="store_true", help="rebuild even when a cached engine exists")
    args = parser.parse_args()
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        sys.exit("build_engine.py: the tensorrt Python package is missing (JetPack: apt install python3-libnvinfer)")
    print(f"built {build(args.dla, args.force, args.fp16_baseline)}")


if __name__ == "__main__":
    main()
