"""`quantize`: the front half alone, written to an INT8 Q/DQ ONNX file in one backend's scheme."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeresnet import DEFAULT_MODEL
from edgeresnet.atomic import write_bytes_atomically
from edgeresnet.quant_scheme import calibration_options
from edgeresnet.quantize import quantized_layers
from edgeresnet.targets import get_quant_scheme

from edgeresnet.models import ModelDescription

from .frontend import load_and_quantize


@dataclass
class QuantizeResult:
    path: str
    profile: str  # the quantization scheme's name
    method: str
    samples: int
    calibration_sha256: str
    quantized_layers: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantize_model(
    output: str | Path, model: str = DEFAULT_MODEL, weights: str | None = None, scheme: str = "onnxruntime",
    calib: str | None = None, calib_samples: int = 512, method: str | None = None, seed: int = 0, batch: int = 1,
    progress: bool = True, description: ModelDescription | None = None, percentile: float | None = None,
) -> QuantizeResult:
    quant_scheme = get_quant_scheme(scheme)
    calibrator = calibration_options(method or quant_scheme.calibration, percentile)
    quantized = load_and_quantize(model, weights, calib, calib_samples, seed, quant_scheme, calibrator, batch, progress,
                                  description)
    write_bytes_atomically(output, quantized.int8.SerializeToString())
    return QuantizeResult(str(output), quantized.config.scheme.name, quantized.record.options.method.value, len(quantized.calibration),
                          quantized.calibration.sha256, len(quantized_layers(quantized.int8)))
