"""Jetson GPUs through TensorRT: a Q/DQ model TensorRT accepts, and what the device needs to build its engine.

A TensorRT engine is tied to the TensorRT version and the exact GPU, and a
Jetson engine can only be built on the Jetson. So the artifact is the bundle:
the explicit-quantization ONNX model, scripts that build and run the engine on
the device, TensorRT-format calibration caches, and a README. Here, the model is
checked against the parser's rules for every TensorRT version the profile
supports, and its Q/DQ numerics are measured in ONNX Runtime, labelled as such.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shlex
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgeresnet.atomic import write_bytes_atomically
from edgeresnet.errors import CheckFailed, InputError
from edgeresnet.runners import OnnxRuntimeRunner, Runner

from . import TargetProfile, register
from .base import DEVICE_SUPPORT_FILES, BuildContext, TargetBuild, copy_device_support, copy_templates
from .tensorrt_rules import check_model

MODEL_FILE = "model.onnx"
BUNDLE_FILES = ("build_engine.sh", "build_engine.py", "run.py", "README.md")  # from templates/jetson
NOT_MEASURED = "TensorRT numerics not measured: no TensorRT here. INT8 accuracy is the same Q/DQ file run in ONNX Runtime"

# JetPack -> TensorRT, as NVIDIA ships them.
JETPACK_TENSORRT = {"5.1": "8.5.2", "6.0": "8.6.2", "6.1": "10.3.0", "6.2": "10.3.0", "7.0": "10.13.0", "7.1": "11.0.0"}
ORIN_JETPACKS = ("5.1", "6.0", "6.1", "6.2", "7.0", "7.1")
XAVIER_JETPACKS = ("5.1",)  # JetPack 6 dropped Xavier


def _jetson(name: str, module: str, cc: str, dla: int, cpu: str, jetpacks: tuple[str, ...], aliases=()) -> TargetProfile:
    return register(TargetProfile(
        name=name, backend="tensorrt", quant_profile="tensorrt", arch="aarch64",
        description=f"{module} GPU (sm_{cc.replace('.', '')}{f', {dla} DLA cores' if dla else ', no DLA'}) via TensorRT, engine built on the device",
        details={
            "module": module, "compute_capability": cc, "dla_cores": dla, "cpu": cpu,
            "jetpack_tensorrt": {jp: JETPACK_TENSORRT[jp] for jp in jetpacks},
        },
    ), aliases)


_jetson("jetson-orin-nano", "Jetson Orin Nano", "8.7", 0, "Cortex-A78AE", ORIN_JETPACKS)
_jetson("jetson-orin-nx", "Jetson Orin NX", "8.7", 2, "Cortex-A78AE", ORIN_JETPACKS, aliases=("jetson",))
_jetson("jetson-agx-orin", "Jetson AGX Orin", "8.7", 2, "Cortex-A78AE", ORIN_JETPACKS)
_jetson("jetson-xavier-nx", "Jetson Xavier NX", "7.2", 2, "Carmel (Armv8.2)", XAVIER_JETPACKS)
_jetson("jetson-agx-xavier", "Jetson AGX Xavier", "7.2", 2, "Carmel (Armv8.2)", XAVIER_JETPACKS)


def trt_versions(profile: TargetProfile) -> list[str]:
    return sorted(set(profile.details["jetpack_tensorrt"].values()), key=lambda v: tuple(map(int, v.split("."))))


# --- calibration cache --------------------------------------------------------


def cache_version_tag(trt_version: str) -> str:
    """'8.5.2' -> '8502', '10.3.0' -> '100300': how TensorRT stamps its calibration caches."""
    major, minor, patch = (int(p) for p in (trt_version.split(".") + ["0", "0"])[:3])
    return f"{major}{minor}{patch:02d}" if major < 10 else f"{major}{minor:02d}{patch:02d}"


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


# --- the bundle ---------------------------------------------------------------


def _bundle_config(context: BuildContext, model_sha256: str) -> dict:
    profile = context.profile
    return {
        "target": profile.name,
        "module": profile.details["module"],
        "dla_cores": profile.details["dla_cores"],
        "model_file": MODEL_FILE,
        "model_sha256": model_sha256,
        "input_name": "input",
        "input_shape": [context.batch, *context.model.preprocessing.input_shape],
        "dynamic_shapes": context.dynamic_batch.shapes(context.model.preprocessing.input_shape) if context.dynamic_batch else None,
        "trt_versions": trt_versions(profile),
        "preprocessing": context.model.preprocessing.to_dict(),
    }


def _shell_config(config: dict) -> str:
    shape = "x".join(str(d) for d in config["input_shape"])
    values = {
        "TARGET": config["target"], "MODULE": config["module"], "DLA_CORES": config["dla_cores"],
        "MODEL_FILE": config["model_file"], "MODEL_SHA256": config["model_sha256"], "INPUT_NAME": config["input_name"],
        "INPUT_SHAPE": shape,
    }
    dynamic = config.get("dynamic_shapes")
    if dynamic:
        values.update({f"{k.upper()}_SHAPE": "x".join(map(str, dynamic[k])) for k in ("min", "opt", "max")})
    lines = ["# Generated by edgeresnet: the bundle's settings for build_engine.sh."]
    lines += [f"{k}={shlex.quote(str(v))}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


class BundleEngineRunner(Runner):
    """The bundle's own run.py Engine, for hosts where TensorRT and a CUDA GPU exist."""

    def __init__(self, folder: Path):
        spec = importlib.util.spec_from_file_location("edgeresnet_bundle_run", folder / "run.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.engine = module.load_engine()
        self.static_batch = json.loads((folder / "bundle.json").read_text())["input_shape"][0]

    @property
    def runtime(self) -> str:
        return f"tensorrt {self.engine.trt.__version__} (engine built on this host)"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.engine.infer(batch)


def _local_tensorrt_runner(folder: Path) -> Runner | None:
    """TensorRT on this host when it is installed and can build for a GPU; None otherwise (as here)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        return BundleEngineRunner(folder)
    except (Exception, SystemExit) as exc:  # no GPU, no CUDA: fall back to the Q/DQ numerics in ORT
        print(f"edgeresnet: TensorRT is installed but building the engine here failed ({exc}); measuring Q/DQ numerics in ONNX Runtime", file=sys.stderr)
        return None


def preflight(profile: TargetProfile) -> None:
    """Nothing to check: the build needs only what edgeresnet itself installs."""


def build(context: BuildContext) -> TargetBuild:
    folder = context.folder
    model_bytes = context.int8_model.SerializeToString()
    checks = {v: check_model(context.int8_model, v) for v in trt_versions(context.profile)}
    failed = {v: r for v, r in checks.items() if not r.passed}
    if failed:
        version, report = next(iter(failed.items()))
        raise CheckFailed(f"the Q/DQ model fails TensorRT {version}'s parser rules: {report.errors[0]} "
                          f"({len(report.errors)} errors); not shipping it")
    write_bytes_atomically(folder / MODEL_FILE, model_bytes)
    config = _bundle_config(context, hashlib.sha256(model_bytes).hexdigest())
    (folder / "bundle.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "bundle.env").write_text(_shell_config(config))
    copy_templates(folder, "jetson", BUNDLE_FILES)
    copy_device_support(folder)
    scales = activation_scales(context.int8_model)
    cache_files = []
    (folder / "calibration").mkdir(exist_ok=True)
    for version in trt_versions(context.profile):
        if int(version.split(".")[0]) >= 11:
            continue  # TensorRT 11 removed implicit calibration
        name = f"calibration/TRT-{cache_version_tag(version)}.cache"
        (folder / name).write_text(write_calibration_cache(scales, version))
        cache_files.append(name)
    files = [MODEL_FILE, "bundle.json", "bundle.env", *BUNDLE_FILES, *DEVICE_SUPPORT_FILES, *cache_files]
    runner = _local_tensorrt_runner(folder)
    not_measured = ["engine build, fusion and latency on the Jetson itself: run build_engine.sh and run.py on the device"]
    if runner is None:
        runner = OnnxRuntimeRunner(folder / MODEL_FILE, optimize=False, label="Q/DQ numerics of the TensorRT model")
        not_measured.insert(0, NOT_MEASURED)
    else:
        shutil.rmtree(folder / "engines", ignore_errors=True)  # device-specific: never shipped
    details = {
        "parser_checks": {v: r.to_dict() for v, r in checks.items()},
        "trt_versions": trt_versions(context.profile),
        "calibration_caches": cache_files,
        "activation_scales": len(scales),
    }
    return TargetBuild(
        files=files,
        runner=runner,
        details=details,
        not_measured=not_measured,
    )
