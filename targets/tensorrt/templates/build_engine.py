#!/usr/bin/env python3
"""Build this bundle's TensorRT engine on the Jetson through TensorRT's Python API.

The same engines, build records, cache keys, timing caches and layer report as build_engine.sh:

    python3 build_engine.py [--dla N | --fp16-baseline] [--force] [--device-dir DIR]

Everything it writes goes to the device folder (default: <bundle>.device beside the
bundle; --device-dir DIR elsewhere): the bundle itself stays as shipped, so
`edgeresnet verify` keeps passing. Exit codes: 0 built (or up to date), 2 bad
option, 3 what the device lacks (TensorRT, a DLA core, DLA on this TensorRT line).
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
sys.dont_write_bytecode = True  # no __pycache__ in the bundle: `edgeresnet verify` refuses unlisted files

EXIT_MISSING = 3
BUILD_RECORD_SCHEMA = "edgeresnet.engine-build/1"
DEVICE_TREE = os.environ.get("EDGERESNET_DEVICE_TREE", "/proc/device-tree")

try:
    import layer_report
    from device_io import add_device_dir_argument, device_folder
except ImportError as exc:
    sys.stderr.write(f"build_engine.py: the {exc.name} Python package is missing (JetPack: apt install python3-numpy)\n")
    sys.exit(EXIT_MISSING)


def refuse(message: str, code: int = EXIT_MISSING):
    """One line on stderr and the exit code; nothing was built."""
    sys.stderr.write(f"build_engine.py: {message}\n")
    raise SystemExit(code)


def load_config() -> dict:
    return json.loads((HERE / "bundle.json").read_text())


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9.]", "-", text.lower())).strip("-")


def jetson_model() -> str:
    if os.environ.get("JETSON_MODEL"):
        return os.environ["JETSON_MODEL"]
    try:
        return Path(DEVICE_TREE, "model").read_bytes().rstrip(b"\0").decode()
    except OSError:
        return "unknown-module"


def module_part() -> str | None:
    """The module's part number from the device tree ('p3767-0001' on an 8 GB Orin NX), None when unreadable."""
    try:
        compatible = Path(DEVICE_TREE, "compatible").read_bytes().decode(errors="replace")
    except OSError:
        return None
    parts = re.findall(r"nvidia,(p\d{4}-\d{4})", compatible)
    return parts[-1] if parts else None  # carrier board first ("p3768-0000+p3767-0001"), module last


def l4t_version() -> str:
    if os.environ.get("L4T_VERSION"):
        return os.environ["L4T_VERSION"]
    try:
        match = re.search(r"^# R(\d+) \(release\), REVISION: ([\d.]+)", Path("/etc/nv_tegra_release").read_text(), re.M)
    except OSError:
        return "unknown"
    return f"{match.group(1)}.{match.group(2)}" if match else "unknown"


def engine_path(trt_version: str, config: dict, dla_core: int | None = None, fp16_baseline: bool = False,
                device_dir: str | Path | None = None) -> Path:
    """<device folder>/engines/<module>_L4T-<release>_TRT-<version>_<model sha256[:16]>[_dlaN|_fp16].engine, as build_engine.sh names it."""
    key = f"{_slug(jetson_model())}_L4T-{_slug(l4t_version())}_TRT-{trt_version}_{config['model_sha256'][:16]}"
    suffix = f"_dla{dla_core}" if dla_core is not None else "_fp16" if fp16_baseline else ""
    return device_folder(HERE, device_dir) / "engines" / f"{key}{suffix}.engine"


def build_record_path(engine: Path) -> Path:
    return engine.with_suffix(".build.json")


def read_build_record(engine: Path) -> dict | None:
    """How the engine was built (DLA core, TensorRT version, precision, route); None when absent or unreadable."""
    try:
        record = json.loads(build_record_path(engine).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("schema") == BUILD_RECORD_SCHEMA else None


def version_tag(trt_version: str) -> str:
    """NV_TENSORRT_VERSION as a calibration cache header spells it: '8.5.2' -> '8502', '10.16.1' -> '101601'."""
    major, minor, patch = (int(p) for p in (trt_version.split(".") + ["0", "0"])[:3])
    return f"{major}{minor}{patch:02d}" if major < 10 else f"{major}{minor:02d}{patch:02d}"


def tensorrt_line(trt_version: str) -> str:
    major, minor = (trt_version.split(".") + ["0"])[:2]
    return f"{int(major)}.{int(minor)}"


def dla_route(trt_version: str, config: dict) -> str:
    """The bundle's DLA route on this TensorRT line, or a refusal naming the lines that have DLA on this module."""
    dla = config.get("dla")
    if not dla:
        refuse(f"this bundle offers no DLA on {config['module']} (no TensorRT line has DLA there); build for the GPU")
    route = dla["lines"].get(tensorrt_line(trt_version))
    if route is None:
        refuse(f"TensorRT {trt_version} has no DLA on {config['module']}; TensorRT lines with DLA there: "
               f"{dla['lines_text']}. Build for the GPU, or use one of those lines")
    return route


def dla_cores_here(config: dict, builder) -> int:
    """DLA cores of this very module: TensorRT's own count, else the part number in the device tree."""
    cores = getattr(builder, "num_DLA_cores", None)
    if isinstance(cores, int):
        return cores
    by_part = (config.get("dla") or {}).get("cores_by_part", {})
    part = module_part()
    return by_part.get(part, min(by_part.values(), default=config["dla_cores"]))


def dla_calibration_cache(trt_version: str, config: dict) -> bytes:
    """This bundle's cache for the TensorRT line, its header re-stamped with the exact version (patch included)."""
    cache = config["dla"]["calibration_caches"].get(tensorrt_line(trt_version))
    if cache is None:
        refuse(f"no DLA calibration cache for TensorRT {tensorrt_line(trt_version)} in this bundle; recompile for this JetPack")
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


def precision_of(major: int, route: str, fp16_baseline: bool) -> str:
    """The precision mode of a build, as its build record and run.py's device report state it."""
    if fp16_baseline:
        return "FP16 (--fp16 baseline of the FP32 model)"
    if route == "calibration-cache":
        return "implicit INT8 from the calibration cache (--int8 --fp16, INT8 layers pinned with obey)"
    if major >= 10:
        return "strongly typed (explicit Q/DQ)"
    return "--int8 --fp16 (explicit Q/DQ)"


def write_build_record(engine: Path, record: dict) -> None:
    partial = build_record_path(engine).with_name(build_record_path(engine).name + ".partial")
    partial.write_text(json.dumps({"schema": BUILD_RECORD_SCHEMA, "engine": engine.name, **record}, indent=2) + "\n")
    partial.replace(build_record_path(engine))


def _pin_layers(trt, network, builder_config, config: dict) -> None:
    """INT8 layers (those with every scale) and layers kept in float pinned, obeyed: NVIDIA's qdq-translator recipe."""
    pins = {name: trt.DataType.INT8 for name in config["dla"].get("int8_layers", [])}
    pins.update({name: trt.DataType.HALF for name in config["dla"].get("fp16_layers", [])})
    if not pins:
        return
    builder_config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in pins:
            layer.precision = pins[layer.name]


def build(dla_core: int | None = None, force: bool = False, fp16_baseline: bool = False,
          device_dir: str | Path | None = None) -> Path:
    import tensorrt as trt

    config = load_config()
    version = os.environ.get("TRT_VERSION", trt.__version__)
    major = int(version.split(".")[0])
    if fp16_baseline and major >= 11:
        refuse(f"TensorRT {version} removed the FP16 flag; an FP16 baseline needs an FP16-typed ONNX")
    route = dla_route(version, config) if dla_core is not None else "gpu"
    target = engine_path(version, config, dla_core, fp16_baseline, device_dir)
    if target.is_file() and target.stat().st_size and read_build_record(target) and not force:
        return target

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if dla_core is not None:
        cores = dla_cores_here(config, builder)
        if not 0 <= dla_core < cores:
            have = {0: "no DLA core", 1: "1 DLA core (0)"}.get(cores, f"{cores} DLA cores (0..{cores - 1})")
            refuse(f"this {config['module']} has {have}; --dla {dla_core} is not one of them")
    cache = dla_calibration_cache(version, config) if route == "calibration-cache" else None
    model_file = (config["dla"]["model_file"] if route == "calibration-cache" else config["fp32_model_file"] if fp16_baseline
                  else config["model_file"])

    flags = 0
    strongly_typed = major >= 10 and route != "calibration-cache" and not fp16_baseline
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    elif strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(HERE / model_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        refuse(f"TensorRT's ONNX parser rejected the model: {errors}", 1)

    builder_config = builder.create_builder_config()
    if fp16_baseline:
        builder_config.set_flag(trt.BuilderFlag.FP16)
    elif not strongly_typed and major < 11:
        builder_config.set_flag(trt.BuilderFlag.INT8)
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if dla_core is not None:
        builder_config.default_device_type = trt.DeviceType.DLA
        builder_config.DLA_core = dla_core
        builder_config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if route == "calibration-cache":
        builder_config.int8_calibrator = _cache_calibrator(trt, cache)
        _pin_layers(trt, network, builder_config, config)
    builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    dynamic = config.get("dynamic_shapes")
    if dynamic:
        profile = builder.create_optimization_profile()
        # DLA needs static shapes (min = opt = max): the optimal batch of the profile.
        low, high = (dynamic["opt"], dynamic["opt"]) if dla_core is not None else (dynamic["min"], dynamic["max"])
        profile.set_shape(config["input_name"], low, dynamic["opt"], high)
        builder_config.add_optimization_profile(profile)
        if route == "calibration-cache":
            builder_config.set_calibration_profile(profile)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A timing cache is valid only for the TensorRT version that wrote it (ITimingCache docs).
    timing_file = target.parent / f"timing-TRT-{version}.cache"
    timing = builder_config.create_timing_cache(timing_file.read_bytes() if timing_file.is_file() else b"")
    if not builder_config.set_timing_cache(timing, ignore_mismatch=False):
        print(f"build_engine.py: TensorRT {version} rejected {timing_file.name}; building without it", file=sys.stderr)
        builder_config.set_timing_cache(builder_config.create_timing_cache(b""), ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        refuse("TensorRT failed to build the engine (see the log above)", 1)
    partial = target.with_suffix(".engine.partial")
    partial.write_bytes(bytes(serialized))
    partial.replace(target)
    timing_file.write_bytes(bytes(builder_config.get_timing_cache().serialize()))
    write_build_record(target, {"built_by": "build_engine.py", "tensorrt": version, "route": route, "dla_core": dla_core,
                                "precision": precision_of(major, route, fp16_baseline), "model_file": model_file,
                                "model_sha256": config["model_sha256"], "module": jetson_model(), "l4t": l4t_version()})

    runtime = trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = dla_core
    engine = runtime.deserialize_cuda_engine(bytes(serialized))
    inspector = engine.create_engine_inspector()
    layers = target.with_suffix(".layers.json")
    layers.write_text(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    print(layer_report.describe(layer_report.report(layers, dla_core is not None, config)))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--dla", type=int, default=None, help="build for this DLA core, with GPU fallback")
    target.add_argument("--fp16-baseline", action="store_true", help="build the FP32 model as an FP16 engine")
    parser.add_argument("--force", action="store_true", help="rebuild even when a cached engine exists")
    add_device_dir_argument(parser)
    args = parser.parse_args()
    if args.dla is not None and args.dla < 0:
        parser.error("--dla takes a core number, 0 or more")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        refuse("the tensorrt Python package is missing (JetPack: apt install python3-libnvinfer)")
    print(f"built {build(args.dla, args.force, args.fp16_baseline, args.device_dir)}")


if __name__ == "__main__":
    main()
