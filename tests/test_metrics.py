"""edgeresnet.metrics: the one implementation of the drift and accuracy figures, on the host and on the device."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgeresnet import metrics
from helpers import REPO

RNG = np.random.default_rng(3)
REFERENCE = RNG.standard_normal((64, 10)).astype(np.float32)
NOISY = REFERENCE + 0.1 * RNG.standard_normal((64, 10)).astype(np.float32)


def test_sqnr_of_known_noise():
    reference = np.array([[3.0, 4.0]], np.float32)  # signal 25
    test = np.array([[3.0, 3.5]], np.float32)  # noise 0.25
    assert metrics.sqnr_db(reference, test) == pytest.approx(20.0)


def test_unbounded_sqnr_is_none_and_json_safe():
    assert metrics.sqnr_db(REFERENCE, REFERENCE) is None
    assert metrics.sqnr_db(np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)) is None
    text = json.dumps(metrics.drift(REFERENCE, REFERENCE), allow_nan=False)  # raises on Infinity or NaN
    assert json.loads(text)["sqnr_db"] is None


def test_drift_fields_of_identical_and_noisy_logits():
    same = metrics.drift(REFERENCE, REFERENCE)
    assert same["agreement"] == 1.0 and same["cosine"] == pytest.approx(1.0) and same["max_abs_diff"] == 0.0
    noisy = metrics.drift(REFERENCE, NOISY)
    assert tuple(noisy) == metrics.DRIFT_FIELDS
    assert 0 < noisy["agreement"] <= 1 and 0.9 < noisy["cosine"] < 1 and 10 < noisy["sqnr_db"] < 30
    assert noisy["max_abs_diff"] >= noisy["mean_abs_diff"] > 0


def test_drift_refuses_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.drift(REFERENCE, REFERENCE[:, :5])


def test_top1_top_k_and_drops():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.5, 0.0]], np.float32)
    labels = np.array([1, 1, 2, 0])
    assert metrics.top1(logits, labels) == 75.0  # the tie in the last row goes to class 0
    assert metrics.top_k(logits, labels, 2) == 100.0
    assert metrics.drop(91.25, 90.0) == 1.25
    shuffled = logits[:, ::-1].copy()
    assert metrics.changed_pts(logits, shuffled) == pytest.approx(100 * (1 - metrics.agreement(logits, shuffled)))
    assert metrics.drop_pts(logits, shuffled, None) == metrics.changed_pts(logits, shuffled)
    assert metrics.drop_pts(logits, shuffled, labels) == metrics.drop(75.0, metrics.top1(shuffled, labels))


def test_metrics_import_nothing_but_numpy():
    """The device has numpy and the artifact's own files only."""
    tree = ast.parse(Path(metrics.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "typing", "numpy"}


def test_one_sqnr_implementation_outside_tests():
    """Only edgeresnet/metrics.py takes a log of a signal-to-noise ratio (the C++ native runner aside)."""
    computing = []
    for folder in ("edgeresnet", "targets", "calibration", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            if not path.is_symlink() and "log10(signal / noise)" in path.read_text():
                computing.append(path.relative_to(REPO).as_posix())
    assert computing == ["edgeresnet/metrics.py"]
    assert not math.isinf(metrics.sqnr_db(REFERENCE, NOISY))
