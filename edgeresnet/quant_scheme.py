"""What a backend asks of a Q/DQ graph: one typed `QuantScheme` per backend, and the calibration methods.

Light on purpose (no onnx, no numpy): every backend declares the scheme it consumes,
and listing targets must not load the quantizer. `edgeresnet.quantize` turns a
scheme into ONNX Runtime's string-keyed options in exactly one place.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edgeresnet.errors import InputError


class CalibrationMethod(str, enum.Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"

    @classmethod
    def parse(cls, value: "str | CalibrationMethod") -> "CalibrationMethod":
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"unknown calibration method {value!r}; choose {', '.join(m.value for m in cls)}") from None


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
