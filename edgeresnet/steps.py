"""The pipeline's steps for users who run them one at a time: quantize, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeresnet import DEFAULT_MODEL
from edgeresnet.atomic import write_bytes_atomically
from edgeresnet.calibration import Dataset, open_dataset
from edgeresnet.errors import InputError
from edgeresnet.evaluate import compare, evaluate
from edgeresnet.export import export_onnx_model
from edgeresnet.models import LoadedModel, load_model
from edgeresnet.quantize import QuantizeConfig, quantize, quantized_layers
from edgeresnet.runners import OnnxRuntimeRunner, TorchRunner

BUILTIN_CALIBRATION = "fashion-mnist:train"
BUILTIN_EVALUATION = "fashion-mnist:test"


def resolve_data(spec: str | None, default: str, loaded: LoadedModel, option: str, limit: int | None, seed: int) -> Dataset:
    """The user's data, or the built-in split for models trained on the built-in data set."""
    if spec is None:
        if loaded.entry.weights is None or "Fashion-MNIST" not in loaded.entry.weights.meta.get("dataset", ""):
            raise InputError(f"model {loaded.name} was not trained on the built-in data set: pass --{option} with your own data")
        spec = default
    return open_dataset(spec, loaded.preprocessing, limit=limit, seed=seed)


def quantize_model(
    output: str | Path, model: str = DEFAULT_MODEL, weights: str | None = None, profile: str = "onnxruntime",
    calib: str | None = None, calib_samples: int = 512, method: str | None = None, seed: int = 0, batch: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    config = QuantizeConfig(profile=profile, method=method)
    loaded = load_model(model, weights)
    data = resolve_data(calib, BUILTIN_CALIBRATION, loaded, "calib", calib_samples, seed)
    int8 = quantize(export_onnx_model(loaded, batch=batch), data.images, config, progress)
    write_bytes_atomically(output, int8.SerializeToString())
    return {"path": str(output), "profile": profile, "method": config.method.value, "samples": len(data),
            "calibration_sha256": data.sha256, "quantized_layers": len(quantized_layers(int8))}


def evaluate_onnx(
    onnx_model: str | Path, model: str = DEFAULT_MODEL, weights: str | None = None, eval: str | None = None,
    eval_samples: int | None = None, seed: int = 0, progress: bool = True,
) -> dict[str, Any]:
    loaded = load_model(model, weights)
    data = resolve_data(eval, BUILTIN_EVALUATION, loaded, "eval", eval_samples, seed)
    try:
        runner = OnnxRuntimeRunner(Path(onnx_model))
    except Exception as exc:  # ORT raises its own exception types for bad files
        raise InputError(f"{onnx_model}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
    shape = runner.session.get_inputs()[0].shape
    if list(shape[1:]) != list(loaded.preprocessing.input_shape) or len(runner.session.get_outputs()[0].shape) != 2:
        raise InputError(f"{onnx_model}: takes input {shape} and is not a classifier of {list(loaded.preprocessing.input_shape)} images like model {loaded.name}")
    fp32 = evaluate(TorchRunner(loaded.module), data, "FP32 reference", progress)
    tested = evaluate(runner, data, "ONNX model", progress)
    drift = compare(fp32.logits, tested.logits)
    drop = (fp32.accuracy.top1 - tested.accuracy.top1) if fp32.accuracy else (1 - drift.agreement) * 100
    return {"fp32": fp32.to_dict(), "onnx": tested.to_dict(), "drop_pts": round(drop, 4),
            "agreement": drift.agreement, "drift": drift.to_dict(), "evaluation": data.describe()}
