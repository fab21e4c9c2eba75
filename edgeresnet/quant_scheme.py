"""What a backend asks of a Q/DQ graph: one typed `QuantScheme` per backend, and the calibration methods
with their typed options.

Light on purpose (no onnx, no numpy): every backend declares the scheme it consumes,
and listing targets must not load the quantizer. `edgeresnet.quantize` turns a
scheme into ONNX Runtime's string-keyed options in exactly one place; the
calibrators themselves live in `edgeresnet.calibrators`.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Union

from edgeresnet.errors import InputError


class CalibrationMethod(str, enum.Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"
    MSE = "mse"
    AUTO = "auto"  # every other method calibrated at once, the best on held-out calibration data shipped

    @classmethod
    def parse(cls, value: "str | CalibrationMethod") -> "CalibrationMethod":
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"unknown calibration method {value!r}; choose {', '.join(m.value for m in cls)}") from None


@dataclass(frozen=True)
class MinMaxOptions:
    """The observed minimum and maximum of each activation."""

    method: ClassVar[CalibrationMethod] = CalibrationMethod.MINMAX

    def to_dict(self) -> dict:
        return {"method": self.method.value}


@dataclass(frozen=True)
class PercentileOptions:
    """Clip each activation at a percentile of its values.

    The defaults are ONNX Runtime's (create_calibrator: 2048 bins of |x|, 99.999),
    so that the TVM profile's ranges did not change when edgeresnet took over the calibration.
    """

    percentile: float = 99.999
    num_bins: int = 2048
    method: ClassVar[CalibrationMethod] = CalibrationMethod.PERCENTILE

    def __post_init__(self) -> None:
        if not 90.0 <= self.percentile < 100.0:
            raise InputError(f"--percentile must be in [90, 100), not {self.percentile}")
        if self.num_bins < 16:
            raise InputError(f"a percentile histogram needs at least 16 bins, not {self.num_bins}")

    def to_dict(self) -> dict:
        return {"method": self.method.value, **asdict(self)}


@dataclass(frozen=True)
class EntropyOptions:
    """The clipping threshold that minimizes the KL divergence between an activation's histogram and its int8 image.

    The numbers are TensorRT's (IInt8EntropyCalibrator2, "8-bit Inference with TensorRT",
    Migacz, GTC 2017) as NVIDIA's pytorch-quantization implements them
    (calib/histogram.py, `_compute_amax_entropy`): a histogram of |x| in 2048 bins from 0,
    candidate thresholds at every bin edge from the 128th on, each candidate's bins
    merged into 128 quantized bins (the non-negative half of int8).
    """

    num_bins: int = 2048
    num_quantized_bins: int = 128
    method: ClassVar[CalibrationMethod] = CalibrationMethod.ENTROPY

    def __post_init__(self) -> None:
        if not 2 <= self.num_quantized_bins <= self.num_bins:
            raise InputError(f"entropy calibration needs 2 <= quantized bins <= bins, not {self.num_quantized_bins} of {self.num_bins}")

    def to_dict(self) -> dict:
        return {"method": self.method.value, **asdict(self)}


@dataclass(frozen=True)
class MseOptions:
    """The clipping threshold that minimizes the mean squared quantization error of an activation's histogram.

    As NVIDIA's pytorch-quantization computes it (calib/histogram.py, `_compute_amax_mse`):
    a histogram of |x| in 2048 bins from 0, each bin centre from the 128th on a candidate
    threshold, every bin centre quantized to int8 (127 levels a side, clamped) at that
    threshold, the squared error weighted by the bin's count.
    """

    num_bins: int = 2048
    start_bin: int = 128
    method: ClassVar[CalibrationMethod] = CalibrationMethod.MSE

    def __post_init__(self) -> None:
        if not 0 <= self.start_bin < self.num_bins:
            raise InputError(f"mse calibration needs 0 <= start bin < bins, not {self.start_bin} of {self.num_bins}")

    def to_dict(self) -> dict:
        return {"method": self.method.value, **asdict(self)}


@dataclass(frozen=True)
class AutoOptions:
    """Calibrate with every method in one pass, score each on a held-out part of the calibration data by
    the logits' SQNR against FP32, ship the best (`edgeresnet.auto_calibration`)."""

    candidates: tuple[CalibrationMethod, ...] = (CalibrationMethod.MINMAX, CalibrationMethod.PERCENTILE,
                                                 CalibrationMethod.ENTROPY, CalibrationMethod.MSE)
    held_out_share: float = 0.25  # of the calibration samples, scored on and not calibrated on
    method: ClassVar[CalibrationMethod] = CalibrationMethod.AUTO

    def __post_init__(self) -> None:
        if not self.candidates or CalibrationMethod.AUTO in self.candidates:
            raise InputError("auto calibration needs candidate methods other than auto")
        if not 0.0 < self.held_out_share < 1.0:
            raise InputError(f"the held-out share must be in (0, 1), not {self.held_out_share}")

    def to_dict(self) -> dict:
        return {"method": self.method.value, "candidates": [m.value for m in self.candidates],
                "held_out_share": self.held_out_share}


CalibrationOptions = Union[MinMaxOptions, PercentileOptions, EntropyOptions, MseOptions, AutoOptions]
_OPTIONS = {options.method: options for options in (MinMaxOptions, PercentileOptions, EntropyOptions, MseOptions, AutoOptions)}


def calibration_options(method: "CalibrationMethod | str", percentile: float | None = None) -> CalibrationOptions:
    """The typed options of a method chosen by name; `percentile` only for the percentile method."""
    method = CalibrationMethod.parse(method)
    if percentile is not None:
        if method is not CalibrationMethod.PERCENTILE:
            raise InputError(f"--percentile applies to the percentile method, not {method.value}")
        return PercentileOptions(percentile=percentile)
    return _OPTIONS[method]()


@dataclass(frozen=True)
class QuantScheme:
    """What Q/DQ graph a backend wants. Field names say what they do; see `ort_options` for ORT's keys."""

    name: str
    description: str
    op_types: tuple[str, ...]  # ops whose inputs (and weights) get Q/DQ
    activation_signed: bool  # int8 (True) or uint8 (False) activations
    activation_symmetric: bool  # zero points 0 for activations
    quantize_bias: bool  # int32 bias with its own DequantizeLinear
    float_weights_with_qdq: bool  # keep FP32 weights followed by Q->DQ (TensorRT) instead of int8 initializers
    dedicated_qdq_per_consumer: bool
    unquantized_outputs_of: tuple[str, ...]  # op types whose outputs get no Q/DQ
    residual_aware: bool  # Q/DQ only on the shortcut input of each residual Add
    calibration: CalibrationMethod  # the method used when the user names none
    per_channel_axis: dict[str, int] = field(default_factory=dict)  # op type -> weight axis with one scale per channel

    def ort_options(self) -> dict:
        """The single translation into quantize_static's stringly-typed extra_options."""
        return {
            "ActivationSymmetric": self.activation_symmetric,
            "WeightSymmetric": True,
            "QuantizeBias": self.quantize_bias,
            "AddQDQPairToWeight": self.float_weights_with_qdq,
            "DedicatedQDQPair": self.dedicated_qdq_per_consumer,
            "OpTypesToExcludeOutputQuantization": list(self.unquantized_outputs_of),
            "QDQOpTypePerChannelSupportToAxis": dict(self.per_channel_axis),
            "ForceQuantizeNoInputCheck": False,
        }
