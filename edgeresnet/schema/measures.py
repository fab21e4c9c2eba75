"""Figures shared by report.json, manifest.json and a device report: the accuracy gate, logit drift, scale stability."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeresnet.schema.mapping import to_json


@dataclass
class Gate:
    max_drop: float | None
    passed: bool


@dataclass
class Drift:
    """How far a runner's logits drift from the reference's on the same inputs (edgeresnet.metrics computes it)."""

    agreement: float  # share of inputs whose top-1 class matches the reference
    cosine: float  # mean cosine similarity of logit vectors
    sqnr_db: float | None  # None: unbounded (identical logits), JSON null
    max_abs_diff: float

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)


@dataclass
class DeviceDrift(Drift):
    mean_abs_diff: float | None = None


@dataclass
class Stability:
    first_half_samples: int
    max_scale_change: float | None
    tensor: str | None
    threshold: float
    trusted: bool
