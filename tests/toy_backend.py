"""A fourth backend, as a newcomer would add one: this module and one `register_backend` call.

"onnx-reference" ships the Q/DQ model as it is and runs it in ONNX Runtime with graph
optimizations off: the exact Q/DQ arithmetic, a reference any other runtime can be
compared with. Nothing else in the project knows of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from edgeresnet.atomic import write_bytes_atomically
from edgeresnet.runners import OnnxRuntimeRunner
from edgeresnet.schema import Manifest
from edgeresnet.targets.base import Backend, BuildContext, Target, TargetBuild, TargetDetails
from edgeresnet.targets.onnxruntime.backend import ONNXRUNTIME_SCHEME

MODEL_FILE = "model.qdq.onnx"


@dataclass(frozen=True)
class ReferenceDetails(TargetDetails):
    optimizations: str


class OnnxReferenceBackend(Backend):
    name = "onnx-reference"
    quant_scheme = replace(ONNXRUNTIME_SCHEME, name="onnx-reference", activation_symmetric=True,
                           description="symmetric int8 Q/DQ, executed op by op")
    dynamic_batch = False

    def targets(self) -> list[Target]:
        return [Target("reference-cpu", self.name, "exact Q/DQ numerics in ONNX Runtime, op by op", "any",
                       ReferenceDetails(optimizations="off"), aliases=("qdq-reference",))]

    def build(self, context: BuildContext) -> TargetBuild:
        write_bytes_atomically(context.folder / MODEL_FILE, context.int8_model.SerializeToString())
        return TargetBuild([MODEL_FILE], self._runner(context.folder), {"model_file": MODEL_FILE},
                           ["nothing: this backend runs wherever ONNX Runtime does"])

    def open_artifact(self, target: Target, folder: Path, manifest: Manifest):
        return self._runner(folder)

    def toolchain(self, target: Target) -> dict[str, str]:
        return {"executor": "onnxruntime, graph optimizations off"}

    @staticmethod
    def _runner(folder: Path) -> OnnxRuntimeRunner:
        return OnnxRuntimeRunner(folder / MODEL_FILE, optimize=False, label="exact Q/DQ")
