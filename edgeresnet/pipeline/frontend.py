"""The front half of every pipeline run: model -> data -> ONNX -> INT8 Q/DQ.

`compile`, `quantize`, `tune` and the benchmarks all start here, so a model is
loaded, calibrated and quantized the same way whichever command asked.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import onnx

from edgeresnet.calibration import Dataset, open_dataset
from edgeresnet.errors import InputError
from edgeresnet.export import export_onnx_model
from edgeresnet.models import LoadedModel, load_model
from edgeresnet.quant_scheme import CalibrationMethod, QuantScheme
from edgeresnet.quantize import QuantizeConfig, quantize

BUILTIN_CALIBRATION = "fashion-mnist:train"
BUILTIN_EVALUATION = "fashion-mnist:test"


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


def resolve_data(spec: str | None, default: str, loaded: LoadedModel, option: str, limit: int | None, seed: int) -> Dataset:
    """The user's data, or the built-in split for models trained on the built-in data set."""
    if spec is None:
        if loaded.entry.weights is None or "Fashion-MNIST" not in loaded.entry.weights.meta.get("dataset", ""):
            raise InputError(f"model {loaded.name} was not trained on the built-in data set: pass --{option} with your own data")
        spec = default
    return open_dataset(spec, loaded.preprocessing, limit=limit, seed=seed)


def calibration_data(loaded: LoadedModel, calib: str | None, samples: int, seed: int) -> Dataset:
    return resolve_data(calib, BUILTIN_CALIBRATION, loaded, "calib", samples, seed)


def evaluation_data(loaded: LoadedModel, eval: str | None, samples: int | None, seed: int) -> Dataset:
    return resolve_data(eval, BUILTIN_EVALUATION, loaded, "eval", samples, seed)


@dataclass
class Quantized:
    """A model through the front half: its FP32 ONNX and the INT8 Q/DQ model a backend consumes."""

    model: LoadedModel
    calibration: Dataset
    config: QuantizeConfig
    fp32: onnx.ModelProto
    int8: onnx.ModelProto


def export_and_quantize(loaded: LoadedModel, calibration: Dataset, scheme: QuantScheme,
                        method: CalibrationMethod | str | None = None, batch: int = 1, dynamic_batch: bool = False,
                        progress: bool = True, clock: Stopwatch | None = None) -> Quantized:
    fp32 = export_onnx_model(loaded, batch=batch, dynamic_batch=dynamic_batch)
    if clock:
        clock.lap("export")
    config = QuantizeConfig(scheme=scheme, method=method)
    log(progress, f"calibrating ({config.method.value}) on {len(calibration)} samples from {calibration.source}")
    int8 = quantize(fp32, calibration.images, config, progress)
    if clock:
        clock.lap("quantize")
    return Quantized(loaded, calibration, config, fp32, int8)


def load_and_quantize(model: str, weights: str | None, calib: str | None, calib_samples: int, seed: int,
                      scheme: QuantScheme, method: CalibrationMethod | str | None = None, batch: int = 1,
                      progress: bool = True) -> Quantized:
    """The whole front half for commands that need no evaluation data."""
    loaded = load_model(model, weights)
    calibration = calibration_data(loaded, calib, calib_samples, seed)
    return export_and_quantize(loaded, calibration, scheme, method, batch, progress=progress)
