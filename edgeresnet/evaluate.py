"""One evaluator for every runner: accuracy, drift against the FP32 reference, and the accuracy drop.

Every accuracy figure edgeresnet reports is measured here: `compile` on the files
that ship, `evaluate` on any ONNX model, the fallback search on each candidate.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from edgeresnet import metrics, schema
from edgeresnet.calibration import Dataset, sample_indices
from edgeresnet.errors import InputError
from edgeresnet.runners import Runner
from edgeresnet.schema import Drift, RunnerResult

# Images per inference call when streaming a data set: as many as fit in this many bytes of input, at
# most MAX_EVAL_BATCH. Each call costs PyTorch a fixed overhead that is large here (Fashion-MNIST's
# 10,000 test images: 146 s at 32 per call, 16 s at 256, on the reference model), while at 224x224 a
# batch of ~40 keeps a ResNet's activations in the hundreds of MB (memory follows the batch, not the data).
EVAL_CHUNK_BYTES = 24 << 20
MAX_EVAL_BATCH = 256
# A runner that pays per call (a process under qemu) gets chunks up to this many bytes of input.
CALL_BYTES = 256 << 20
ACCURACY_ROWS = 4096


def samples_within(budget_values: int, input_shape: Sequence[int], floor: int) -> int:
    """How many inputs of `input_shape` (no batch dimension) fit a budget of input values, at least `floor`:
    costly measurements take all of a small model's samples and fewer as images grow."""
    return max(floor, budget_values // int(np.prod(input_shape)))


def _chunk_size(runners: Sequence[Runner], data: Dataset) -> int:
    batch = int(np.clip(EVAL_CHUNK_BYTES // max(1, data.image_bytes), 1, MAX_EVAL_BATCH))
    wanted = max((r.images_per_call or 0) for r in runners)
    size = max(batch, min(wanted, CALL_BYTES // max(1, data.image_bytes))) if wanted else batch
    static = [r.static_batch for r in runners if r.static_batch]
    if static and size % static[0]:  # whole static batches per chunk, so only the last one is padded
        size = max(static[0], size // static[0] * static[0])
    return size


def collect_logits_together(runners: Sequence[Runner], data: Dataset | np.ndarray, desc: str = "evaluating",
                            progress: bool = True) -> list[np.ndarray]:
    """Logits of every runner on the same images, in one pass over the data (each chunk is read once).

    Each runner's logits go into one array allocated at the first chunk: 50,000 images x 1,000 classes
    are 200 MB per runner, which a list of chunks joined at the end would need twice.
    """
    if not isinstance(data, Dataset):
        data = Dataset(np.asarray(data), None, "array")
    if len(data) == 0:
        return [np.zeros((0, 0), np.float32) for _ in runners]
    outputs: list[Any] = [None] * len(runners)  # each runner's array, allocated at the first chunk
    started = time.perf_counter()
    size = _chunk_size(runners, data)
    row = 0
    with tqdm(total=len(data), desc=desc, unit="img", disable=None if progress else True, leave=False) as bar:
        for chunk in data.batches(size):
            for position, runner in enumerate(runners):
                start = row
                for rows, logits in runner.batches(chunk, batch_size=len(chunk)):
                    if outputs[position] is None:
                        outputs[position] = np.empty((len(data), *logits.shape[1:]), np.float32)
                    outputs[position][start : start + rows] = logits
                    start += rows
            row += len(chunk)
            bar.update(len(chunk))
    seconds = time.perf_counter() - started
    if progress and len(data) >= 1000:  # long stages leave their rate in the log
        print(f"{desc}: {len(data)} images in {seconds:.1f} s ({len(data) / max(seconds, 1e-9):.1f} img/s)", file=sys.stderr)
    return outputs


def collect_logits(runner: Runner, images: Dataset | np.ndarray, desc: str = "evaluating", progress: bool = True) -> np.ndarray:
    """A runner's logits on an array or a streamed data set, chunk by chunk."""
    return collect_logits_together([runner], images, desc, progress)[0]


@dataclass
class Accuracy:
    top1: float  # percent
    top5: float
    per_class: list[float | None]  # None: no evaluation image of that class
    confusion: list[list[int]]  # rows: true class, columns: predicted

    def to_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "per_class": self.per_class}


def accuracy(logits: np.ndarray, labels: np.ndarray) -> Accuracy:
    num_classes = logits.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise InputError(f"labels run from {labels.min()} to {labels.max()}, the model has {num_classes} classes")
    k = min(5, num_classes)
    # Ranked in slices: a full argsort of 50,000 x 1,000 logits would take 400 MB of indices at once.
    best = np.concatenate([np.argsort(-logits[start : start + ACCURACY_ROWS], axis=1, kind="stable")[:, :k]
                           for start in range(0, len(logits), ACCURACY_ROWS)]) if len(logits) else np.zeros((0, k), np.int64)
    top1 = float(np.mean(best[:, 0] == labels) * 100)
    top5 = float(np.mean((best == labels[:, None]).any(axis=1)) * 100)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, best[:, 0]), 1)
    totals = confusion.sum(axis=1)
    # None, not NaN, for a class without evaluation images: report.json and --json stay valid JSON.
    per_class = [float(confusion[c, c] / totals[c] * 100) if totals[c] else None for c in range(num_classes)]
    return Accuracy(round(top1, 4), round(top5, 4), per_class, confusion.tolist())


# How far a runner's logits drift from the reference's: report.json's "drift".
Comparison = Drift
COMPARISON_FIELDS = tuple(Drift.__dataclass_fields__)


def compare(reference: np.ndarray, test: np.ndarray) -> Comparison:
    figures = metrics.drift(reference, test)
    return Comparison(**{name: figures[name] for name in COMPARISON_FIELDS})


@dataclass
class Evaluation:
    runner: dict  # runtime and arch that produced the logits
    samples: int
    logits: np.ndarray = field(repr=False)
    accuracy: Accuracy | None  # None when the data has no labels

    def to_dict(self) -> dict:
        d = {**self.runner, "samples": self.samples}
        if self.accuracy is not None:
            d.update(self.accuracy.to_dict())
        return d

    def result(self) -> RunnerResult:
        """As the report shows it."""
        return schema.from_json(RunnerResult, self.to_dict())


def evaluate(runner: Runner, data: Dataset, desc: str = "evaluating", progress: bool = True) -> Evaluation:
    return evaluate_together([runner], data, desc, progress)[0]


def evaluate_together(runners: Sequence[Runner], data: Dataset, desc: str = "evaluating",
                      progress: bool = True) -> list[Evaluation]:
    """Every runner on the same data in one pass (decoding each image once)."""
    results = []
    for runner, logits in zip(runners, collect_logits_together(runners, data, desc, progress)):
        acc = accuracy(logits, data.labels) if data.labels is not None else None
        results.append(Evaluation(runner.describe(), len(data), logits, acc))
    return results


def drop_pts(fp32: Evaluation, tested: Evaluation) -> float:
    """Top-1 points lost against FP32 on the same images; on unlabelled data, the share of changed predictions."""
    if fp32.accuracy is None or tested.accuracy is None:
        return metrics.changed_pts(fp32.logits, tested.logits)
    return metrics.drop(fp32.accuracy.top1, tested.accuracy.top1)


@dataclass
class Measurement:
    """A runner against the FP32 reference on the same images."""

    fp32: Evaluation  # the FP32 reference on exactly the images `tested` saw
    tested: Evaluation
    drop: float
    drift: Comparison

    def reference_row(self) -> RunnerResult:
        """How a runner measured beside the main one appears in the report."""
        return replace(self.tested.result(), drop_pts=self.drop, agreement=self.drift.agreement)


def _restricted(fp32: Evaluation, data: Dataset, index: np.ndarray) -> Evaluation:
    if len(index) == fp32.samples:
        return fp32
    logits = fp32.logits[index]
    return Evaluation(fp32.runner, len(index), logits, accuracy(logits, data.labels) if data.labels is not None else None)


def measure(runner: Runner, data: Dataset, fp32: Evaluation, desc: str = "evaluating", progress: bool = True,
            limit: int | None = None, seed: int = 0) -> Measurement:
    """Evaluate `runner` on `data` (or a deterministic sample of `limit` images) against `fp32`, its FP32 logits."""
    index = sample_indices(len(data), limit, seed)
    if len(index) < len(data):
        data = data.subset(index, f"{data.source} (sample of {len(index)})")
    reference = _restricted(fp32, data, index)
    return against(reference, evaluate(runner, data, desc, progress))


def against(fp32: Evaluation, tested: Evaluation) -> Measurement:
    """A runner's evaluation against the FP32 evaluation of the same images."""
    return Measurement(fp32, tested, drop_pts(fp32, tested), compare(fp32.logits, tested.logits))


def identical_on_sample(sampled: Measurement, whole: Measurement, total: int, limit: int | None, seed: int) -> bool:
    """Whether `whole` (measured on all `total` images) gave, bit for bit, the logits `sampled` gave on its
    deterministic sample of `limit` (the sample `measure` draws with the same seed)."""
    index = sample_indices(total, limit, seed)
    return len(index) == sampled.tested.samples and np.array_equal(whole.tested.logits[index], sampled.tested.logits)


def standing_in_for(twin: Measurement, shipped: Measurement) -> Measurement:
    """The twin's whole-set measurement as the shipped runner's, saying on how many images they were compared."""
    runner = {**twin.tested.runner, "bit_identical_to": {**shipped.tested.runner, "samples": shipped.tested.samples}}
    return replace(twin, tested=replace(twin.tested, runner=runner))
