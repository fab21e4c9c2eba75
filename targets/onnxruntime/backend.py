"""The `ort-cpu` target: a portable Q/DQ INT8 ONNX model for ONNX Runtime on any CPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeresnet.schema import Manifest
from edgeresnet.atomic import write_bytes_atomically
from edgeresnet.quant_scheme import CalibrationMethod, QuantScheme

from ..base import Backend, BuildContext, Target, TargetBuild, TargetDetails

MODEL_FILE = "model.int8.onnx"

ONNXRUNTIME_SCHEME = QuantScheme(
    name="onnxruntime",
    description="ONNX Runtime's recommended CPU scheme: QDQ, S8S8, asymmetric activations, int32 bias",
    op_types=("Conv", "Gemm", "Add", "MaxPool", "GlobalAveragePool", "Flatten", "Relu"),
    activation_signed=True,
    activation_symmetric=False,
    quantize_bias=True,
    float_weights_with_qdq=False,
    dedicated_qdq_per_consumer=False,
    unquantized_outputs_of=(),
    residual_aware=False,
    calibration=CalibrationMethod.MINMAX,
    per_channel_axis={"Conv": 0},
)


@dataclass(frozen=True)
class OnnxRuntimeDetails(TargetDetails):
    runtime: str
    execution_provider: str


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    quant_scheme = ONNXRUNTIME_SCHEME
    dynamic_batch = True

    def targets(self) -> list[Target]:
        return [Target(
            name="ort-cpu", backend=self.name, arch="any",
            description="portable INT8 Q/DQ ONNX model for ONNX Runtime on any CPU",
            details=OnnxRuntimeDetails(runtime="onnxruntime >= 1.17", execution_provider="CPUExecutionProvider"),
        )]

    def build(self, context: BuildContext) -> TargetBuild:
        from edgeresnet.runners import OnnxRuntimeRunner

        write_bytes_atomically(context.folder / MODEL_FILE, context.int8_model.SerializeToString())
        return TargetBuild(
            files=[MODEL_FILE],
            # Evaluated in batches on a dynamic-batch copy: the same graph, more images per call.
            runner=OnnxRuntimeRunner(context.folder / MODEL_FILE, label="Q/DQ INT8", any_batch=True),
            details={"model_file": MODEL_FILE},
        )

    def open_artifact(self, target: Target, folder: Path, manifest: Manifest):
        from edgeresnet.runners import OnnxRuntimeRunner

        return OnnxRuntimeRunner(folder / MODEL_FILE, label="Q/DQ INT8")
