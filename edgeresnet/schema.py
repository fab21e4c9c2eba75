"""What an artifact says, typed: report.json, manifest.json, a device report, and the file names they live in.

Every consumer reads and builds these dataclasses by attribute; this module alone
maps them to and from JSON. The mapping is by field, in field order, so a report
written from a `Report` has the keys (and order) report.json has always had:
a field marked `_omit_none` is left out while it is None, a field marked `_spread`
is a mapping whose items sit at that place among the others (open-ended keys such
as a calibration method's own options), and `_key` renames a field whose JSON key
is not an identifier. Nested mappings a backend or a device fills freely stay
`dict[str, Any]`.

Each document carries its schema (name/version) and is refused on read when the
schema is another one. The module imports nothing but the standard library, so the
light commands (verify) stay light.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

from edgeresnet.quant_records import BiasShiftRecord, CandidateRecord, ClippedSpikeRecord, LayerDriftRecord

# File names of an artifact folder.
FP32_MODEL_FILE = "model.fp32.onnx"
REPORT_FILE = "report.json"
MODEL_CARD_FILE = "model-card.json"  # the resolved model description, as a card `--card` reads
REPORT_HTML = "report.html"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"  # ed25519 over the exact bytes of manifest.json
DIGEST_SUFFIX = ".manifest.sha256"
GOLDEN_FOLDER = "golden"
DEVICE_REPORT_FILE = "device-report.json"  # written on the board by run.py --check

REPORT_SCHEMA = "edgeresnet.report/1"
MANIFEST_SCHEMA = "edgeresnet.manifest/1"
DEVICE_REPORT_SCHEMA = "edgeresnet.device-report/1"  # targets/templates/device_check.py writes it on the device

T = TypeVar("T")


class SchemaError(ValueError):
    """A document that does not map onto its dataclass (wrong schema, a missing or mistyped field)."""


def _omit_none(default: Any = None) -> Any:
    return field(default=default, metadata={"omit_none": True})


def _spread() -> Any:
    return field(default_factory=dict, metadata={"spread": True})


def _key(name: str, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"key": name})


# --- report.json --------------------------------------------------------------------------------------

@dataclass
class Gate:
    max_drop: float | None
    passed: bool


@dataclass
class Drift:
    """How far a runner's logits drift from the reference's on the same inputs (edgeresnet.metrics computes it)."""

    agreement: float  # share of inputs whose top-1 class matches the reference
    cosine: float  # mean cosine similarity of logit vectors
    sqnr_db: float | None  # None: unbounded (identical logits), JSON null
    max_abs_diff: float

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)


@dataclass
class DeviceDrift(Drift):
    mean_abs_diff: float | None = None


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
    bit_identical_to: dict[str, Any] | None = _omit_none()  # the sampled runner this whole-set figure stands for
    samples: int = 0
    top1: float | None = _omit_none()  # percent; absent on unlabelled data
    top5: float | None = _omit_none()
    per_class: list[float] | None = _omit_none()
    pytorch_agreement: PytorchAgreement | None = _omit_none()  # the FP32 row: ONNX Runtime against PyTorch
    drop_pts: float | None = _omit_none()  # extra rows: against FP32
    agreement: float | None = _omit_none()


@dataclass
class Stability:
    first_half_samples: int
    max_scale_change: float | None
    tensor: str | None
    threshold: float
    trusted: bool


@dataclass
class CalibrationSummary:
    """report.json's calibration: the data, the method and its own options, how stable the scales were."""

    source: str
    samples: int
    sha256: str | None
    labelled: bool
    method: str
    options: dict[str, Any] = _spread()  # the method's own (percentile, num_bins, ...)
    stability: Stability | None = None
    warning: str | None = None
    requested: str | None = _omit_none()  # "auto" when auto chose `method`
    inferences: int | None = _omit_none()  # images run through a model to calibrate (and, with auto, to score)
    clipped_spikes: list[ClippedSpikeRecord] | None = _omit_none()  # tensors the shipped ranges clip >= 1% of
    candidates: list[CandidateRecord] | None = _omit_none()  # auto: every method's score on held-out images
    held_out_samples: int | None = _omit_none()
    selection_score: str | None = _omit_none()
    why: str | None = _omit_none()


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


# Per-backend build details (report.json's target_details), told apart by the report's quant_profile,
# the name of the backend's quantization scheme.

@dataclass
class BuildDetails:
    """A backend's build details (report.json's target_details)."""


@dataclass
class OtherDetails(BuildDetails):
    """The details of a backend with no class of its own, as its mapping."""

    values: dict[str, Any] = _spread()


@dataclass
class OnnxRuntimeDetails(BuildDetails):
    model_file: str = ""


@dataclass
class TensorRtDetails(BuildDetails):
    parser_checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # TensorRT version -> parser check
    trt_versions: list[str] = field(default_factory=list)
    activation_scales: int = 0
    dla: dict[str, Any] | None = None
    float_layers: dict[str, Any] | None = None


@dataclass
class TvmDetails(BuildDetails):
    llvm_target: dict[str, Any] = field(default_factory=dict)
    lowering: dict[str, int] = field(default_factory=dict)
    integer_share: float = 0.0
    schedules: dict[str, Any] = field(default_factory=dict)
    scheduled_share: float = 0.0
    parallel_split: dict[str, Any] = field(default_factory=dict)
    toolchain: dict[str, Any] = field(default_factory=dict)
    native_runner: dict[str, Any] | None = _omit_none()
    instructions: dict[str, int] = _spread()  # instruction and kernel counts of the disassembly


BUILD_DETAILS: dict[str, type[BuildDetails]] = {"onnxruntime": OnnxRuntimeDetails, "tensorrt": TensorRtDetails,
                                                 "tvm": TvmDetails}


def build_details(quant_profile: str, values: dict[str, Any]) -> BuildDetails:
    """A backend's details mapping as its typed class (OtherDetails for a backend without one)."""
    return from_json(BUILD_DETAILS.get(quant_profile, OtherDetails), values, "target_details")


@dataclass
class ArtifactRef:
    """In a combined report (report --device): the artifact build it was made from."""

    path: str
    manifest_sha256: str


@dataclass
class DeviceColumn:
    """One device's measurement beside the host's in a combined report."""

    label: str
    file: str  # the device report's copy, relative to the combined report's folder
    device: DeviceFacts
    source: str | None = _omit_none()
    samples: int | None = _omit_none()
    int8: DeviceRun | None = _omit_none()
    fp32: DeviceRun | None = _omit_none()
    host_int8: DeviceRun | None = _omit_none()
    drop_pts: float | None = _omit_none()
    agreement: float | None = _omit_none()
    drift: DeviceDrift | None = _omit_none()
    host_drop_pts: float | None = _omit_none()
    host_agreement: float | None = _omit_none()
    host_drift: DeviceDrift | None = _omit_none()
    latency_ms: dict[str, Any] | None = _omit_none()
    budget: dict[str, Any] | None = _omit_none()
    passed: bool | None = _omit_none()
    verdict: str | None = _omit_none()
    reasons: list[str] | None = _omit_none()
    note: str | None = _omit_none()


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
    target_details: BuildDetails
    extra_measurements: list[RunnerResult]
    not_measured: list[str]
    confusion: Confusion  # kept so that `report --device` can render report.html again with every plot
    model_description: ModelSummary
    warnings: list[str] = field(default_factory=list)
    layer_drift: list[LayerDriftRecord] | None = _omit_none()  # every quantized layer, graph order
    layer_drift_samples: int | None = _omit_none()  # evaluation images it was measured on
    bias_correction: list[BiasShiftRecord] | None = _omit_none()  # with --bias-correction
    preprocessing_check: dict[str, Any] | None = None  # PreprocessingCheck.to_dict(); None: not run (no weights)
    devices: list[DeviceColumn] | None = _omit_none()  # combined reports only
    artifact: ArtifactRef | None = _omit_none()  # combined reports only
    schema: str = REPORT_SCHEMA

    @property
    def passed(self) -> bool:
        return self.gate.passed


# --- manifest.json ------------------------------------------------------------------------------------

@dataclass
class ModelRecord:
    name: str
    arch: str
    weights_sha256: str | None
    weights_file: str | None


@dataclass
class InputRecord:
    """What the model takes: batch, tensor, preprocessing (Preprocessing.to_dict's keys), head, and whence."""

    batch: int
    dtype: str
    name: str
    preprocessing: dict[str, Any] = _spread()
    num_classes: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    dynamic_batch: dict[str, int] | None = None

    @property
    def channels(self) -> int | None:
        return self.preprocessing.get("channels")

    @property
    def input_size(self) -> list[int]:
        return list(self.preprocessing.get("input_size") or [])


@dataclass
class CalibrationRecordEntry:
    """manifest.json's calibration: enough to redo it (data, digest, seed) and the method's options."""

    method: str
    samples: int
    source: str
    sha256: str | None
    seed: int
    options: dict[str, Any] = _spread()
    stability: Stability | None = None
    warning: str | None = None


@dataclass
class TargetRecord:
    name: str
    backend: str
    quant_profile: str
    description: str
    arch: str
    details: dict[str, Any]  # the target profile's own (Target.details)
    files: list[str]  # the files this target ships


@dataclass
class AccuracyRecord:
    drop_pts: float | None  # None on unlabelled data
    agreement: float
    gate: Gate
    fp32_top1: float | None
    int8_top1: float | None
    int8_runtime: str
    eval_samples: int


@dataclass
class Manifest:
    """manifest.json: what the artifact is and the sha256 of every other file. `build` is the one field no
    hash covers (timestamps, durations, host), so identical inputs give identical file hashes."""

    edgeresnet_version: str
    model: ModelRecord
    input: InputRecord
    calibration: CalibrationRecordEntry
    target: TargetRecord
    toolchain: dict[str, str]
    provenance: dict[str, Any] = _spread()  # a backend's own records (tuning records used, ...)
    accuracy: AccuracyRecord | None = None
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    build: dict[str, Any] = field(default_factory=dict)
    schema: str = MANIFEST_SCHEMA


@dataclass
class DeviceConfig:
    """What `verify` holds to the manifest in a backend's device config (deploy.json, bundle.json); the rest
    of it is the backend's own."""

    target: str | None = None
    preprocessing: dict[str, Any] | None = None
    input_shape: list[int] | None = None
    rest: dict[str, Any] = _spread()


# --- device-report.json (written on the device by device_check.py; read here) ------------------------

@dataclass
class DeviceFacts:
    """What the device is (device_check.device_facts), or the device farm a validation ran on."""

    machine: str | None = _omit_none()
    cpu_model: str | None = _omit_none()
    cpu_count: int | None = _omit_none()
    board: str | None = _omit_none()
    kernel: str | None = _omit_none()
    l4t_release: str | None = _omit_none()
    power_mode: str | None = _omit_none()
    python: str | None = _omit_none()
    numpy: str | None = _omit_none()
    rpc: str | None = _omit_none()
    boards: int | None = _omit_none()
    servers: list[str] | None = _omit_none()
    runtime: dict[str, Any] = field(default_factory=dict)
    rest: dict[str, Any] = _spread()


@dataclass
class DeviceRun:
    """One runtime's figures in a device report (the device's INT8, the host's INT8, FP32)."""

    runtime: str
    arch: str | None = _omit_none()
    samples: int = 0
    top1: float | None = _omit_none()


@dataclass(kw_only=True)
class DeviceReport:
    """Fields in the order device_check.py writes them."""

    schema: str = DEVICE_REPORT_SCHEMA
    source: str
    samples: int
    device: DeviceFacts
    int8: DeviceRun
    latency_ms: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    note: str | None = _omit_none()  # no host references for the inputs: accuracy only
    model: str | None = _omit_none()
    target: str | None = _omit_none()
    fp32: DeviceRun | None = _omit_none()
    host_int8: DeviceRun | None = _omit_none()
    drop_pts: float | None = _omit_none()
    agreement: float | None = _omit_none()
    drift: DeviceDrift | None = _omit_none()
    host_drop_pts: float | None = _omit_none()
    host_agreement: float | None = _omit_none()
    host_drift: DeviceDrift | None = _omit_none()
    passed: bool
    reasons: list[str] = field(default_factory=list)
    verdict: str = ""


SCHEMAS: dict[type, str] = {Report: REPORT_SCHEMA, Manifest: MANIFEST_SCHEMA, DeviceReport: DEVICE_REPORT_SCHEMA}
# Where `schema` sits in each document's JSON (first, as the files have it), and the order of the rest.
_FIRST = ("schema",)


# --- the mapping --------------------------------------------------------------------------------------

def to_json(value: Any) -> Any:
    """A dataclass (or a list/dict of them) as JSON-ready values, keys in field order."""
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        ordered = sorted(fields(value), key=lambda f: f.name not in _FIRST)  # schema first
        for f in ordered:
            item = getattr(value, f.name)
            if f.metadata.get("omit_none") and item is None:
                continue
            if f.metadata.get("spread"):
                out.update(to_json(item))
                continue
            out[f.metadata.get("key", f.name)] = to_json(item)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


def _convert(hint: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        if data is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], data, where) if len(options) == 1 else data
    if isinstance(hint, type) and is_dataclass(hint):
        return from_json(hint, data, where)
    if origin is list and data is not None:
        (item,) = typing.get_args(hint)
        if not isinstance(data, list):
            raise SchemaError(f"{where}: a list was expected, not {type(data).__name__}")
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
    return data


def from_json(cls: type[T], data: Any, where: str = "") -> T:
    """`data` (parsed JSON) as a `cls`, nested dataclasses included; a missing required field is a SchemaError."""
    if not isinstance(data, dict):
        raise SchemaError(f"{where or cls.__name__}: an object was expected, not {type(data).__name__}")
    hints = _hints(cls)
    claimed = {f.metadata.get("key", f.name) for f in fields(cls) if not f.metadata.get("spread")}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        key = f.metadata.get("key", f.name)
        if f.metadata.get("spread"):
            values[f.name] = {k: v for k, v in data.items() if k not in claimed}
        elif key in data:
            values[f.name] = _convert(hints[f.name], data[key], f"{where}.{key}" if where else key)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise SchemaError(f"{where or cls.__name__} lacks {key}")
    if cls is Report and isinstance(data.get("target_details"), dict):
        details_class = BUILD_DETAILS.get(str(data.get("quant_profile")), OtherDetails)
        values["target_details"] = from_json(details_class, data["target_details"], "target_details")
    return cls(**values)


def schema_of(data: Any) -> str | None:
    """The schema a parsed document names, if it is an object that names one."""
    return data.get("schema") if isinstance(data, dict) else None


def parse(cls: type[T], text: str, source: str | Path) -> T:
    """A document of schema `SCHEMAS[cls]` from its JSON text; SchemaError names `source` when it is not one."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{source}: not valid JSON ({exc})") from None
    schema = schema_of(data)
    if schema != SCHEMAS[cls]:
        raise SchemaError(f"{source}: unknown schema {schema!r} (expected {SCHEMAS[cls]})")
    try:
        return from_json(cls, data)
    except SchemaError as exc:
        raise SchemaError(f"{source}: {exc}") from None
    except TypeError as exc:
        raise SchemaError(f"{source}: {exc}") from None


def read(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    return parse(cls, path.read_text(), path)


def dumps(document: Any) -> str:
    """The JSON text of a document as the artifact files hold it (two-space indent, a final newline)."""
    return json.dumps(to_json(document), indent=2) + "\n"


def write(document: Any, path: str | Path) -> None:
    Path(path).write_text(dumps(document))
