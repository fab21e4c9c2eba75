"""Per-backend build details (report.json's target_details), told apart by the report's quant_profile,
the name of the backend's quantization scheme."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeresnet.schema.mapping import from_json, omit_none, spread


@dataclass
class BuildDetails:
    """A backend's build details (report.json's target_details)."""


@dataclass
class OtherDetails(BuildDetails):
    """The details of a backend with no class of its own, as its mapping."""

    values: dict[str, Any] = spread()


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
    native_runner: dict[str, Any] | None = omit_none()
    instructions: dict[str, int] = spread()  # instruction and kernel counts of the disassembly


BUILD_DETAILS: dict[str, type[BuildDetails]] = {"onnxruntime": OnnxRuntimeDetails, "tensorrt": TensorRtDetails,
                                                 "tvm": TvmDetails}


def details_class(quant_profile: str) -> type[BuildDetails]:
    """The build details class of a quantization scheme (OtherDetails for a backend without one)."""
    return BUILD_DETAILS.get(quant_profile, OtherDetails)


def build_details(quant_profile: str, values: dict[str, Any]) -> BuildDetails:
    """A backend's details mapping as its typed class (OtherDetails for a backend without one)."""
    return from_json(details_class(quant_profile), values, "target_details")
