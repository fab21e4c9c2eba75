"""The front half of every pipeline run: model -> data -> ONNX -> INT8 Q/DQ.

`compile`, `quantize`, `tune` and the benchmarks all start here, so a model is
loaded, calibrated and quantized the same way whichever command asked.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx

from edgeresnet.calibration import Dataset, open_dataset
from edgeresnet.errors import CheckFailed, InputError
from edgeresnet.export import PytorchAgreement, check_against_pytorch, check_batch, export_onnx_model
from edgeresnet.models import LoadedModel, ModelDescription, load_model
from edgeresnet.models.description import describe_sources
from edgeresnet.preprocessing_check import PreprocessingCheck, check_preprocessing
from edgeresnet.quant_scheme import CalibrationMethod, CalibrationOptions, QuantScheme
from edgeresnet.quantize import CalibrationRecord, QuantizeConfig
from edgeresnet.runners import OnnxRuntimeRunner, Runner
from edgeresnet.targets import backend_of_scheme
from edgeresnet.targets.base import QuantizeRequest
from edgeresnet.targets.capabilities import ProgramQuantization, QuantizesItself

BUILTIN_CALIBRATION = "fashion-mnist:train"
BUILTIN_EVALUATION = "fashion-mnist:test"
# Below this many images, activation ranges rest on too few samples to trust (ORT and TensorRT suggest hundreds).
SMALL_CALIBRATION = 32


def log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)


class Stopwatch:
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


def resolve_data(spec: str | None, default: str, loaded: LoadedModel, option: str, limit: int | None, seed: int,
                 labels: str | None = None) -> Dataset:
    """The user's data, or the built-in split for models trained on the built-in data set."""
    if spec is None:
        if loaded.entry.weights is None or "Fashion-MNIST" not in loaded.entry.weights.card.dataset:
            raise InputError(f"model {loaded.name} was not trained on the built-in data set: pass --{option} with your own data")
        spec = default
    return open_dataset(spec, loaded.preprocessing, limit=limit, seed=seed, labels=labels)


def state_preprocessing(loaded: LoadedModel, progress: bool) -> None:
    """One line: the preprocessing, and where its mean/std, pixel scale, channel order and resize came from."""
    log(progress, describe_sources(loaded.preprocessing, loaded.sources))


def check_shared_images(calibration: Dataset, evaluation: Dataset) -> str | None:
    """A warning when calibration and evaluation hold the same images (by content): the measured drop flatters INT8."""
    calibration_files, evaluation_files = calibration.files, evaluation.files
    index = np.arange(len(evaluation))
    if calibration_files is not None and evaluation_files is not None:
        # Only files of a size some calibration file has can share its content: most are never read.
        sizes = {os.path.getsize(f) for f in calibration_files}
        index = np.array([i for i, f in enumerate(evaluation_files) if os.path.getsize(f) in sizes], np.int64)
    shared = set(calibration.content_digests()) & set(evaluation.content_digests(index))
    if not shared:
        return None
    message = (f"{len(shared)} of the {len(evaluation)} evaluation images are also calibration images (same content): "
               f"INT8 is measured on what it was calibrated on, so its drop may look better than it is")
    warn(message)
    return message


def check_preprocessing_fits(loaded: LoadedModel, calibration: Dataset, evaluation: Dataset, seed: int,
                             allow_mismatch: bool, allow_low_fp32: bool, progress: bool) -> tuple[PreprocessingCheck | None, str | None]:
    """Before calibration: does the described preprocessing fit the model (preprocessing_check.py)? Stops with
    the options that fit, unless overridden; returns the check and the warning an override leaves."""
    if loaded.weights_path is None:  # random weights fit no preprocessing better than another
        return None, None
    classes = loaded.num_classes or loaded.entry.num_classes
    data = evaluation if evaluation.labels is not None else calibration
    sources = f"from {loaded.sources.get('normalization', 'defaults')}"
    result = check_preprocessing(loaded.module, loaded.preprocessing, data, classes, chance_gate(classes), sources, seed)
    described = result.described
    if described is not None:
        score = f"FP32 top-1 {described.top1:.1f}% on {len(described.correct)} labelled images" if described.correct is not None \
            else f"first-BatchNorm statistics distance {described.distance:.2f}"
        log(progress, f"preprocessing check: {result.verdict}, {score}, {len(result.candidates) - 1} alternatives "
                      f"({result.seconds:.1f} s)")
    if result.verdict == "mismatch":
        message = f"preprocessing check: {result.message}"
        if not allow_mismatch:
            raise CheckFailed(f"{message}; pass those options (or put them in the model card), or "
                              f"--allow-preprocessing-mismatch to go on")
        warn(message)
        return result, message + " (--allow-preprocessing-mismatch given)"
    if result.verdict == "model_or_labels":
        message = f"preprocessing check: {result.message}"
        if not allow_low_fp32:
            raise CheckFailed(f"{message}; check the weights (--weights, --weights-key) and the labels, or pass "
                              f"--allow-low-fp32 to go on")
        return result, message + " (--allow-low-fp32 given)"
    return result, None


def check_run_options(batch: int, seed: int) -> None:
    """Bounds every command shares: a batch the host can hold, a seed numpy accepts."""
    check_batch(batch)
    if seed < 0:
        raise InputError(f"--seed must be zero or more, not {seed}")


def calibration_data(loaded: LoadedModel, calib: str | None, samples: int, seed: int, batch: int = 1,
                     progress: bool = True) -> Dataset:
    data = resolve_data(calib, BUILTIN_CALIBRATION, loaded, "calib", samples, seed)
    if len(data) < batch:
        raise InputError(f"{data.source}: {len(data)} calibration image(s), fewer than one batch of {batch}; "
                         f"pass more images or a smaller --batch")
    if len(data) < SMALL_CALIBRATION:
        warn(f"only {len(data)} calibration image(s) from {data.source}: INT8 ranges from so few are noisy "
             f"(use {SMALL_CALIBRATION} or more; hundreds are better)")
    return data


def evaluation_data(loaded: LoadedModel, eval: str | None, samples: int | None, seed: int,
                    labels: str | None = None, progress: bool = True) -> Dataset:
    data = resolve_data(eval, BUILTIN_EVALUATION, loaded, "eval", samples, seed, labels)
    if data.labels is None:
        log(progress, f"evaluation: {data.source} has no labels (no class folders, no labels.csv beside it, no --labels): "
                      f"INT8 is measured as its top-1 agreement with FP32, not as an accuracy drop")
    elif data.labels_from:
        log(progress, f"evaluation labels: {data.labels_from}")
    if data.class_names and not loaded.preprocessing.class_names and len(data.class_names) == (loaded.num_classes or 0):
        # The class-folder (or labels-file) names of labelled evaluation data name the classes when nothing else did.
        loaded.described = replace(loaded.preprocessing, class_names=data.class_names)
        from_file = data.labels_from and not data.labels_from.startswith("class folders")
        loaded.sources["class_names"] = f"label names in {data.labels_from}" if from_file else f"class-folder names of {data.source}"
    return data


def warn(message: str) -> None:
    print(f"edgeresnet: warning: {message}", file=sys.stderr)


def chance_gate(num_classes: int) -> float:
    """The FP32 top-1 (percent) below which a labelled evaluation says the inputs do not match the model.

    Chance plus the larger of chance itself and 10 points, but at most a third of the way from chance
    to 100%: 20% for 10 classes, 12.7% for 37, 10.1% for 1000, 66.7% for 2.
    """
    chance = 100.0 / num_classes
    return chance + min(max(chance, 10.0), (100.0 - chance) / 3)


def check_fp32_sanity(loaded: LoadedModel, evaluation: Dataset, fp32_top1: float | None, allow: bool) -> str | None:
    """Stop when a model with weights scores near chance in FP32: the preprocessing or labels do not match it.

    A bare architecture (no weights) is at chance by construction and is not gated. Returns a
    warning when the gate is overridden.
    """
    if fp32_top1 is None or evaluation.labels is None or loaded.weights_path is None:
        return None
    classes = loaded.num_classes or loaded.entry.num_classes
    gate = chance_gate(classes)
    if fp32_top1 >= gate:
        return None
    sources = loaded.sources
    message = (f"FP32 top-1 {fp32_top1:.2f}% on {len(evaluation)} labelled images from {evaluation.source} is near chance "
               f"({100 / classes:.2f}% for {classes} classes; the gate is {gate:.2f}%): the preprocessing (mean/std, "
               f"pixel scale, input size, channel order; from {sources.get('normalization', 'defaults')}) or the labels "
               f"probably do not match the model")
    if not allow:
        raise CheckFailed(message + "; describe the model with --card or the preprocessing options, "
                                    "or pass --allow-low-fp32 to go on")
    return message + " (--allow-low-fp32 given)"


@dataclass
class Quantized:
    """A model through the front half: its FP32 ONNX and the INT8 Q/DQ model a backend consumes."""

    model: LoadedModel
    calibration: Dataset
    config: QuantizeConfig
    fp32: onnx.ModelProto
    int8: onnx.ModelProto
    record: CalibrationRecord  # the calibration's options and the stability of its scales


def export_and_quantize(loaded: LoadedModel, calibration: Dataset, scheme: QuantScheme,
                        method: CalibrationOptions | CalibrationMethod | str | None = None, batch: int = 1, dynamic_batch: bool = False,
                        progress: bool = True, clock: Stopwatch | None = None) -> Quantized:
    fp32, config = _export(loaded, calibration, scheme, method, batch, dynamic_batch, progress, clock)
    # The backend that consumes the scheme quantizes (ONNX Runtime's Q/DQ placement unless it does otherwise).
    quantization = backend_of_scheme(scheme.name).quantize(QuantizeRequest(loaded, fp32, calibration, config, progress))
    _state_calibration(quantization.calibration, progress, clock)
    return Quantized(loaded, calibration, config, fp32, quantization.model, quantization.calibration)


def export_and_quantize_program(loaded: LoadedModel, calibration: Dataset, backend: QuantizesItself[Any],
                                scheme: QuantScheme, method: CalibrationOptions | CalibrationMethod | None, batch: int,
                                dynamic_batch: bool, progress: bool,
                                clock: Stopwatch) -> tuple[onnx.ModelProto, QuantizeConfig, ProgramQuantization[Any]]:
    """The front half for a backend that quantizes in its own framework: the FP32 export and its program."""
    fp32, config = _export(loaded, calibration, scheme, method, batch, dynamic_batch, progress, clock)
    quantization = backend.quantize_program(QuantizeRequest(loaded, fp32, calibration, config, progress))
    _state_calibration(quantization.calibration, progress, clock)
    return fp32, config, quantization


def _export(loaded: LoadedModel, calibration: Dataset, scheme: QuantScheme,
            method: CalibrationOptions | CalibrationMethod | str | None, batch: int, dynamic_batch: bool, progress: bool,
            clock: Stopwatch | None) -> tuple[onnx.ModelProto, QuantizeConfig]:
    fp32 = export_onnx_model(loaded, batch=batch, dynamic_batch=dynamic_batch)
    if clock:
        clock.lap("export")
    config = QuantizeConfig(scheme=scheme, calibration=method)
    log(progress, f"calibrating ({config.method.value}) on {len(calibration)} samples from {calibration.source}")
    return fp32, config


def _state_calibration(record: CalibrationRecord, progress: bool, clock: Stopwatch | None) -> None:
    stability = record.stability
    if record.selection:
        log(progress, f"calibration: auto shipped {record.selection.reason}")
    if stability.max_relative_change is not None:
        log(progress, f"calibration: largest activation scale change, first {stability.half_samples} samples vs all: "
                      f"{stability.max_relative_change:.1%} ({stability.tensor})")
    if record.warning:
        warn(record.warning)
    if clock:
        clock.lap("quantize")


# Images on which the FP32 reference is checked against PyTorch before it measures anything.
PYTORCH_CHECK_IMAGES = 8


def fp32_reference(loaded: LoadedModel, fp32: onnx.ModelProto, data: Dataset) -> tuple[Runner, PytorchAgreement]:
    """The FP32 side of every accuracy figure: the exported model (what ships as model.fp32.onnx) in ONNX
    Runtime, batched on a dynamic-batch copy, after checking it against PyTorch on the data's first images.

    Not PyTorch eager itself: at 224x224 ONNX Runtime runs a ResNet about twice as fast here (ResNet-18 on
    2 cores: 15 ms/image against 31), and the FP32 pass is half of every evaluation.
    """
    runner = OnnxRuntimeRunner(fp32.SerializeToString(), label="FP32", any_batch=True)
    sample = data.take(np.arange(min(len(data), PYTORCH_CHECK_IMAGES)))
    return runner, check_against_pytorch(runner, loaded, np.ascontiguousarray(sample, np.float32))


def load_and_quantize(model: str, weights: str | None, calib: str | None, calib_samples: int, seed: int,
                      scheme: QuantScheme, method: CalibrationOptions | CalibrationMethod | str | None = None, batch: int = 1,
                      progress: bool = True, description: ModelDescription | None = None) -> Quantized:
    """The whole front half for commands that need no evaluation data."""
    check_run_options(batch, seed)
    loaded = load_model(model, weights, description)
    calibration = calibration_data(loaded, calib, calib_samples, seed, batch)
    state_preprocessing(loaded, progress)
    return export_and_quantize(loaded, calibration, scheme, method, batch, progress=progress)
