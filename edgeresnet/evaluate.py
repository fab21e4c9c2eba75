"""One evaluator for every runner: accuracy, drift against the FP32 reference, and the accuracy drop.

Every accuracy figure edgeresnet reports is measured here: `compile` on the files
that ship, `evaluate` on any ONNX model, the fallback search on each candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from edgeresnet.calibration import Dataset, sample_indices
from edgeresnet.errors import InputError
from edgeresnet.runners import Runner


def collect_logits(runner: Runner, images: np.ndarray, desc: str = "evaluating", progress: bool = True) -> np.ndarray:
    outputs = []
    with tqdm(total=len(images), desc=desc, unit="img", disable=None if progress else True, leave=False) as bar:
        for rows, logits in runner.batches(images):
            outputs.append(logits)
            bar.update(rows)
    return np.concatenate(outputs).astype(np.float32)


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `test` against `reference`, in dB."""
    noise = float(np.sum((reference.astype(np.float64) - test) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")


@dataclass
class Accuracy:
    top1: float  # percent
    top5: float
    per_class: list[float]
    confusion: list[list[int]]  # rows: true class, columns: predicted

    def to_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "per_class": self.per_class}


def accuracy(logits: np.ndarray, labels: np.ndarray) -> Accuracy:
    num_classes = logits.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise InputError(f"labels run from {labels.min()} to {labels.max()}, the model has {num_classes} classes")
    k = min(5, num_classes)
    best = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    top1 = float(np.mean(best[:, 0] == labels) * 100)
    top5 = float(np.mean((best == labels[:, None]).any(axis=1)) * 100)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, best[:, 0]), 1)
    totals = confusion.sum(axis=1)
    per_class = [float(confusion[c, c] / totals[c] * 100) if totals[c] else float("nan") for c in range(num_classes)]
    return Accuracy(round(top1, 4), round(top5, 4), per_class, confusion.tolist())


@dataclass
class Comparison:
    """How far a runner's logits drift from the reference's on the same inputs."""

    agreement: float  # share of inputs whose top-1 class matches the reference
    cosine: float  # mean cosine similarity of logit vectors
    sqnr_db: float
    max_abs_diff: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def compare(reference: np.ndarray, test: np.ndarray) -> Comparison:
    if reference.shape != test.shape:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {test.shape}")
    agreement = float(np.mean(reference.argmax(1) == test.argmax(1)))
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(test, axis=1)
    cosine = float(np.mean(np.sum(reference * test, axis=1) / np.maximum(norms, 1e-12)))
    return Comparison(round(agreement, 6), round(cosine, 6), round(sqnr_db(reference, test), 3),
                      float(np.abs(reference - test).max()))


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


def evaluate(runner: Runner, data: Dataset, desc: str = "evaluating", progress: bool = True) -> Evaluation:
    logits = collect_logits(runner, data.images, desc, progress)
    acc = accuracy(logits, data.labels) if data.labels is not None else None
    return Evaluation(runner.describe(), len(data), logits, acc)


def drop_pts(fp32: Evaluation, tested: Evaluation) -> float:
    """Top-1 points lost against FP32 on the same images; on unlabelled data, the share of changed predictions."""
    if fp32.accuracy is None or tested.accuracy is None:
        return round((1 - compare(fp32.logits, tested.logits).agreement) * 100, 4)
    return round(fp32.accuracy.top1 - tested.accuracy.top1, 4)


@dataclass
class Measurement:
    """A runner against the FP32 reference on the same images."""

    fp32: Evaluation  # the FP32 reference on exactly the images `tested` saw
    tested: Evaluation
    drop: float
    drift: Comparison

    def reference_row(self) -> dict:
        """How a runner measured beside the main one appears in the report."""
        return {**self.tested.to_dict(), "drop_pts": self.drop, "agreement": self.drift.agreement}


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
        labels = None if data.labels is None else data.labels[index]
        data = Dataset(data.images[index], labels, f"{data.source} (sample of {len(index)})")
    reference = _restricted(fp32, data, index)
    tested = evaluate(runner, data, desc, progress)
    return Measurement(reference, tested, drop_pts(reference, tested), compare(reference.logits, tested.logits))
