"""edgeresnet/evaluate.py: accuracy figures as report.json and `--json` carry them."""

from __future__ import annotations

import json

import numpy as np

from edgeresnet.evaluate import accuracy


def test_a_class_without_evaluation_images_has_no_per_class_figure_and_stays_valid_json():
    logits = np.eye(3, dtype=np.float32)[[0, 1, 1, 0]]
    labels = np.array([0, 1, 0, 0])  # no image of class 2
    figures = accuracy(logits, labels)
    assert figures.per_class == [2 / 3 * 100, 100.0, None]
    assert figures.top1 == 75.0
    json.dumps(figures.to_dict(), allow_nan=False)  # NaN would make it invalid JSON
