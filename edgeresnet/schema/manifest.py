"""manifest.json: what the artifact is and the sha256 of every other file; and what `verify` holds to it in a
backend's device config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeresnet.schema.files import MANIFEST_SCHEMA
from edgeresnet.schema.mapping import spread
from edgeresnet.schema.measures import Gate, Stability


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
    preprocessing: dict[str, Any] = spread()
    num_classes: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    dynamic_batch: dict[str, int] | None = None

    @property
    def channels(self) -> int | None:
        return self.preprocessing.get("channels")

    @property
    def input_size(self) -> list[int]:
        return list(self.preprocessing.get("input_size") or [])

    @property
    def class_names(self) -> list[str]:
        return list(self.preprocessing.get("class_names") or [])


@dataclass
class CalibrationRecordEntry:
    """manifest.json's calibration: enough to redo it (data, digest, seed) and the method's options."""

    method: str
    samples: int
    source: str
    sha256: str | None
    seed: int
    options: dict[str, Any] = spread()
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
    provenance: dict[str, Any] = spread()  # a backend's own records (tuning records used, ...)
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
    rest: dict[str, Any] = spread()
