"""Per-layer quantization sensitivity, and the float fallback that meets an accuracy budget."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from tqdm import tqdm

from edgeresnet.calibration import Dataset
from edgeresnet.evaluate import collect_logits, compare, samples_within
from edgeresnet.quantize import keep_in_float, quantized_layers
from edgeresnet.runners import OnnxRuntimeRunner, dynamic_batch_copy
from edgeresnet.schema import FallbackStep, LayerSensitivity


# Input values per layer's measurement: all 512 default calibration images of a
# 28x28 model, 32 images (the floor) at 224x224, so a ResNet-18 compile stays in minutes.
SENSITIVITY_INPUT_BUDGET = 512 * 28 * 28
MIN_SENSITIVITY_SAMPLES = 32


def sensitivity_sample(data: Dataset | np.ndarray) -> np.ndarray:
    """The images sensitivity is measured on: the first of the calibration samples that fit the input budget."""
    count = min(len(data), samples_within(SENSITIVITY_INPUT_BUDGET, data.shape[1:], MIN_SENSITIVITY_SAMPLES))
    return data.take(np.arange(count)) if isinstance(data, Dataset) else np.asarray(data[:count])


def layer_sensitivity(
    int8_model: onnx.ModelProto, fp32_logits: np.ndarray, images: Dataset | np.ndarray, progress: bool = True
) -> list[LayerSensitivity]:
    """Quantize one layer at a time (all others in float) and measure the logits' drift from FP32.

    Measured on the calibration samples, not the evaluation set, so choosing
    fallback layers does not fit the test data; on the first of them that fit the
    input budget (`sensitivity_sample`; `fp32_logits` holds at least their FP32 logits).
    Each candidate is another graph, so each gets its own ONNX Runtime session, on a
    dynamic-batch copy so that the sample runs in one call, with Q/DQ left unfused (the graph's
    fake-quant arithmetic on ORT's optimized float kernels). Returned most sensitive first.
    """
    images = sensitivity_sample(images)
    fp32_logits = fp32_logits[: len(images)]
    layers = quantized_layers(int8_model)
    op_types = {n.name: n.op_type for n in int8_model.graph.node}
    batched = dynamic_batch_copy(int8_model) or int8_model
    results = []
    for layer in tqdm(layers, desc="sensitivity", unit="layer", disable=None if progress else True, leave=False):
        only_this = keep_in_float(batched, [other for other in layers if other != layer])
        logits = collect_logits(OnnxRuntimeRunner(only_this.SerializeToString(), fuse_qdq=False), images, progress=False)
        drift = compare(fp32_logits, logits)
        results.append(LayerSensitivity(layer, op_types[layer], drift.sqnr_db, drift.agreement))
    return sorted(results, key=lambda s: (float("inf") if s.sqnr_db is None else s.sqnr_db, s.layer))


def fall_back_until(
    int8_model: onnx.ModelProto,
    ranking: list[LayerSensitivity],
    initial_drop: float,
    max_drop: float,
    measure_drop: Callable[[onnx.ModelProto], float],
) -> tuple[onnx.ModelProto, list[FallbackStep], float]:
    """Keep the most sensitive layers in float, one more each round, until the drop is within `max_drop`.

    `measure_drop` builds and evaluates a candidate exactly as the shipped
    artifact is evaluated. Returns the final model, the steps and the final drop;
    when every layer is in float and the budget is still missed, the caller
    reports the gate as failed.
    """
    model, drop, steps, kept = int8_model, initial_drop, [], []
    for candidate in ranking:
        if drop <= max_drop:
            break
        kept.append(candidate.layer)
        model = keep_in_float(int8_model, kept)
        new_drop = measure_drop(model)
        steps.append(FallbackStep(candidate.layer, round(new_drop, 4), round(drop - new_drop, 4)))
        drop = new_drop
    return model, steps, drop
