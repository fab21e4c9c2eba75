"""Running a finished artifact on this machine, where it belongs here."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgeresnet.artifact import opened, read_manifest, verify_folder
from edgeresnet.calibration import open_dataset
from edgeresnet.errors import InputError
from edgeresnet.evaluate import accuracy, collect_logits
from edgeresnet.preprocessing import Preprocessing
from edgeresnet.runners import OnnxRuntimeRunner, Runner
from edgeresnet.targets import get_target


def artifact_runner(folder: Path, manifest: dict[str, Any], emulate: bool = False) -> Runner:
    """A runner for the artifact's own files, or a clear refusal when this machine cannot run them."""
    target = get_target(manifest["target"]["name"])
    here = platform.machine()
    if target.backend == "onnxruntime":
        return OnnxRuntimeRunner(folder / manifest["target"]["files"][0], label="Q/DQ INT8")
    if target.backend == "tvm":
        from edgeresnet.targets import aarch64_emulation
        from edgeresnet.targets.tvm_cpu import LIBRARY, QemuRunner, TvmHostRunner

        batch = manifest["input"]["batch"]
        if target.arch == here:
            return TvmHostRunner(folder / LIBRARY, batch, os.cpu_count() or 1, f"{target.name} artifact")
        if target.arch == "aarch64" and emulate:
            runtime = aarch64_emulation.build_runtime()
            return QemuRunner(folder, runtime, target.details["qemu_cpu"], batch, os.cpu_count() or 1)
    hint = " (pass --emulate to run it under qemu)" if target.backend == "tvm" and target.arch == "aarch64" else ""
    raise InputError(
        f"artifact {folder} is built for target {target.name} ({target.arch}, {target.backend}); "
        f"this machine ({here}) cannot run it{hint}"
    )


@contextlib.contextmanager
def verified_runner(artifact: str | Path, emulate: bool = False) -> Iterator[tuple[Path, dict[str, Any], Runner]]:
    """Open (unpacking a .tar.gz), verify, and yield (folder, manifest, runner for its files)."""
    with opened(artifact) as folder:
        verify_folder(folder)
        manifest = read_manifest(folder)
        yield folder, manifest, artifact_runner(folder, manifest, emulate)


def run_artifact(folder: str | Path, input_spec: str, limit: int | None = None, emulate: bool = False) -> dict[str, Any]:
    """Verify the artifact, run it on images/.npy/.npz/IDX input, and return predictions and latency."""
    with verified_runner(folder, emulate) as (_, manifest, runner):
        preprocessing = Preprocessing.from_dict(manifest["input"])
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


def run_times(call: Callable[[], object], warmup: int = 5, runs: int = 50) -> list[float]:
    """Milliseconds of each of `runs` calls, after warm-up calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def summarize_times(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p90_ms": round(float(np.percentile(times, 90)), 3),
            "runs": len(times)}


def latency(call: Callable[[], object], warmup: int = 5, runs: int = 50) -> dict[str, float]:
    """p50/p90 milliseconds of `call`, after warm-up runs."""
    return summarize_times(run_times(call, warmup, runs))


def bench_artifact(folder: str | Path, runs: int = 50) -> dict[str, Any]:
    """INT8 artifact latency against its own FP32 model in ONNX Runtime, on this machine (batch as built)."""
    with verified_runner(folder) as (unpacked, manifest, runner):
        baseline = OnnxRuntimeRunner(unpacked / "model.fp32.onnx", label="FP32")
        shape = [manifest["input"]["batch"], *Preprocessing.from_dict(manifest["input"]).input_shape]
        sample = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        int8 = latency(lambda: runner.infer(sample), runs=runs)
        fp32 = latency(lambda: baseline.infer(sample), runs=runs)
    speedup = fp32["p50_ms"] / int8["p50_ms"] if int8["p50_ms"] else float("inf")
    result = {"artifact": str(folder), "machine": platform.machine(), "batch": shape[0],
              "int8": {"runtime": runner.runtime, **int8}, "fp32": {"runtime": baseline.runtime, **fp32},
              "int8_speedup": round(speedup, 3), "warnings": []}
    if speedup <= 1.0:
        result["warnings"].append(
            "INT8 is not faster than FP32 here: expected on cores without int8 dot products "
            "(x86 without VNNI, Cortex-A72/A53 without sdot)")
    return result
