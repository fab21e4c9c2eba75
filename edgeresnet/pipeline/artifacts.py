"""A finished artifact on this machine: `verify`, `run` and `bench`.

Each opens the artifact (a folder, or a .tar.gz unpacked safely), verifies it, and
asks the artifact's backend for a runner of its own files; a backend refuses in one
line when this machine cannot run them.
"""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeresnet.schema import FP32_MODEL_FILE, Manifest
from edgeresnet.artifact import Verification, check_device_config, opened, read_manifest, verify_folder
from edgeresnet.calibration import open_inputs
from edgeresnet.errors import CheckFailed, InputError
from edgeresnet.evaluate import accuracy, collect_logits
from edgeresnet.preprocessing import Preprocessing
from edgeresnet.runners import OnnxRuntimeRunner, Runner
from edgeresnet.targets import backend_of, describe, get_target
from edgeresnet.targets.capabilities import Emulation
from edgeresnet.timing import latency


def verify(artifact: str | Path, digest: str | None = None, public_key: str | Path | None = None) -> Verification:
    """Check the manifest (digest, signature), every file's hash, the target's files, the manifest's claims
    against the content, and that the target is one edgeresnet knows, described as the manifest says."""
    with opened(artifact) as folder:
        result = check_artifact_folder(folder, digest, public_key)
    return replace(result, artifact=str(artifact))


def check_artifact_folder(folder: Path, digest: str | None = None, public_key: str | Path | None = None) -> Verification:
    """`verify_folder`, then what only the registry knows: the target exists, is described as recorded, and
    its backend's device config agrees with the manifest."""
    result = verify_folder(folder, digest, public_key)
    manifest = read_manifest(folder)
    try:
        target = get_target(result.target)
    except InputError as exc:
        raise CheckFailed(f"manifest target.name: {exc}") from None
    # The registry's description of the target against the manifest's copy: an edited target name
    # (or backend, arch, CPU) no longer matches the rest of what was recorded at build time.
    known = describe(target)
    for key in ("backend", "arch", "quant_profile"):  # identity, not wording that may improve between versions
        recorded, value = getattr(manifest.target, key), known[key]
        if recorded != value:
            raise CheckFailed(f"manifest target.{key} is {recorded!r}, but target {target.name} "
                              f"has {value!r}: the manifest was edited or comes from another edgeresnet")
    config = backend_of(target).device_config
    if config:
        check_device_config(folder, manifest, config)
    return result


@contextlib.contextmanager
def verified_runner(artifact: str | Path, emulate: bool = False) -> Iterator[tuple[Path, Manifest, Runner]]:
    """Open (unpacking a .tar.gz), verify, and yield (folder, manifest, runner for its files)."""
    with opened(artifact) as folder:
        check_artifact_folder(folder)
        manifest = read_manifest(folder)
        target = get_target(manifest.target.name)
        backend = backend_of(target)
        try:
            if emulate and isinstance(backend, Emulation):
                runner = backend.open_emulated(target, folder, manifest)
            else:  # nothing to emulate: the artifact runs here or nowhere
                runner = backend.open_artifact(target, folder, manifest)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise CheckFailed(f"{folder}: its files do not fit its manifest's target {target.name} ({exc})") from None
        yield folder, manifest, runner


@dataclass
class Prediction:
    index: int
    klass: int
    name: str
    score: float  # softmax probability of the predicted class
    file: str | None = None  # the image file, for inputs read from files

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "file": self.file, "class": self.klass, "name": self.name, "score": self.score}


@dataclass
class RunResult:
    artifact: str
    target: str
    runtime: str
    samples: int
    predictions: list[Prediction]
    ms_per_image: float
    top1: float | None = None  # when the input has labels

    def to_dict(self) -> dict[str, Any]:
        result = {"artifact": self.artifact, "target": self.target, "runtime": self.runtime, "samples": self.samples,
                  "predictions": [p.to_dict() for p in self.predictions], "ms_per_image": self.ms_per_image}
        return result if self.top1 is None else {**result, "top1": self.top1}


def run_artifact(artifact: str | Path, inputs: str | list[str], limit: int | None = None, emulate: bool = False) -> RunResult:
    """Verify the artifact, run it on image files and folders (several), or one .npy/.npz/IDX input, and
    return one prediction per input (in sorted file order; `limit`: the first ones) and the latency."""
    specs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not specs:
        raise InputError("--input: give at least one image file, folder or array")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}")
    with verified_runner(artifact, emulate) as (_, manifest, runner):
        preprocessing = Preprocessing.from_dict(manifest.input.preprocessing)
        data = open_inputs([str(s) for s in specs], preprocessing, limit=limit)
        started = time.perf_counter()
        logits = collect_logits(runner, data, progress=False)
        seconds = time.perf_counter() - started
    names = preprocessing.class_names
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores = shifted / shifted.sum(axis=1, keepdims=True)
    files = data.files
    predictions = [Prediction(i, int(p), names[p] if p < len(names) else str(p), round(float(scores[i, p]), 6),
                              str(files[i]) if files else None) for i, p in enumerate(logits.argmax(1))]
    return RunResult(str(artifact), manifest.target.name, runner.runtime, len(data), predictions,
                     round(seconds * 1000 / len(data), 3),
                     accuracy(logits, data.labels).top1 if data.labels is not None else None)


@dataclass
class Latency:
    runtime: str
    p50_ms: float
    p90_ms: float
    runs: int


@dataclass
class BenchResult:
    artifact: str
    machine: str
    batch: int
    int8: Latency
    fp32: Latency
    warnings: list[str] = field(default_factory=list)

    @property
    def int8_speedup(self) -> float:
        return round(self.fp32.p50_ms / self.int8.p50_ms, 3) if self.int8.p50_ms else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "machine": self.machine, "batch": self.batch, "int8": asdict(self.int8),
                "fp32": asdict(self.fp32), "int8_speedup": self.int8_speedup, "warnings": self.warnings}


MAX_RUNS = 100_000


def check_runs(runs: int, option: str = "--runs") -> None:
    if not 1 <= runs <= MAX_RUNS:
        raise InputError(f"{option} must be 1..{MAX_RUNS}, not {runs}")


def bench_artifact(artifact: str | Path, runs: int = 50) -> BenchResult:
    """INT8 artifact latency against its own FP32 model in ONNX Runtime, on this machine (batch as built)."""
    check_runs(runs)
    with verified_runner(artifact) as (folder, manifest, runner):
        baseline = OnnxRuntimeRunner(folder / FP32_MODEL_FILE, label="FP32")
        shape = [manifest.input.batch, *Preprocessing.from_dict(manifest.input.preprocessing).input_shape]
        sample = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        int8 = Latency(runner.runtime, **latency(lambda: runner.infer(sample), runs=runs))
        fp32 = Latency(baseline.runtime, **latency(lambda: baseline.infer(sample), runs=runs))
    result = BenchResult(str(artifact), platform.machine(), shape[0], int8, fp32)
    if result.int8_speedup <= 1.0:
        result.warnings.append(
            "INT8 is not faster than FP32 here: expected on cores without int8 dot products "
            "(x86 without VNNI, Cortex-A72/A53 without sdot)")
    return result
