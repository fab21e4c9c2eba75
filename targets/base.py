"""What a target backend receives and returns: one interface for ONNX Runtime, TensorRT and TVM."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import onnx

from edgeresnet.models import LoadedModel
from edgeresnet.runners import Runner

from . import TargetProfile


@dataclass
class BuildContext:
    profile: TargetProfile
    model: LoadedModel
    int8_model: onnx.ModelProto
    folder: Path  # the staging folder of the artifact; write only here
    batch: int
    options: dict[str, Any] = field(default_factory=dict)  # typed per backend by its own dataclass


@dataclass
class TargetBuild:
    files: list[str]  # paths relative to the artifact folder
    runner: Runner  # runs the files that ship, for validation on this machine
    details: dict[str, Any] = field(default_factory=dict)  # backend facts for the report and manifest
    not_measured: list[str] = field(default_factory=list)  # plain statements of what could not be run here
    extra_measurements: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    def build(self, context: BuildContext) -> TargetBuild: ...
