"""The accuracy and drift figures of logits, one implementation for the host and the device.

Shipped beside run.py in every artifact (as metrics.py, numpy only, importing
nothing of edgeresnet), so that `compile` on the host and `run.py --check` on the
board compute report.json's and device-report.json's figures with the same code.

Every value is JSON-safe: an unbounded SQNR (identical logits, so no noise, or a
zero reference) is None, written as JSON null, on the host and on the device alike.
Arithmetic stays in the logits' own dtype except where a sum of squares needs
float64, so the host's figures are the ones report.json always carried.
"""

from __future__ import annotations

from typing import Any

import numpy as np

AGREEMENT_DIGITS = 6
COSINE_DIGITS = 6
SQNR_DIGITS = 3
PERCENT_DIGITS = 4  # top-1 and drops, in percent / points
DRIFT_FIELDS = ("agreement", "cosine", "sqnr_db", "max_abs_diff", "mean_abs_diff")


def _same_shape(reference: np.ndarray, test: np.ndarray) -> None:
    if reference.shape != test.shape:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {test.shape}")


def agreement(reference: np.ndarray, test: np.ndarray) -> float:
    """Share (0..1) of rows whose top-1 class is the same in both."""
    return round(float(np.mean(reference.argmax(1) == test.argmax(1))), AGREEMENT_DIGITS)


def cosine_rows(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row."""
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(test, axis=1)
    return np.sum(reference * test, axis=1) / np.maximum(norms, 1e-12)


def cosine(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean cosine similarity of the rows."""
    return round(float(np.mean(cosine_rows(reference, test))), COSINE_DIGITS)


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float | None:
    """Signal-to-quantization-noise ratio of `test` against `reference` in dB; None when unbounded (no noise,
    or no signal), which JSON has no number for."""
    difference = reference.astype(np.float64) - test
    return sqnr_db_of_sums(float(np.sum(reference.astype(np.float64) ** 2)), float(np.sum(difference ** 2)))


def sqnr_db_of_sums(signal: float, noise: float) -> float | None:
    """SQNR from the sums of squares of the reference and of the difference (accumulated batch by batch
    when the tensors do not fit in memory at once); None when unbounded."""
    if noise == 0.0 or signal == 0.0:
        return None
    return float(round(10.0 * np.log10(signal / noise), SQNR_DIGITS))  # numpy's rounding of its float64, as report.json has it


def max_abs_diff(reference: np.ndarray, test: np.ndarray) -> float:
    return float(np.abs(reference - test).max())


def mean_abs_diff(reference: np.ndarray, test: np.ndarray) -> float:
    return float(np.abs(reference - test).mean())


def drift(reference: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Every drift figure of `test` against `reference` (keys: DRIFT_FIELDS)."""
    _same_shape(reference, test)
    return {"agreement": agreement(reference, test), "cosine": cosine(reference, test), "sqnr_db": sqnr_db(reference, test),
            "max_abs_diff": max_abs_diff(reference, test), "mean_abs_diff": mean_abs_diff(reference, test)}


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent (ties go to the lowest class, as argmax and a stable sort both decide)."""
    return round(float(np.mean(logits.argmax(1) == labels) * 100), PERCENT_DIGITS)


def top_k(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Top-k accuracy in percent."""
    best = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return round(float(np.mean((best == labels[:, None]).any(axis=1)) * 100), PERCENT_DIGITS)


def drop(reference_top1: float, test_top1: float) -> float:
    """Top-1 points lost against the reference."""
    return round(reference_top1 - test_top1, PERCENT_DIGITS)


def changed_pts(reference: np.ndarray, test: np.ndarray) -> float:
    """The share of changed top-1 predictions, in points: the drop on unlabelled inputs."""
    return round((1 - agreement(reference, test)) * 100, PERCENT_DIGITS)


def drop_pts(reference: np.ndarray, test: np.ndarray, labels: np.ndarray | None) -> float:
    """Top-1 points lost on the labels, else (unlabelled inputs) the share of changed predictions."""
    if labels is None:
        return changed_pts(reference, test)
    return drop(top1(reference, labels), top1(test, labels))
