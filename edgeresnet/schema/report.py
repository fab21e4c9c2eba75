"""report.json: what the host measured of the artifact's own files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeresnet.schema.details import BuildDetails, details_class
from edgeresnet.schema.device import DeviceColumn
from edgeresnet.schema.files import REPORT_SCHEMA
from edgeresnet.schema.mapping import class_by, omit_none, spread, to_json
from edgeresnet.schema.measures import Drift, Gate, Stability
from edgeresnet.schema.quant_records import BiasShiftRecord, CandidateRecord, ClippedSpikeRecord, LayerDriftRecord


@dataclass
class PytorchAgreement:
    """ONNX Runtime on the exported model against PyTorch on the unfolded network, on the same inputs."""

    images: int
    max_abs_diff: float  # largest |logit difference|
    tolerance: float  # the budget it was held to (scaled by the logits' size)

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)


@dataclass
class RunnerResult:
    """One runner's figures on the evaluation images (a report's fp32, int8 and extra rows)."""

    runtime: str
    arch: str | None = None
    bit_identical_to: dict[str, Any] | None = omit_none()  # the sampled runner this whole-set figure stands for
    samples: int = 0
    top1: float | None = omit_none()  # percent; absent on unlabelled data
    top5: float | None = omit_none()
    per_class: list[float | None] | None = omit_none()  # None: a class without evaluation images
    pytorch_agreement: PytorchAgreement | None = omit_none()  # the FP32 row: ONNX Runtime against PyTorch
    drop_pts: float | None = omit_none()  # extra rows: against FP32
    agreement: float | None = omit_none()


@dataclass
class CalibrationSummary:
    """report.json's calibration: the data, the method and its own options, how stable the scales were."""

    source: str
    samples: int
    sha256: str | None
    labelled: bool
    method: str
    options: dict[str, Any] = spread()  # the method's own (percentile, num_bins, ...)
    stability: Stability | None = None
    warning: str | None = None
    requested: str | None = omit_none()  # "auto" when auto chose `method`
    inferences: int | None = omit_none()  # images run through a model to calibrate (and, with auto, to score)
    clipped_spikes: list[ClippedSpikeRecord] | None = omit_none()  # tensors the shipped ranges clip >= 1% of
    candidates: list[CandidateRecord] | None = omit_none()  # auto: every method's score on held-out images
    held_out_samples: int | None = omit_none()
    selection_score: str | None = omit_none()
    why: str | None = omit_none()


@dataclass
class DataSummary:
    source: str
    samples: int
    sha256: str | None
    labelled: bool


@dataclass(frozen=True)
class FallbackStep:
    layer: str  # the layer moved to float at this step
    drop_pts: float  # the measured drop after the move
    gain_pts: float  # how much the drop shrank with this layer in float

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str
    op_type: str
    sqnr_db: float | None  # logits with only this layer quantized, against FP32; lower = more sensitive, None: unchanged
    agreement: float

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)


@dataclass
class Confusion:
    fp32: list[list[int]] | None
    int8: list[list[int]] | None


@dataclass
class ModelSummary:
    num_classes: int
    preprocessing: dict[str, Any]
    sources: dict[str, str]


@dataclass
class ArtifactRef:
    """In a combined report (report --device): the artifact build it was made from."""

    path: str
    manifest_sha256: str


@dataclass
class Report:
    """report.json: what the host measured of the artifact's own files."""

    model: str
    target: str
    quant_profile: str
    method: str
    samples: int  # calibration samples
    calibration: CalibrationSummary
    evaluation: DataSummary
    class_names: list[str]
    fp32: RunnerResult
    int8: RunnerResult
    drop_pts: float | None  # None on unlabelled data: only the top-1 agreement with FP32 is measured
    agreement: float
    drift: Drift
    gate: Gate
    fallback_layers: list[str]
    fallback_steps: list[FallbackStep]
    sensitivity: list[LayerSensitivity]
    target_details: BuildDetails = field(metadata=class_by("quant_profile", details_class))
    extra_measurements: list[RunnerResult]
    not_measured: list[str]
    confusion: Confusion  # kept so that `report --device` can render report.html again with every plot
    model_description: ModelSummary
    warnings: list[str] = field(default_factory=list)
    layer_drift: list[LayerDriftRecord] | None = omit_none()  # every quantized layer, graph order
    layer_drift_samples: int | None = omit_none()  # evaluation images it was measured on
    bias_correction: list[BiasShiftRecord] | None = omit_none()  # with --bias-correction
    preprocessing_check: dict[str, Any] | None = None  # PreprocessingCheck.to_dict(); None: not run (no weights)
    devices: list[DeviceColumn] | None = omit_none()  # combined reports only
    artifact: ArtifactRef | None = omit_none()  # combined reports only
    # Steps not run because the backend quantizes in its own framework (targets.capabilities.QdqStep), and why.
    skipped_steps: list[str] | None = omit_none()
    schema: str = REPORT_SCHEMA

    @property
    def passed(self) -> bool:
        return self.gate.passed
