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
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeresnet.schema import FP32_MODEL_FILE, Manifest  # the FP32 model: the FP16 baseline engine's source
from edgeresnet.atomic import write_bytes_atomically
from edgeresnet.errors import CheckFailed
from edgeresnet.quant_scheme import CalibrationMethod, QuantScheme
from edgeresnet.runners import OnnxRuntimeRunner, Runner

if TYPE_CHECKING:
    import numpy as np

    from .parser_rules import CheckReport

from ..base import (DEVICE_SUPPORT_FILES, Backend, BuildContext, Target, TargetBuild, TargetDetails, cannot_run_here,
                    copy_device_support, copy_templates)
from ..capabilities import ModelCheckOption, ModelChecks
from .polygraphy import PolygraphyGolden
from .versions import (AGX_ORIN_JETPACKS, CALIBRATION_CACHE, DLA_CORES_BY_PART, ORIN_JETPACKS, THOR_JETPACKS,
                       XAVIER_JETPACKS, describe_dla_lines, dla_lines, dla_route, float_layer_precision, tensorrt_line,
                       tensorrt_versions)

MODEL_FILE = "model.onnx"
DLA_MODEL_FILE = "model.dla.onnx"  # the Q/DQ-free model the DLA calibration caches describe
BUNDLE_CONFIG = "bundle.json"  # what build_engine and run.py read
BUNDLE_FILES = ("build_engine.sh", "build_engine.py", "layer_report.py", "run.py", "README.md")  # from templates/
NOT_MEASURED = "TensorRT numerics not measured: no TensorRT here. INT8 accuracy is the same Q/DQ file run in ONNX Runtime"

TENSORRT_SCHEME = QuantScheme(
    name="tensorrt",
    description="explicit-quantization Q/DQ for TensorRT: symmetric int8, FP32 weights + Q/DQ, no int32 bias, "
                "Q/DQ on the shortcut input of residual Adds only (Conv+Add+ReLU fusion) and on the global pool's "
                "input (so the last block's fused layer also writes INT8)",
    # GlobalAveragePool: its input Q/DQ lets TensorRT end the last residual block with an INT8 output and gives
    # DLA a measured scale there instead of one inferred through the pool.
    op_types=("Conv", "Gemm", "Add", "GlobalAveragePool"),
    activation_signed=True,
    activation_symmetric=True,
    quantize_bias=False,
    float_weights_with_qdq=True,
    dedicated_qdq_per_consumer=True,
    unquantized_outputs_of=("Conv", "Gemm", "Add", "GlobalAveragePool"),
    residual_aware=True,
    calibration=CalibrationMethod.MINMAX,
    per_channel_axis={"Conv": 0},
)


@dataclass(frozen=True)
class JetsonDetails(TargetDetails):
    module: str
    compute_capability: str
    dla_cores: int  # the most any variant of the module has; the device scripts ask the module itself
    cpu: str
    jetpack_tensorrt: dict[str, tuple[str, ...]]  # JetPack -> the TensorRT lines it offers (sources: versions.SOURCES)
    dla_cores_by_part: dict[str, int]  # module part number -> DLA cores, where variants differ
    dla_lines: dict[str, str]  # TensorRT line -> DLA route, where this bundle offers DLA on the module

    @property
    def trt_versions(self) -> list[str]:
        return tensorrt_versions(self.jetpack_tensorrt)


def _jetson(name: str, module: str, cc: str, dla: int, cpu: str, jetpacks: dict[str, tuple[str, ...]], aliases=()) -> Target:
    lines = {d.line: d.route for d in dla_lines(module)}
    cores = f", DLA on TensorRT {describe_dla_lines(module)}" if lines else ", no DLA in this bundle"
    return Target(
        name=name, backend=TensorRTBackend.name, arch="aarch64", aliases=aliases,
        description=f"{module} GPU (sm_{cc.replace('.', '')}{cores}) via TensorRT, engine built on the device",
        details=JetsonDetails(module=module, compute_capability=cc, dla_cores=dla, cpu=cpu, jetpack_tensorrt=dict(jetpacks),
                              dla_cores_by_part=dict(DLA_CORES_BY_PART.get(module, {})), dla_lines=lines),
    )


# --- the bundle ---------------------------------------------------------------


@dataclass(frozen=True)
class BundleConfig:
    """bundle.json: what build_engine.sh (through bundle.env) and run.py read. Field order is the file's key order."""
    target: str
    module: str
    dla_cores: int
    model_file: str
    model_sha256: str
    input_name: str
    input_shape: list[int]
    dynamic_shapes: dict[str, list[int]] | None  # min, opt and max input shapes of a dynamic-batch engine
    trt_versions: list[str]
    fp32_model_file: str
    dla: dict[str, Any] | None  # None where this bundle offers no DLA on the module
    residual_blocks: list[dict[str, str]]  # what a GPU build must fuse into one INT8 Conv+Add+ReLU layer each
    preprocessing: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, folder: Path) -> "BundleConfig":
        return cls(**json.loads((folder / BUNDLE_CONFIG).read_text()))

    def shell_text(self, dla: DlaRecipe | None) -> str:
        """bundle.env: the same settings as shell variables."""
        values = {
            "TARGET": self.target, "MODULE": self.module, "DLA_CORES": self.dla_cores,
            "MODEL_FILE": self.model_file, "MODEL_SHA256": self.model_sha256, "INPUT_NAME": self.input_name,
            "INPUT_SHAPE": "x".join(str(d) for d in self.input_shape), "FP32_MODEL_FILE": self.fp32_model_file,
        }
        if dla is not None:
            values.update(dla.shell_values())
        if self.dynamic_shapes:
            values.update({f"{k.upper()}_SHAPE": "x".join(map(str, self.dynamic_shapes[k])) for k in ("min", "opt", "max")})
        lines = ["# Generated by edgeresnet: the bundle's settings for build_engine.sh."]
        lines += [f"{k}={shlex.quote(str(v))}" for k, v in values.items()]
        return "\n".join(lines) + "\n"


def _bundle_config(context: BuildContext, model_sha256: str, dla: DlaRecipe | None, blocks: list[dict[str, str]]) -> BundleConfig:
    target = context.target
    sample_shape = context.model.preprocessing.input_shape
    return BundleConfig(
        target=target.name,
        module=target.details.module,
        dla_cores=target.details.dla_cores,
        model_file=MODEL_FILE,
        model_sha256=model_sha256,
        input_name="input",
        input_shape=[context.batch, *sample_shape],
        dynamic_shapes=context.dynamic_batch.shapes(sample_shape) if context.dynamic_batch else None,
        trt_versions=target.details.trt_versions,
        fp32_model_file=FP32_MODEL_FILE,
        dla=asdict(dla) if dla else None,
        residual_blocks=blocks,
        preprocessing=context.model.preprocessing.to_dict(),
    )


@dataclass(frozen=True)
class DlaRecipe:
    """bundle.json's "dla": how the device scripts reach DLA on this module (and bundle.env's DLA settings)."""
    model_file: str | None  # the Q/DQ-free model of the calibration-cache route
    calibration_caches: dict[str, str]  # TensorRT line -> its cache
    fp16_layers: list[str]  # kept in float: pinned to FP16
    int8_layers: list[str]  # every scale known: pinned to INT8 (the qdq-translator's obey)
    lines: dict[str, str]  # TensorRT line -> route, where DLA runs on the module
    lines_text: str  # the lines as the refusals name them
    cores_by_part: dict[str, int]  # module part number -> DLA cores

    def shell_values(self) -> dict[str, str]:
        values = {
            "DLA_MODEL_FILE": self.model_file or "",
            "DLA_FP16_LAYERS": ",".join(f"{name}:fp16" for name in self.fp16_layers),
            "DLA_INT8_LAYERS": ",".join(f"{name}:int8" for name in self.int8_layers),
            "DLA_LINES": " ".join(f"{line}:{route}" for line, route in self.lines.items()),
            "DLA_LINES_TEXT": self.lines_text,
            "DLA_CORES_BY_PART": " ".join(f"{part}:{n}" for part, n in self.cores_by_part.items()),
        }
        # One cache per TensorRT release line; the script re-stamps its header with the device's exact version.
        values.update({f"DLA_CACHE_{line.replace('.', '_')}": path for line, path in self.calibration_caches.items()})
        return values


def _write_dla_recipe(folder: Path, int8_model, details: JetsonDetails, fallback: list[str]) -> tuple[DlaRecipe, list[str], dict]:
    """What DLA needs on each TensorRT line that has it on this module (versions.DLA_LINES): for the
    calibration-cache route the Q/DQ-free model and one cache per line; the strongly typed route
    (TensorRT 11.4.1, AGX Orin) builds the Q/DQ model.onnx itself."""
    from .calibration_cache import cache_version_tag, write_calibration_cache
    from .dla import dla_scales, int8_layers, qdq_free_model, tensors_without_scale

    free = qdq_free_model(int8_model)
    scales = dla_scales(int8_model, free)
    versions = {tensorrt_line(v): v for v in details.trt_versions if dla_route(details.module, v) == CALIBRATION_CACHE}
    caches = {line: f"calibration/TRT-{cache_version_tag(version)}.cache" for line, version in versions.items()}
    files = []
    if caches:
        write_bytes_atomically(folder / DLA_MODEL_FILE, free.SerializeToString())
        (folder / "calibration").mkdir(exist_ok=True)
        for line, version in versions.items():
            (folder / caches[line]).write_text(write_calibration_cache(scales, version))
        files = [DLA_MODEL_FILE, *sorted(caches.values())]
    recipe = DlaRecipe(model_file=DLA_MODEL_FILE if caches else None, calibration_caches=caches, fp16_layers=fallback,
                       int8_layers=int8_layers(free, scales) if caches else [], lines=dict(details.dla_lines),
                       lines_text=describe_dla_lines(details.module), cores_by_part=dict(details.dla_cores_by_part))
    report = {"model_file": recipe.model_file, "calibration_caches": sorted(caches.values()), "lines": recipe.lines,
              "tensor_scales": len(scales), "tensors_without_scale": tensors_without_scale(free, scales),
              "int8_layers": len(recipe.int8_layers),
              "refused_on": [v for v in details.trt_versions if dla_route(details.module, v) is None]}
    return recipe, files, report


def _float_layer_precisions(layers: list[str], trt_versions: list[str], module: str) -> dict:
    """What each layer kept in float computes in, per TensorRT version and device, against what the host measured."""
    per_version = {v: float_layer_precision(v) for v in trt_versions}
    per_version.update({f"{v} (DLA)": float_layer_precision(v, route) for v in trt_versions
                        if (route := dla_route(module, v)) is not None})
    return {
        "layers": {layer: per_version for layer in layers},
        "host_measured": "FP16: ONNX Runtime runs the same FP16-typed layers of model.onnx (FP16 weights, inputs and "
                         "outputs; its CPU kernels may accumulate in FP32, TensorRT's FP16 kernels may not)",
        "note": "layers kept in float are an FP16-typed region in model.onnx (FP32 weights cast to FP16), so every "
                "TensorRT version computes them in FP16, as the host measured" if layers else "no layer kept in float",
    }


class BundleEngineRunner(Runner):
    """The bundle's own run.py Engine, for hosts where TensorRT and a CUDA GPU exist."""

    def __init__(self, folder: Path):
        spec = importlib.util.spec_from_file_location("edgeresnet_bundle_run", folder / "run.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # The engine is host-specific: it goes to a temporary device folder, never beside the artifact being built.
        self.device_folder = tempfile.TemporaryDirectory(prefix="edgeresnet-engine-")
        self.engine = module.load_engine(device_dir=self.device_folder.name)
        self.static_batch = BundleConfig.read(folder).input_shape[0]

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


class TensorRTBackend(Backend, ModelChecks):
    name = "tensorrt"
    quant_scheme = TENSORRT_SCHEME
    dynamic_batch = True
    device_config = BUNDLE_CONFIG
    check_command = "inspect"
    check_help = "Check a Q/DQ ONNX model against TensorRT's parser rules, without TensorRT or a GPU."
    check_options = (ModelCheckOption("trt_versions", "--trt-version", "TensorRT version whose ONNX parser rules to check (repeatable).",
                                      ("8.5", "8.6", "10.3", "11")),)

    def targets(self) -> list[Target]:
        return [
            _jetson("jetson-orin-nano", "Jetson Orin Nano", "8.7", 0, "Cortex-A78AE", ORIN_JETPACKS),
            _jetson("jetson-orin-nx", "Jetson Orin NX", "8.7", 2, "Cortex-A78AE", ORIN_JETPACKS, aliases=("jetson",)),
            _jetson("jetson-agx-orin", "Jetson AGX Orin", "8.7", 2, "Cortex-A78AE", AGX_ORIN_JETPACKS),
            _jetson("jetson-xavier-nx", "Jetson Xavier NX", "7.2", 2, "Carmel (Armv8.2)", XAVIER_JETPACKS),
            _jetson("jetson-agx-xavier", "Jetson AGX Xavier", "7.2", 2, "Carmel (Armv8.2)", XAVIER_JETPACKS),
            # Facts and sources: versions.SOURCES["thor"] and ["7.1"].
            _jetson("jetson-agx-thor", "Jetson AGX Thor", "11.0", 0, "Neoverse-V3AE", THOR_JETPACKS),
        ]

    def build(self, context: BuildContext) -> TargetBuild:
        from .calibration_cache import activation_scales
        from .dla import float_layers, residual_blocks
        from .parser_rules import check_model
        from .precision import fp16_regions

        folder = context.folder
        trt_versions = context.target.details.trt_versions
        fallback = float_layers(context.int8_model, self.quant_scheme.op_types)
        shipped = fp16_regions(context.int8_model, fallback)  # the same precision on every TensorRT and on the host
        model_bytes = shipped.SerializeToString()
        checks = {v: check_model(shipped, v) for v in trt_versions}
        failed = {v: r for v, r in checks.items() if not r.passed}
        if failed:
            version, report = next(iter(failed.items()))
            raise CheckFailed(f"the Q/DQ model fails TensorRT {version}'s parser rules: {report.errors[0]} "
                              f"({len(report.errors)} errors); not shipping it")
        write_bytes_atomically(folder / MODEL_FILE, model_bytes)
        dla, dla_files, dla_details = None, [], None
        if context.target.details.dla_lines:
            dla, dla_files, dla_details = _write_dla_recipe(folder, context.int8_model, context.target.details, fallback)
        config = _bundle_config(context, hashlib.sha256(model_bytes).hexdigest(), dla, residual_blocks(context.int8_model))
        (folder / BUNDLE_CONFIG).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        (folder / "bundle.env").write_text(config.shell_text(dla))
        copy_templates(folder, __package__, BUNDLE_FILES)
        copy_device_support(folder)
        files = [MODEL_FILE, BUNDLE_CONFIG, "bundle.env", *BUNDLE_FILES, *DEVICE_SUPPORT_FILES, *dla_files]
        runner = _local_tensorrt_runner(folder)
        not_measured = ["engine build, fusion and latency on the Jetson itself: run build_engine.sh and run.py on the device"]
        if runner is None:
            runner = OnnxRuntimeRunner(folder / MODEL_FILE, optimize=False, label="Q/DQ numerics of the TensorRT model",
                                       any_batch=True)
            not_measured.insert(0, NOT_MEASURED)
        details = {
            "parser_checks": {v: r.to_dict() for v, r in checks.items()},
            "trt_versions": trt_versions,
            "activation_scales": len(activation_scales(context.int8_model)),
            "dla": dla_details,
            "float_layers": _float_layer_precisions(fallback, trt_versions, context.target.details.module),
        }
        graph = context.int8_model.graph
        polygraphy = PolygraphyGolden(MODEL_FILE, graph.input[0].name, graph.output[0].name, context.batch,
                                      context.dynamic_batch is not None)
        return TargetBuild(files=files, runner=runner, details=details, not_measured=not_measured, golden_tools=[polygraphy])

    def open_artifact(self, target: Target, folder: Path, manifest: Manifest) -> Runner:
        raise cannot_run_here(target, folder, " (build and run its engine on the Jetson: see its README.md)")

    def check_model_file(self, path: Path, trt_versions: tuple[str, ...] = ()) -> list[CheckReport]:
        from .parser_rules import check_file

        return check_file(str(path), list(trt_versions))
