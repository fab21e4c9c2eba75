"""Running a finished artifact on this machine, where it belongs here."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeresnet.artifact import read_manifest, verify
from edgeresnet.calibration import open_dataset
from edgeresnet.errors import CheckFailed
from edgeresnet.evaluate import accuracy, collect_logits
from edgeresnet.preprocessing import Preprocessing
from edgeresnet.runners import OnnxRuntimeRunner, Runner
from edgeresnet.targets import get_target


def artifact_runner(folder: Path, manifest: dict[str, Any], **runtime_options) -> Runner:
    """A runner for the artifact's own files, or a clear refusal when this machine cannot run them."""
    target = get_target(manifest["target"]["name"])
    if target.backend == "onnxruntime":
        return OnnxRuntimeRunner(folder / manifest["target"]["files"][0], label="Q/DQ INT8")
    raise CheckFailed(
        f"artifact {folder} is built for target {target.name} ({target.arch}, {target.backend}); "
        f"this machine ({platform.machine()}) cannot run it"
    )


def run_artifact(folder: str | Path, input_spec: str, limit: int | None = None, **runtime_options) -> dict[str, Any]:
    """Verify the artifact, run it on images/.npy/.npz/IDX input, and return predictions and latency."""
    folder = Path(folder)
    verify(folder)
    manifest = read_manifest(folder)
    preprocessing = Preprocessing.from_dict(manifest["input"])
    runner = artifact_runner(folder, manifest, **runtime_options)
    data = open_dataset(input_spec, preprocessing, limit=limit)
    started = time.perf_counter()
    logits = collect_logits(runner, data.images, progress=False)
    seconds = time.perf_counter() - started
    names = preprocessing.class_names
    predictions = [int(i) for i in logits.argmax(1)]
    result = {
        "artifact": str(folder), "target": manifest["target"]["name"], "runtime": runner.runtime, "samples": len(data),
        "predictions": [{"index": i, "class": p, "name": names[p] if p < len(names) else str(p)} for i, p in enumerate(predictions)],
        "ms_per_image": round(seconds * 1000 / len(data), 3),
    }
    if data.labels is not None:
        result["top1"] = accuracy(logits, data.labels).top1
    return result


def latency(runner: Runner, sample: np.ndarray, warmup: int = 5, runs: int = 50) -> dict[str, float]:
    batch = sample[: runner.static_batch or 1]
    for _ in range(warmup):
        runner.infer(batch)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        runner.infer(batch)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90)), "runs": runs}
