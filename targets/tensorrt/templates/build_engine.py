#!/usr/bin/env python3
"""Build this bundle's TensorRT engine on the Jetson through TensorRT's Python API.

The same engine, cache key, timing cache and layer information as build_engine.sh:

    python3 build_engine.py [--dla N] [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


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


def engine_path(trt_version: str, config: dict, dla_core: int | None = None) -> Path:
    """engines/<module>_L4T-<release>_TRT-<version>_<model sha256[:16]>[_dlaN].engine, as build_engine.sh names it."""
    key = f"{_slug(jetson_model())}_L4T-{_slug(l4t_version())}_TRT-{trt_version}_{config['model_sha256'][:16]}"
    return HERE / "engines" / f"{key}{f'_dla{dla_core}' if dla_core is not None else ''}.engine"


def build(dla_core: int | None = None, force: bool = False) -> Path:
    import tensorrt as trt

    config = load_config()
    version = os.environ.get("TRT_VERSION", trt.__version__)
    major = int(version.split(".")[0])
    target = engine_path(version, config, dla_core)
    if target.is_file() and target.stat().st_size and not force:
        return target
    if dla_core is not None and not 0 <= dla_core < config["dla_cores"]:
        raise SystemExit(f"build_engine.py: {config['module']} has DLA cores 0..{config['dla_cores'] - 1}; got {dla_core}")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = major >= 10 and dla_core is None
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    elif strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(HERE / config["model_file"])):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SystemExit(f"build_engine.py: TensorRT's ONNX parser rejected the model: {errors}")

    builder_config = builder.create_builder_config()
    if not strongly_typed and major < 11:
        builder_config.set_flag(trt.BuilderFlag.INT8)
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if dla_core is not None:
        builder_config.default_device_type = trt.DeviceType.DLA
        builder_config.DLA_core = dla_core
        builder_config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    dynamic = config.get("dynamic_shapes")
    if dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape(config["input_name"], dynamic["min"], dynamic["opt"], dynamic["max"])
        builder_config.add_optimization_profile(profile)
    timing_file = HERE / "engines" / "timing.cache"
    timing = builder_config.create_timing_cache(timing_file.read_bytes() if timing_file.is_file() else b"")
    builder_config.set_timing_cache(timing, ignore_mismatch=False)

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
    layers = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    target.with_suffix(".layers.json").write_text(layers)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dla", type=int, default=None, help="build for this DLA core, with GPU fallback")
    parser.add_argument("--force", action="store_true", help="rebuild even when a cached engine exists")
    args = parser.parse_args()
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        sys.exit("build_engine.py: the tensorrt Python package is missing (JetPack: apt install python3-libnvinfer)")
    print(f"built {build(args.dla, args.force)}")


if __name__ == "__main__":
    main()
