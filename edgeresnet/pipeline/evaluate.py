"""`evaluate`: any ONNX model in ONNX Runtime against the FP32 model (exported, checked against PyTorch), on the same images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from edgeresnet import DEFAULT_MODEL
from edgeresnet.errors import InputError
from edgeresnet.drift import LayerDrift, drift_sample, layer_drift
from edgeresnet.evaluate import Measurement, against, evaluate_together
from edgeresnet.models import ModelDescription, load_model
from edgeresnet.export import PytorchAgreement, export_onnx_model
from edgeresnet.runners import OnnxRuntimeRunner

from edgeresnet.schema import DataSummary, to_json

from .frontend import evaluation_data, fp32_reference


@dataclass
class EvaluateResult:
    measurement: Measurement
    evaluation: DataSummary  # the data set, as reports describe it
    pytorch_agreement: PytorchAgreement  # the FP32 reference against PyTorch
    layer_drift: list[LayerDrift] | None = None  # with --layers: every quantized layer, in graph order
    layer_drift_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        m = self.measurement
        fp32 = {**m.fp32.to_dict(), "pytorch_agreement": self.pytorch_agreement.to_dict()}
        result = {"fp32": fp32, "onnx": m.tested.to_dict(), "drop_pts": m.drop if m.tested.accuracy is not None else None,
                  "agreement": m.drift.agreement, "drift": m.drift.to_dict(), "evaluation": to_json(self.evaluation)}
        if self.layer_drift is None:
            return result
        return {**result, "layer_drift": to_json(self.layer_drift), "layer_drift_samples": self.layer_drift_samples}


def evaluate_onnx(
    onnx_model: str | Path, model: str = DEFAULT_MODEL, weights: str | None = None, eval: str | None = None,
    eval_samples: int | None = None, seed: int = 0, progress: bool = True, description: ModelDescription | None = None,
    layers: bool = False,
    labels: str | None = None,
) -> EvaluateResult:
    if seed < 0:
        raise InputError(f"--seed must be zero or more, not {seed}")
    loaded = load_model(model, weights, description)
    # Quiet: evaluate prints its one result line (which says when the data is unlabelled), or one error line.
    data = evaluation_data(loaded, eval, eval_samples, seed, labels, progress=False)
    try:
        runner = OnnxRuntimeRunner(Path(onnx_model), any_batch=True)
    except Exception as exc:  # ORT raises its own exception types for bad files
        raise InputError(f"{onnx_model}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
    shape = runner.session.get_inputs()[0].shape
    if list(shape[1:]) != list(loaded.preprocessing.input_shape) or len(runner.session.get_outputs()[0].shape) != 2:
        raise InputError(f"{onnx_model}: takes input {shape} and is not a classifier of {list(loaded.preprocessing.input_shape)} images like model {loaded.name}")
    fp32_model = export_onnx_model(loaded)
    fp32_runner, pytorch_agreement = fp32_reference(loaded, fp32_model, data)
    fp32, tested = evaluate_together([fp32_runner, runner], data, "FP32 and ONNX model", progress)
    result = EvaluateResult(against(fp32, tested), data.describe(), pytorch_agreement)
    if layers:
        sample = drift_sample(data)
        result.layer_drift = layer_drift(fp32_model, onnx.load(onnx_model), sample)
        result.layer_drift_samples = len(sample)
    return result
