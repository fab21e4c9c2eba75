"""`edgeresnet report A B C ...`: the comparison page and JSON written to their own folder, with latency
measured by `bench` on this machine for the artifacts that run here when asked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeresnet.atomic import atomic_directory
from edgeresnet.errors import EdgeResnetError, InputError
from edgeresnet.report.compare import Comparison, compare_artifacts, render_comparison_html
from edgeresnet.report.facts import SpeedFigure

from .artifacts import bench_artifact, check_runs


@dataclass
class ComparisonResult:
    out: str
    comparison: Comparison

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, **self.comparison.to_dict()}


def measured_latency(artifact: str, runs: int) -> list[SpeedFigure]:
    """Host latency from `bench`, or nothing when the artifact does not run on this machine."""
    try:
        result = bench_artifact(artifact, runs)
    except EdgeResnetError:
        return []
    return [SpeedFigure("host latency (bench), this machine",
                        f"INT8 {result.int8.p50_ms:.3f} ms p50, FP32 {result.fp32.p50_ms:.3f} ms (batch {result.batch})",
                        f"{result.int8.runtime} on {result.machine}, {result.int8.runs} runs", False)]


def write_comparison(artifacts: list[str], out: str | None, bench_runs: int | None = None) -> ComparisonResult:
    if bench_runs is not None:
        check_runs(bench_runs, "--bench")  # here: each artifact's own errors mean "does not run on this machine"
    measured = {a: measured_latency(a, bench_runs) for a in artifacts} if bench_runs is not None else None
    comparison = compare_artifacts(artifacts, measured)
    destination = Path(out) if out else Path("build") / f"{comparison.model}-compared"
    if (destination / "manifest.json").exists():
        raise InputError(f"{destination} is an artifact folder; choose another --out for the comparison")
    with atomic_directory(destination, force=True) as staging:
        (staging / "report.json").write_text(json.dumps(comparison.to_dict(), indent=2) + "\n")
        (staging / "report.html").write_text(render_comparison_html(comparison))
    return ComparisonResult(str(destination), comparison)
