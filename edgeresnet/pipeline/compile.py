"""`compile`: export -> calibrate -> quantize -> target build -> validate -> report, into one artifact folder.

The accuracy in the report is measured on the files that ship (for the
targets this machine can run), against the FP32 model on the same images (the exported
model.fp32.onnx in ONNX Runtime, checked against PyTorch first).
Everything is built in a staging folder beside the destination and renamed into
place only when complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx

from edgeresnet import DEFAULT_MODEL, __version__
from edgeresnet.artifact import manifest_digest, pack, package_versions, sign_folder, write_digest_file, write_manifest
from edgeresnet.atomic import atomic_directory, write_bytes_atomically
from edgeresnet.calibration import Dataset
from edgeresnet.bias_correction import bias_sample, correct_bias
from edgeresnet.drift import drift_sample, layer_drift
from edgeresnet.errors import InputError
from edgeresnet.evaluate import (Evaluation, Measurement, against, collect_logits, evaluate_together, identical_on_sample,
                                 measure, standing_in_for)
from edgeresnet.models import LoadedModel, ModelDescription, load_model
from edgeresnet.preprocessing_check import PreprocessingCheck
from edgeresnet.models.description import card_of
from edgeresnet.quant_scheme import CalibrationMethod, calibration_options
from edgeresnet.quantize import CalibrationRecord, QuantizeConfig
from edgeresnet.report import render_html
from edgeresnet.schema import (FP32_MODEL_FILE, MODEL_CARD_FILE, REPORT_FILE, REPORT_HTML, AccuracyRecord, BiasShiftRecord,
                               CalibrationRecordEntry, Confusion, DataSummary, Gate, InputRecord, Manifest,
                               ModelRecord, PytorchAgreement, Report, TargetRecord, build_details,
                               to_json, write)
from edgeresnet.sensitivity import FallbackStep, LayerSensitivity, fall_back_until, layer_sensitivity, sensitivity_sample
from edgeresnet.targets import backend_of, describe, get_target
from edgeresnet.targets.base import Backend, BackendOptions, BuildContext, DynamicBatch, Target, TargetBuild
from edgeresnet.targets.capabilities import ProgramBuildContext, QdqStep, QuantizesItself, Tunable

from . import golden
from .frontend import (Stopwatch, calibration_data, check_fp32_sanity, check_preprocessing_fits, check_run_options,
                       check_shared_images, evaluation_data, export_and_quantize, export_and_quantize_program,
                       fp32_reference, log, state_preprocessing, warn)

# Packages every build runs on, whatever the backend; a backend adds its own (Backend.toolchain).
CORE_PACKAGES = ("torch", "onnx", "onnxruntime", "numpy")


@dataclass(frozen=True)
class CompileOptions:
    target: str
    model: str = DEFAULT_MODEL
    weights: str | None = None
    calib: str | None = None  # default: the built-in training split, for models trained on it
    eval: str | None = None  # default: the built-in test split (all 10,000 images)
    method: CalibrationMethod | None = None  # None: the backend's quantization scheme chooses
    percentile: float | None = None  # the percentile method's percentile (--percentile); None: its default
    calib_samples: int = 512
    eval_samples: int | None = None
    seed: int = 0
    max_drop: float | None = None
    bias_correction: bool = False  # shift biases by the mean INT8 - FP32 output difference (edgeresnet.bias_correction)
    batch: int = 1
    dynamic_batch: DynamicBatch | None = None  # instead of a static batch (backends that take one)
    golden_samples: int = golden.DEFAULT_SAMPLES  # golden vectors shipped for the on-device check
    records: str | None = None  # tuning records of `edgeresnet tune` (tunable backends)
    out: str | None = None
    force: bool = False
    tar: bool = False
    progress: bool = True
    description: ModelDescription | None = None  # the user's model card / options (head, input, preprocessing)
    allow_low_fp32: bool = False  # go on when labelled FP32 top-1 is near chance
    allow_preprocessing_mismatch: bool = False  # go on when an alternative preprocessing fits the model clearly better
    labels: str | None = None  # a CSV/TSV of filename,label for an evaluation folder
    sign_key: str | None = None  # ed25519 private key (PEM): writes manifest.sig
    backend_options: BackendOptions | None = None  # of the target's backend's `options` class; None: its defaults

    def __post_init__(self) -> None:
        if self.method is not None:
            object.__setattr__(self, "method", CalibrationMethod.parse(self.method))
        if self.percentile is not None:  # refused here already if out of range or given with another method
            calibration_options(self.method or CalibrationMethod.PERCENTILE, self.percentile)
        if self.calib_samples < 1:
            raise InputError(f"--calib-samples must be at least 1, not {self.calib_samples}")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise InputError(f"--eval-samples must be at least 1, not {self.eval_samples}")
        if self.max_drop is not None and not (0 <= self.max_drop <= 100):
            raise InputError(f"--max-drop must be 0..100 points of top-1, not {self.max_drop}")
        if self.batch < 1:
            raise InputError(f"--batch must be at least 1, not {self.batch}")
        check_run_options(self.dynamic_batch.max if self.dynamic_batch else self.batch, self.seed)
        golden.check_samples(self.golden_samples)

    @property
    def model_batch(self) -> int:
        """The batch the model is built and run with: the static one, or the dynamic profile's optimum."""
        return self.dynamic_batch.opt if self.dynamic_batch else self.batch

    def output_folder(self) -> Path:
        return Path(self.out) if self.out else Path("build") / f"{self.model}-{self.target}"


@dataclass
class CompileResult:
    folder: Path
    report: Report
    manifest: Manifest
    archive: Path | None = None
    digest: str | None = None  # sha256 of manifest.json

    @property
    def passed(self) -> bool:
        return self.report.passed

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": str(self.folder), "archive": str(self.archive) if self.archive else None,
                "digest": f"sha256:{self.digest}" if self.digest else None, **to_json(self.report)}


@dataclass
class _Measured:
    """A target build and what its files scored against FP32 on the same images."""

    build: TargetBuild
    measurement: Measurement
    references: list[Measurement]  # other runners, on the whole evaluation set
    warning: str | None = None

    @property
    def drop(self) -> float:
        return self.measurement.drop


def compile_artifact(options: CompileOptions) -> CompileResult:
    clock = Stopwatch()
    target = get_target(options.target)
    destination = options.output_folder()
    backend = backend_of(target)
    if options.dynamic_batch and not backend.dynamic_batch:
        raise InputError(f"{target.name} compiles a static batch; use --batch instead of --dynamic-batch")
    backend_options = options.backend_options or backend.options()
    if type(backend_options) is not backend.options:
        raise InputError(f"{type(backend_options).__name__} are not options of {backend.name}, which builds {target.name}")
    if options.bias_correction and isinstance(backend, QuantizesItself):
        raise InputError(f"--bias-correction shifts biases in a Q/DQ graph; {target.name} builds with {backend.name}, "
                         f"which quantizes in its own framework")
    backend.preflight(target)
    if options.records is not None:
        if not isinstance(backend, Tunable):
            raise InputError(f"--records are tuning records; {target.name} builds with {backend.name}, which is not tuned")
        backend.check_records(target, Path(options.records))
    # Staged from the start, so a bad destination fails before any work and a kill
    # at any point leaves only a hidden .partial folder beside it.
    if options.sign_key is not None:
        from edgeresnet.artifact import _load_key

        _load_key(options.sign_key, private=True)  # a bad key fails before any work
    with atomic_directory(destination, force=options.force) as staging:
        report, manifest = _compile_into(staging, options, target, backend, backend_options, clock)
        if options.sign_key is not None:
            sign_folder(staging, options.sign_key)
    digest = manifest_digest(destination)
    write_digest_file(destination, digest)
    archive = None
    if options.tar:
        archive = destination.with_name(destination.name + ".tar.gz")
        pack(destination, archive)
    return CompileResult(destination, report, manifest, archive, digest)


def _compile_into(staging: Path, options: CompileOptions, target: Target, backend: Backend,
                  backend_options: BackendOptions, clock: Stopwatch):
    loaded = load_model(options.model, options.weights, options.description)
    calibration = calibration_data(loaded, options.calib, options.calib_samples, options.seed, options.model_batch)
    evaluation = evaluation_data(loaded, options.eval, options.eval_samples, options.seed, options.labels, options.progress)
    state_preprocessing(loaded, options.progress)
    shared_warning = check_shared_images(calibration, evaluation)
    preprocessing_check, preprocessing_warning = check_preprocessing_fits(
        loaded, calibration, evaluation, options.seed, options.allow_preprocessing_mismatch, options.allow_low_fp32,
        options.progress)
    clock.lap("load")
    calibrator = calibration_options(options.method or backend.quant_scheme.calibration, options.percentile)
    shifts: list[BiasShiftRecord] = []
    skipped: list[QdqStep] = []  # the Q/DQ graph's steps a backend that quantizes itself does not offer
    int8_model: onnx.ModelProto | None = None
    if isinstance(backend, QuantizesItself):
        fp32_model, config, program = export_and_quantize_program(
            loaded, calibration, backend, backend.quant_scheme, calibrator, options.model_batch,
            options.dynamic_batch is not None, options.progress, clock)
        record = program.calibration
        skipped = [QdqStep.SENSITIVITY, *([QdqStep.FALLBACK] if options.max_drop is not None else []), QdqStep.LAYER_DRIFT]
    else:
        quantized = export_and_quantize(loaded, calibration, backend.quant_scheme, calibrator, options.model_batch,
                                        options.dynamic_batch is not None, options.progress, clock)
        fp32_model, config, record, int8_model = quantized.fp32, quantized.config, quantized.record, quantized.int8
        if options.bias_correction:
            int8_model, shifts = correct_bias(fp32_model, int8_model, bias_sample(calibration))
            clock.lap("bias_correction")

    fp32_runner, pytorch_agreement = fp32_reference(loaded, fp32_model, calibration)
    sensitivity: list[LayerSensitivity] = []
    if int8_model is not None:
        sample = sensitivity_sample(calibration)  # a bounded prefix of the calibration data
        sensitivity = layer_sensitivity(int8_model, collect_logits(fp32_runner, sample, progress=False), sample,
                                        options.progress)
        clock.lap("sensitivity")

    def build(candidate: onnx.ModelProto) -> TargetBuild:
        return backend.build(BuildContext(target, loaded, candidate, staging, options.model_batch,
                                          options.dynamic_batch,
                                          Path(options.records) if options.records else None, backend_options))

    def measured_against(built: TargetBuild, fp32: Evaluation, whole: dict[int, Evaluation]) -> _Measured:
        """`whole`: evaluations already made on the whole evaluation set, by position in the build's runners."""
        runners = [built.runner, *built.reference_runners]
        if 0 in whole:
            main = against(fp32, whole[0])
        else:
            main = measure(built.runner, evaluation, fp32, f"INT8 on {target.name}", options.progress,
                           built.sample_limit, options.seed)
        references = [against(fp32, whole[i]) if i in whole else
                      measure(runner, evaluation, fp32, runner.runtime, options.progress)
                      for i, runner in enumerate(runners) if i > 0]
        if built.host_twin is None or main.tested.samples == len(evaluation):
            return _Measured(built, main, references)
        position = next(i for i, runner in enumerate(built.reference_runners) if runner is built.host_twin)
        twin = references[position]
        if not identical_on_sample(main, twin, len(evaluation), built.sample_limit, options.seed):
            return _Measured(built, main, references, f"{twin.tested.result().runtime} is not bit-identical to "
                                                      f"{main.tested.result().runtime} on its {main.tested.samples} images: "
                                                      f"the headline is that sample's")
        references[position] = main
        return _Measured(built, standing_in_for(twin, main), references)

    if int8_model is not None:
        built = build(int8_model)
    else:
        assert isinstance(backend, QuantizesItself)
        built = backend.build_program(ProgramBuildContext(target, loaded, program.program, staging, options.model_batch,
                                                          backend_options))
    # FP32 and every runner that sees the whole evaluation set share one pass over it (each image decoded once).
    runners = [built.runner, *built.reference_runners]
    whole = [i for i in range(len(runners)) if i > 0 or built.sample_limit is None]
    fp32_eval, *evaluations = evaluate_together([fp32_runner, *(runners[i] for i in whole)], evaluation,
                                                f"FP32 and INT8 on {target.name}", options.progress)
    fp32_warning = check_fp32_sanity(loaded, evaluation, fp32_eval.accuracy.top1 if fp32_eval.accuracy else None,
                                     options.allow_low_fp32)
    measured = measured_against(built, fp32_eval, dict(zip(whole, evaluations)))
    clock.lap("build_and_validate")
    steps: list[FallbackStep] = []
    if options.max_drop is not None and measured.drop > options.max_drop and int8_model is not None:
        log(options.progress, f"drop {measured.drop:.3f} pts exceeds --max-drop {options.max_drop}: keeping sensitive layers in float")
        latest: list[_Measured] = []  # the last candidate measured, alone: each holds its logits

        def measure_drop(candidate: onnx.ModelProto) -> float:
            latest[:] = [measured_against(build(candidate), fp32_eval, {})]
            return latest[0].drop

        int8_model, steps, _ = fall_back_until(int8_model, sensitivity, measured.drop, options.max_drop, measure_drop)
        if steps:
            measured = latest[0]
        clock.lap("fallback")

    # On evaluation images (disjoint from the calibration data), the model as it ships (after any fallback).
    drift_images = drift_sample(evaluation)
    drift = layer_drift(fp32_model, int8_model, drift_images) if int8_model is not None else None
    clock.lap("layer_drift")
    write_bytes_atomically(staging / FP32_MODEL_FILE, fp32_model.SerializeToString())
    host = golden.host_measurement(measured.measurement, measured.references, len(evaluation))
    golden.write_golden(staging, options.golden_samples, options.seed, evaluation, fp32_eval, host, loaded.name,
                        target.name, measured.build.golden_tools)
    if measured.warning:
        warn(measured.warning)
    warnings = [warning for warning in (preprocessing_warning, shared_warning, fp32_warning,
                                        record.warning, measured.warning) if warning]
    report = _report(options, config, record, target, loaded, calibration, evaluation, measured,
                     sensitivity, steps, pytorch_agreement, warnings, preprocessing_check)
    if drift is not None:
        report.layer_drift, report.layer_drift_samples = drift, len(drift_images)
    if skipped:
        report.skipped_steps = [f"{step.value}: {backend.name} quantizes in its own framework, not in a Q/DQ graph"
                                for step in skipped]
    if options.bias_correction:
        report.bias_correction = shifts
    write(report, staging / REPORT_FILE)
    card = {k: v for k, v in card_of(loaded.preprocessing, loaded.num_classes or loaded.entry.num_classes).items()
            if v is not None}
    (staging / MODEL_CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    fp32, int8 = measured.measurement.fp32, measured.measurement.tested
    (staging / REPORT_HTML).write_text(render_html(report, _confusion(fp32), _confusion(int8), folder=staging))
    clock.lap("report")
    content = _manifest(options, target, backend, loaded, report, measured.build)
    manifest = write_manifest(staging, content, clock.record())
    return report, manifest


def _confusion(evaluation: Evaluation) -> list[list[int]] | None:
    return evaluation.accuracy.confusion if evaluation.accuracy else None


def _report(options: CompileOptions, config: QuantizeConfig, record: CalibrationRecord, target: Target, loaded: LoadedModel,
            calibration: Dataset, evaluation: Dataset, measured: _Measured, sensitivity: list[LayerSensitivity], steps: list[FallbackStep],
            pytorch_agreement: PytorchAgreement, warnings: list[str], preprocessing_check: PreprocessingCheck | None) -> Report:
    build, result = measured.build, measured.measurement
    described = calibration.describe()
    data = evaluation.describe()
    return Report(
        model=loaded.name, target=target.name, quant_profile=config.scheme.name, method=record.options.method.value,  # auto: its winner
        samples=len(calibration),
        # the data, the method, its options, stability
        calibration=record.summary(described),
        evaluation=DataSummary(data.source, data.samples, data.sha256, data.labelled),
        class_names=list(loaded.preprocessing.class_names),
        fp32=replace(result.fp32.result(), pytorch_agreement=pytorch_agreement),
        int8=result.tested.result(),
        drop_pts=result.drop if evaluation.labels is not None else None,  # unlabelled: agreement only
        agreement=result.drift.agreement, drift=result.drift,
        gate=Gate(options.max_drop, options.max_drop is None or result.drop <= options.max_drop),
        fallback_layers=[s.layer for s in steps],
        fallback_steps=steps,
        sensitivity=sensitivity,
        target_details=build_details(config.scheme.name, build.details),
        extra_measurements=[m.reference_row() for m in measured.references],
        not_measured=build.not_measured,
        confusion=Confusion(_confusion(result.fp32), _confusion(result.tested)),
        model_description=loaded.summary(),
        warnings=warnings,
        preprocessing_check=preprocessing_check.to_dict() if preprocessing_check else None,
    )


def _manifest(options: CompileOptions, target: Target, backend: Backend, loaded: LoadedModel, report: Report,
              build: TargetBuild) -> Manifest:
    calibration = report.calibration
    accuracy = AccuracyRecord(report.drop_pts, report.agreement, report.gate, report.fp32.top1, report.int8.top1,
                              report.int8.runtime, report.int8.samples)
    return Manifest(
        edgeresnet_version=__version__,
        model=ModelRecord(loaded.name, loaded.entry.arch, loaded.weights_sha256,
                          loaded.weights_path.name if loaded.weights_path else None),
        input=InputRecord(options.model_batch, "float32", "input", loaded.preprocessing.to_dict(),
                          loaded.summary().num_classes, dict(loaded.sources),
                          options.dynamic_batch.__dict__ if options.dynamic_batch else None),
        calibration=CalibrationRecordEntry(report.method, calibration.samples, calibration.source, calibration.sha256,
                                           options.seed, calibration.options, calibration.stability, calibration.warning),
        target=TargetRecord(**describe(target), files=build.files),
        toolchain={**package_versions(CORE_PACKAGES), **backend.toolchain(target)},
        provenance=build.provenance,
        accuracy=accuracy,
    )
