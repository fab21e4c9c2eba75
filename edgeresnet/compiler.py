"""`compile`: export -> calibrate -> quantize -> target build -> validate -> report, into one artifact folder.

The accuracy in the report is measured on the files that ship (for the
targets this machine can run), against the PyTorch FP32 model on the same images.
Everything is built in a staging folder beside the destination and renamed into
place only when complete.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeresnet import DEFAULT_MODEL
from edgeresnet.artifact import pack, toolchain_versions, write_manifest
from edgeresnet.atomic import atomic_directory, write_bytes_atomically
from edgeresnet.errors import InputError
from edgeresnet.calibration import Dataset, sample_indices
from edgeresnet.evaluate import Evaluation, accuracy, compare, evaluate
from edgeresnet.export import export_onnx_model
from edgeresnet.models import load_model
from edgeresnet.quantize import CalibrationMethod, QuantizeConfig, quantize
from edgeresnet.report import REPORT_SCHEMA, render_html, summary_lines
from edgeresnet.runners import TorchRunner
from edgeresnet.steps import BUILTIN_CALIBRATION, BUILTIN_EVALUATION, resolve_data
from edgeresnet.sensitivity import fall_back_until, layer_sensitivity
from edgeresnet.targets import BACKEND_MODULES, TargetProfile, get_target
from edgeresnet.targets.base import BuildContext, DynamicBatch, TargetBuild


@dataclass(frozen=True)
class CompileOptions:
    target: str
    model: str = DEFAULT_MODEL
    weights: str | None = None
    calib: str | None = None  # default: the built-in training split, for models trained on it
    eval: str | None = None  # default: the built-in test split (all 10,000 images)
    method: CalibrationMethod | None = None  # None: the target's quantization profile chooses
    calib_samples: int = 512
    eval_samples: int | None = None
    seed: int = 0
    max_drop: float | None = None
    batch: int = 1
    dynamic_batch: DynamicBatch | None = None  # instead of a static batch (ONNX Runtime and TensorRT targets)
    emulated_samples: int = 1000
    records: str | None = None  # tuning records of `edgeresnet tune` (TVM targets)
    out: str | None = None
    force: bool = False
    tar: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method is not None:
            object.__setattr__(self, "method", CalibrationMethod.parse(self.method))
        if self.calib_samples < 1:
            raise InputError(f"--calib-samples must be at least 1, not {self.calib_samples}")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise InputError(f"--eval-samples must be at least 1, not {self.eval_samples}")
        if self.max_drop is not None and not (self.max_drop >= 0):
            raise InputError(f"--max-drop must be zero or more points, not {self.max_drop}")
        if self.batch < 1:
            raise InputError(f"--batch must be at least 1, not {self.batch}")
        if self.emulated_samples < 1:
            raise InputError(f"--emulated-samples must be at least 1, not {self.emulated_samples}")

    @property
    def model_batch(self) -> int:
        """The batch the model is built and run with: the static one, or the dynamic profile's optimum."""
        return self.dynamic_batch.opt if self.dynamic_batch else self.batch

    def output_folder(self) -> Path:
        return Path(self.out) if self.out else Path("build") / f"{self.model}-{self.target}"


def _backend(profile: TargetProfile):
    """The target's backend module: preflight(profile) and build(context)."""
    return importlib.import_module(f"edgeresnet.targets.{BACKEND_MODULES[profile.backend]}")


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)


@dataclass
class CompileResult:
    folder: Path
    report: dict[str, Any]
    manifest: dict[str, Any]
    archive: Path | None = None

    @property
    def passed(self) -> bool:
        return self.report["gate"]["passed"]


class _Stopwatch:
    """Seconds per pipeline stage, for the manifest's unhashed build record."""

    def __init__(self) -> None:
        self.started = self.last = time.time()
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.time()
        self.stages[stage] = round(now - self.last, 2)
        self.last = now

    def record(self) -> dict[str, Any]:
        return {"created_unix": int(time.time()), "seconds": round(time.time() - self.started, 2), "stages": self.stages}


def compile_artifact(options: CompileOptions) -> CompileResult:
    clock = _Stopwatch()
    profile = get_target(options.target)
    destination = options.output_folder()
    if options.dynamic_batch and profile.backend == "tvm":
        raise InputError(f"{profile.name} compiles a static batch; use --batch instead of --dynamic-batch")
    backend = _backend(profile)
    backend.preflight(profile)
    if options.records is not None:
        if not hasattr(backend, "check_records"):
            raise InputError(f"--records are TVM tuning records; {profile.name} builds with {profile.backend}")
        backend.check_records(profile, options.records)
    # Staged from the start, so a bad destination fails before any work and a kill
    # at any point leaves only a hidden .partial folder beside it.
    with atomic_directory(destination, force=options.force) as staging:
        report, manifest = _compile_into(staging, options, profile, backend, clock)
    archive = None
    if options.tar:
        archive = destination.with_name(destination.name + ".tar.gz")
        pack(destination, archive)
    return CompileResult(destination, report, manifest, archive)


def _compile_into(staging: Path, options: CompileOptions, profile: TargetProfile, backend, clock: _Stopwatch):
    loaded = load_model(options.model, options.weights)
    calibration = resolve_data(options.calib, BUILTIN_CALIBRATION, loaded, "calib", options.calib_samples, options.seed)
    evaluation = resolve_data(options.eval, BUILTIN_EVALUATION, loaded, "eval", options.eval_samples, options.seed)
    clock.lap("load")

    fp32_model = export_onnx_model(loaded, batch=options.model_batch, dynamic_batch=options.dynamic_batch is not None)
    clock.lap("export")
    config = QuantizeConfig(profile=profile.quant_profile, method=options.method)
    _log(options.progress, f"calibrating ({config.method.value}) on {len(calibration)} samples from {calibration.source}")
    int8_model = quantize(fp32_model, calibration.images, config, options.progress)
    clock.lap("quantize")

    torch_runner = TorchRunner(loaded.module)
    fp32_eval = evaluate(torch_runner, evaluation, "FP32 reference", options.progress)
    fp32_calib_logits = evaluate(torch_runner, calibration, progress=False).logits
    sensitivity = layer_sensitivity(int8_model, fp32_calib_logits, calibration.images, options.progress)
    clock.lap("sensitivity")

    def build_and_measure(candidate: onnx.ModelProto) -> Measured:
        built = backend.build(BuildContext(profile, loaded, candidate, staging, options.model_batch,
                                           options.dynamic_batch, options.emulated_samples,
                                           Path(options.records) if options.records else None))
        return _measure(built, profile, evaluation, fp32_eval, options.seed, options.progress)

    measured = build_and_measure(int8_model)
    clock.lap("build_and_validate")
    steps = []
    if options.max_drop is not None and measured.drop > options.max_drop:
        _log(options.progress, f"drop {measured.drop:.3f} pts exceeds --max-drop {options.max_drop}: keeping sensitive layers in float")
        last: dict[str, Measured] = {}

        def measure(candidate: onnx.ModelProto) -> float:
            last["measured"] = build_and_measure(candidate)
            return last["measured"].drop

        int8_model, steps, _ = fall_back_until(int8_model, sensitivity, measured.drop, options.max_drop, measure)
        if steps:
            measured = last["measured"]
        clock.lap("fallback")

    write_bytes_atomically(staging / "model.fp32.onnx", fp32_model.SerializeToString())
    report = _report(options, config, profile, loaded, calibration, evaluation, measured, sensitivity, steps)
    (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    fp32_conf = measured.fp32.accuracy.confusion if measured.fp32.accuracy else None
    int8_conf = measured.int8.accuracy.confusion if measured.int8.accuracy else None
    (staging / "report.html").write_text(render_html(report, fp32_conf, int8_conf))
    clock.lap("report")
    manifest = write_manifest(staging, _manifest_content(options, profile, loaded, calibration, report, measured.build), clock.record())
    return report, manifest


def _drop(fp32: Evaluation, int8: Evaluation) -> float:
    if fp32.accuracy is None or int8.accuracy is None:
        # Unlabelled evaluation data: the drop is the share of changed predictions.
        return round((1 - compare(fp32.logits, int8.logits).agreement) * 100, 4)
    return round(fp32.accuracy.top1 - int8.accuracy.top1, 4)


@dataclass
class Measured:
    """A target build and what its files scored against FP32 on the same images."""

    build: TargetBuild
    fp32: Evaluation  # the FP32 reference on exactly the images `int8` saw
    int8: Evaluation
    drop: float
    references: list[dict[str, Any]]  # other runners, on the whole evaluation set


def _subset(data: Dataset, limit: int | None, seed: int) -> tuple[Dataset, np.ndarray]:
    index = sample_indices(len(data), limit, seed)
    labels = None if data.labels is None else data.labels[index]
    return Dataset(data.images[index], labels, f"{data.source} (sample of {len(index)})" if len(index) < len(data) else data.source), index


def _fp32_on(fp32: Evaluation, data: Dataset, index: np.ndarray) -> Evaluation:
    if len(index) == fp32.samples:
        return fp32
    logits = fp32.logits[index]
    return Evaluation(fp32.runner, len(index), logits, accuracy(logits, data.labels) if data.labels is not None else None)


def _measure(built: TargetBuild, profile, evaluation: Dataset, fp32: Evaluation, seed: int, progress: bool) -> Measured:
    data, index = _subset(evaluation, built.sample_limit, seed)
    fp32_same = _fp32_on(fp32, data, index)
    int8 = evaluate(built.runner, data, f"INT8 on {profile.name}", progress)
    references = []
    for runner in built.reference_runners:
        result = evaluate(runner, evaluation, runner.runtime, progress)
        references.append({**result.to_dict(), "drop_pts": _drop(fp32, result),
                           "agreement": compare(fp32.logits, result.logits).agreement})
    return Measured(built, fp32_same, int8, _drop(fp32_same, int8), references)


def _report(options, config, profile, loaded, calibration, evaluation, measured: Measured, sensitivity, steps) -> dict:
    drift = compare(measured.fp32.logits, measured.int8.logits)
    fallback_layers = [s.layer for s in steps]
    build = measured.build
    return {
        "schema": REPORT_SCHEMA,
        "model": loaded.name,
        "target": profile.name,
        "quant_profile": profile.quant_profile,
        "method": config.method.value,
        "samples": len(calibration),
        "calibration": calibration.describe(),
        "evaluation": evaluation.describe(),
        "class_names": list(loaded.preprocessing.class_names),
        "fp32": measured.fp32.to_dict(),
        "int8": measured.int8.to_dict(),
        "drop_pts": measured.drop,
        "agreement": drift.agreement,
        "drift": drift.to_dict(),
        "gate": {"max_drop": options.max_drop, "passed": options.max_drop is None or measured.drop <= options.max_drop},
        "fallback_layers": fallback_layers,
        "fallback_steps": [s.to_dict() for s in steps],
        "sensitivity": [s.to_dict() for s in sensitivity],
        "target_details": build.details,
        "extra_measurements": measured.references,
        "not_measured": build.not_measured,
    }


def _manifest_content(options, profile, loaded, calibration, report, build) -> dict:
    return {
        "model": {"name": loaded.name, "arch": loaded.entry.arch, "weights_sha256": loaded.weights_sha256,
                  "weights_file": loaded.weights_path.name if loaded.weights_path else None},
        "input": {"batch": options.model_batch, "dtype": "float32", "name": "input", **loaded.preprocessing.to_dict(),
                  "dynamic_batch": options.dynamic_batch.__dict__ if options.dynamic_batch else None},
        "calibration": {"method": report["method"], "samples": len(calibration), "source": calibration.source,
                        "sha256": calibration.sha256, "seed": options.seed},
        "target": {**profile.to_dict(), "files": build.files},
        "toolchain": toolchain_versions(build.details.get("toolchain")),
        # Tuning records are an input of the build, like the calibration data: which, and how made.
        **({"tuning_records": build.details["tuning_records"]} if "tuning_records" in build.details else {}),
        "accuracy": {k: report[k] for k in ("drop_pts", "agreement", "gate")} | {
            "fp32_top1": report["fp32"].get("top1"), "int8_top1": report["int8"].get("top1"),
            "int8_runtime": report["int8"]["runtime"], "eval_samples": report["int8"]["samples"],
        },
    }


__all__ = ["CompileOptions", "CompileResult", "compile_artifact", "summary_lines"]
