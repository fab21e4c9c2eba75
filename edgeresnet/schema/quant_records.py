"""report.json's records of how the INT8 model was chosen and where it drifts: auto's candidates, clipped
spikes, per-layer drift, bias shifts (edgeresnet.schema.mapping maps them to and from JSON);
standard library only, like it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClippedSpikeRecord:
    """Values beyond a method's threshold, all saturated at one int8 code (edgeresnet.calibrators.ClippedSpike)."""

    tensor: str
    method: str
    threshold: float
    clipped_share: float
    spike_magnitude: float | None  # |x| of the histogram spike the threshold sits at, if it does
    spike_share: float | None


@dataclass
class CandidateRecord:
    """One method `--method auto` tried: its logits against FP32 on the held-out calibration images."""

    method: str
    score: float  # = sqnr_db; the highest ships
    sqnr_db: float
    agreement: float
    cosine: float


@dataclass
class LayerDriftRecord:
    """One quantized layer of the shipped INT8 model against FP32 (edgeresnet.drift)."""

    depth: int  # position among the quantized layers, graph order
    layer: str
    op_type: str
    tensor: str  # its output, the same name in both graphs
    sqnr_db: float | None  # output against FP32 (accumulated); None: identical
    cosine: float
    input_sqnr_db: float | None  # its quantized input against the FP32 tensor it quantizes
    local_db: float | None  # dB lost at this layer: input SQNR - output SQNR
    clipped_share: float | None  # of its FP32 input, beyond what its QuantizeLinear holds


@dataclass
class BiasShiftRecord:
    """One layer's bias moved by --bias-correction (edgeresnet.bias_correction)."""

    layer: str
    bias: str  # the initializer moved
    form: str  # "float" or "int32"
    mean_abs_shift: float  # mean over output channels of |mean INT8 - FP32 output|
    max_abs_shift: float
