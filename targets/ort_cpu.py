"""The `ort-cpu` backend: a portable Q/DQ INT8 ONNX model for ONNX Runtime on any CPU."""

from __future__ import annotations

from edgeresnet.atomic import write_bytes_atomically
from edgeresnet.runners import OnnxRuntimeRunner

from . import TargetProfile
from .base import BuildContext, TargetBuild

MODEL_FILE = "model.int8.onnx"


def preflight(profile: TargetProfile) -> None:
    """Nothing to check: the build needs only what edgeresnet itself installs."""


def build(context: BuildContext) -> TargetBuild:
    data = context.int8_model.SerializeToString()
    write_bytes_atomically(context.folder / MODEL_FILE, data)
    return TargetBuild(
        files=[MODEL_FILE],
        runner=OnnxRuntimeRunner(context.folder / MODEL_FILE, label="Q/DQ INT8"),
        details={"model_file": MODEL_FILE},
    )
