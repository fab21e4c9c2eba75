"""golden/golden.json: the golden vectors' description (written by pipeline/golden.py; read by verify and the
device checks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeresnet.schema.files import GOLDEN_SCHEMA
from edgeresnet.schema.mapping import omit_none, spread


@dataclass
class GoldenInput:
    dtype: str
    layout: str
    shape: list[int]
    preprocessed: str = ""


@dataclass
class GoldenFiles:
    """The arrays of golden/, by role: file names inside golden/."""

    inputs: str
    fp32_logits: str
    int8_logits: str
    labels: str | None = None


@dataclass
class HostTop1:
    fp32: float
    int8: float


@dataclass(kw_only=True)
class GoldenMeta:
    schema: str = GOLDEN_SCHEMA
    model: str
    target: str
    samples: int
    seed: int
    source: str
    indices: list[int]
    input: GoldenInput
    files: GoldenFiles
    fp32_runtime: str
    int8_runtime: str
    host_arch: str | None = None
    host_top1: HostTop1 | None = omit_none()  # labelled evaluation data only
    tools: dict[str, Any] = spread()  # each device tool's own description (TargetBuild.golden_tools)
