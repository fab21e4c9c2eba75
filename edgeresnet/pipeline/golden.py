"""Golden vectors: what the device must compute, shipped in every artifact's golden/ folder.

A deterministic sample of the evaluation set (`sample_indices`, the same sampler
as every measurement), preprocessed exactly as the device runners feed it
(float32 NCHW .npy), its labels when known, the FP32 reference logits (PyTorch)
and the INT8 logits the host measured for the shipped model. Nothing is re-run:
the logits are rows of the measurements `compile` already made. The device
check (`targets/templates/device_check.py`, and the native runner) compares the
device's own logits with both. A backend's device tools may read the same vectors
in their own formats (`TargetBuild.golden_tools`): they are written beside them.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgeresnet import metrics
from edgeresnet.calibration import Dataset, sample_indices
from edgeresnet.errors import InputError
from edgeresnet.evaluate import Evaluation, Measurement
from edgeresnet.schema import GOLDEN_FOLDER, GOLDEN_SCHEMA
from edgeresnet.targets.base import GoldenTool

FOLDER = GOLDEN_FOLDER
SCHEMA = GOLDEN_SCHEMA
DEFAULT_SAMPLES = 256
INPUTS, LABELS, FP32_LOGITS, INT8_LOGITS, META = "inputs.npy", "labels.npy", "fp32_logits.npy", "int8_logits.npy", "golden.json"


def check_samples(samples: int) -> None:
    if samples < 1:
        raise InputError(f"--golden-samples must be at least 1, not {samples}")


def host_measurement(main: Measurement, references: list[Measurement], total: int) -> Measurement:
    """The host's INT8 measurement of the shipped model on the whole evaluation set.

    The main measurement when it covers every image (ONNX Runtime targets, Jetson,
    TVM x86-64); for aarch64 TVM targets, whose main measurement is the emulated
    library on a sample, the host build of the same integer module.
    """
    for measurement in (main, *references):
        if measurement.tested.samples == total:
            return measurement
    raise ValueError("no INT8 measurement covers the whole evaluation set")


def write_golden(staging: Path, samples: int, seed: int, evaluation: Dataset, fp32: Evaluation, host: Measurement,
                 model: str, target: str, tools: list[GoldenTool] | tuple[GoldenTool, ...] = ()) -> list[str]:
    """Write golden/ into the staging folder; returns the files written (relative to the artifact)."""
    index = sample_indices(len(evaluation), samples, seed)
    folder = staging / FOLDER
    folder.mkdir(exist_ok=True)
    inputs = np.ascontiguousarray(evaluation.take(index), dtype=np.float32)  # only the sample is read
    fp32_logits = np.ascontiguousarray(fp32.logits[index], dtype=np.float32)
    int8_logits = np.ascontiguousarray(host.tested.logits[index], dtype=np.float32)
    labels = None if evaluation.labels is None else np.ascontiguousarray(evaluation.labels[index], dtype=np.int64)
    files = {"inputs": INPUTS, "fp32_logits": FP32_LOGITS, "int8_logits": INT8_LOGITS, "labels": LABELS if labels is not None else None}
    np.save(folder / INPUTS, inputs)
    np.save(folder / FP32_LOGITS, fp32_logits)
    np.save(folder / INT8_LOGITS, int8_logits)
    if labels is not None:
        np.save(folder / LABELS, labels)
    meta: dict[str, Any] = {
        "schema": SCHEMA,
        "model": model,
        "target": target,
        "samples": len(index),
        "seed": seed,
        "source": evaluation.source,
        "indices": index.tolist(),
        "input": {"dtype": "float32", "layout": "NCHW", "shape": list(inputs.shape),
                  "preprocessed": "exactly as the device runners feed it (run.py --npy takes it as is)"},
        "files": files,
        "fp32_runtime": fp32.result().runtime,
        "int8_runtime": host.tested.result().runtime,
        "host_arch": host.tested.result().arch or platform.machine(),
        **({} if labels is None else
           {"host_top1": {"fp32": metrics.top1(fp32_logits, labels), "int8": metrics.top1(int8_logits, labels)}}),
    }
    written = [f"{FOLDER}/{name}" for name in files.values() if name]
    for tool in tools:
        meta[tool.name], tool_files = tool.write(folder, inputs, int8_logits)
        written += [f"{FOLDER}/{name}" for name in tool_files]
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")
    return sorted([*written, f"{FOLDER}/{META}"])


