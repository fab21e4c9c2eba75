"""Golden vectors: what the device must compute, shipped in every artifact's golden/ folder.

A deterministic sample of the evaluation set (`sample_indices`, the same sampler
as every measurement), preprocessed exactly as the device runners feed it
(float32 NCHW .npy), its labels when known, the FP32 reference logits (PyTorch)
and the INT8 logits the host measured for the shipped model. Nothing is re-run:
the logits are rows of the measurements `compile` already made. The device
check (`targets/templates/device_check.py`, and the native runner) compares the
device's own logits with both.

For TensorRT bundles the same vectors are also written in Polygraphy's JSON
formats, so `polygraphy run model.onnx --trt --load-inputs ... --load-outputs ...`
is a second route to compare the engine with the host.
"""

from __future__ import annotations

import base64
import io
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgeresnet import metrics
from edgeresnet.calibration import Dataset, sample_indices
from edgeresnet.errors import InputError
from edgeresnet.evaluate import Evaluation, Measurement
from edgeresnet.schema import GOLDEN_FOLDER
from edgeresnet.targets.base import PolygraphyNames

FOLDER = GOLDEN_FOLDER
SCHEMA = "edgeresnet.golden/1"  # read by targets/templates/device_check.py and targets/tvm/native/
DEFAULT_SAMPLES = 256
INPUTS, LABELS, FP32_LOGITS, INT8_LOGITS, META = "inputs.npy", "labels.npy", "fp32_logits.npy", "int8_logits.npy", "golden.json"
POLYGRAPHY_INPUTS, POLYGRAPHY_OUTPUTS = "polygraphy_inputs.json", "polygraphy_outputs.json"
# Polygraphy's JSON is base64 of each array: beyond this the files would dwarf the model, so they hold a prefix.
POLYGRAPHY_MAX_BYTES = 32 << 20
POLYGRAPHY_RUNNER = "edgeresnet-host-int8"
# Polygraphy compares element-wise; INT8 engines may round differently, so the tolerance is a share of the logit range.
POLYGRAPHY_ATOL_SHARE = 0.05


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
                 model: str, target: str, polygraphy: PolygraphyNames | None = None) -> list[str]:
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
    }
    if labels is not None:
        meta["host_top1"] = {"fp32": metrics.top1(fp32_logits, labels), "int8": metrics.top1(int8_logits, labels)}
    written = [f"{FOLDER}/{name}" for name in files.values() if name]
    if polygraphy is not None:
        meta["polygraphy"] = write_polygraphy(folder, inputs, int8_logits, polygraphy)
        written += [f"{FOLDER}/{POLYGRAPHY_INPUTS}", f"{FOLDER}/{POLYGRAPHY_OUTPUTS}"]
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")
    return sorted([*written, f"{FOLDER}/{META}"])


def polygraphy_array(array: np.ndarray) -> dict[str, str]:
    """One numpy array as Polygraphy's JSON encoder writes it: base64 of `np.save` bytes, tagged with its class."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return {"array": base64.b64encode(buffer.getvalue()).decode(), "polygraphy_class": "ndarray"}


def write_polygraphy(folder: Path, inputs: np.ndarray, logits: np.ndarray, names: PolygraphyNames) -> dict[str, Any]:
    """`--load-inputs`: a list of feed dicts (one per iteration, the engine's batch each); `--load-outputs`: RunResults."""
    batch = names.batch
    per_iteration = max(1, inputs[:1].nbytes * batch)
    iterations = min(-(-len(inputs) // batch), max(1, POLYGRAPHY_MAX_BYTES // per_iteration))
    # A short last batch is padded with its last row, as the runners pad it (same input, same logits).
    padding = iterations * batch - len(inputs) if iterations * batch > len(inputs) else 0
    inputs = np.concatenate([inputs, np.repeat(inputs[-1:], padding, axis=0)])
    logits = np.concatenate([logits, np.repeat(logits[-1:], padding, axis=0)])
    feeds, results = [], []
    for i in range(iterations):
        rows = slice(i * batch, (i + 1) * batch)
        feeds.append({names.input_name: polygraphy_array(inputs[rows])})
        results.append({
            "outputs": {names.output_name: {"values": polygraphy_array(logits[rows]), "polygraphy_class": "LazyArray"}},
            "runtime": None, "runner_name": POLYGRAPHY_RUNNER, "polygraphy_class": "IterationResult",
        })
    (folder / POLYGRAPHY_INPUTS).write_text(json.dumps(feeds, indent=4) + "\n")
    run_results = {"lst": [[POLYGRAPHY_RUNNER, results]], "polygraphy_class": "RunResults"}
    (folder / POLYGRAPHY_OUTPUTS).write_text(json.dumps(run_results, indent=4) + "\n")
    atol = round(POLYGRAPHY_ATOL_SHARE * float(np.abs(logits).max()), 4)
    common = (f"polygraphy run {names.model_file} --trt --load-inputs {FOLDER}/{POLYGRAPHY_INPUTS} "
              f"--load-outputs {FOLDER}/{POLYGRAPHY_OUTPUTS} --atol {atol} --rtol 0")
    if names.dynamic:
        common += f" --input-shapes {names.input_name}:[{','.join(str(d) for d in inputs[:batch].shape)}]"
    return {
        "iterations": iterations, "batch": batch, "samples": min(iterations * batch, len(inputs) - padding),
        "input_name": names.input_name, "output_name": names.output_name, "runner_name": POLYGRAPHY_RUNNER,
        "atol": atol, "rtol": 0.0,
        "commands": {"tensorrt_8": f"{common} --int8 --fp16", "tensorrt_10": f"{common} --strongly-typed",
                     "tensorrt_11": f"{common} --strongly-typed"},
    }
