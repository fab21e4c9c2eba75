"""What a reader decides from, derived from report.json and the artifact folder: errors of the
estimates, what ships and at which precision, speed where it is known, where accuracy was lost."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from edgeresnet.schema import MANIFEST_FILE, REPORT_FILE, REPORT_HTML, SIGNATURE_FILE, Report

# Files that describe the artifact rather than run on the device.
REPORT_FILES = (REPORT_FILE, REPORT_HTML, MANIFEST_FILE, SIGNATURE_FILE)
CYCLE_MODEL_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "arm_cost.json"
# benchmarks/arm_cost.py counts the ImageNet-style nets (resnet18, resnet50) at this input size.
CYCLE_MODEL_INPUT = [224, 224]


def view(document: Any) -> SimpleNamespace:
    """A JSON document of no schema of ours (the cycle model's results) read with attributes."""
    return json.loads(json.dumps(document), object_hook=lambda fields: SimpleNamespace(**fields))


def optional(node: Any, name: str, default: Any = None) -> Any:
    """A field such a document may not carry."""
    return getattr(node, name, default) if node is not None else default


def standard_error_pts(share: float, samples: int) -> float:
    """Standard error, in points, of a share (top-1) measured on `samples` independent images."""
    return 100 * math.sqrt(max(share * (1 - share), 0.0) / samples) if samples else math.nan


def drop_standard_error_pts(agreement: float, samples: int) -> float:
    """Standard error, in points, of a paired drop: only images whose prediction changed move it, so its
    variance is at most the share of changed predictions (1 - agreement) over the sample size."""
    return 100 * math.sqrt(max(1 - agreement, 0.0) / samples) if samples else math.nan


def top5_means_something(report: Report) -> bool:
    """With five classes or fewer every image is in its top 5."""
    return len(report.class_names) > 5


def is_emulated(*texts: Any) -> bool:
    return any(word in str(text).lower() for text in texts for word in ("emulat", "qemu"))


@dataclass
class ShippedFile:
    name: str
    bytes: int


def shipped_files(folder: Path | None) -> list[ShippedFile]:
    """Every file of the artifact folder but its reports and manifest, largest first."""
    if folder is None or not folder.is_dir():
        return []
    files = [ShippedFile(str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*")
             if p.is_file() and p.name not in REPORT_FILES]
    return sorted(files, key=lambda f: (-f.bytes, f.name))


def human_bytes(count: int) -> str:
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


@dataclass
class LayerPrecision:
    layer: str
    op_type: str
    precision: str  # "INT8" or "float"
    sqnr_db: float | None
    why: str = ""


def layer_precisions(report: Report) -> list[LayerPrecision]:
    """Each layer the sensitivity analysis saw, most sensitive first, with the precision it ships in and why."""
    kept = set(report.fallback_layers)
    steps = {s.layer: s for s in report.fallback_steps}
    layers = []
    for s in report.sensitivity:
        why = ""
        if s.layer in kept:
            step = steps.get(s.layer)
            why = (f"the budget of {report.gate.max_drop} pts was missed with it in INT8; the drop with it in float: "
                   f"{step.drop_pts} pts" if step else "kept in float by the budget")
        layers.append(LayerPrecision(s.layer, s.op_type, "float" if s.layer in kept else "INT8", s.sqnr_db, why))
    return layers


@dataclass
class SpeedFigure:
    what: str  # "host latency (bench)" or "cycle-model estimate"
    value: str
    source: str
    estimate: bool


def cycle_model_rows(results: Path = CYCLE_MODEL_RESULTS) -> list[SimpleNamespace]:
    if not results.is_file():
        return []
    try:
        rows = json.loads(results.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    rows = rows if isinstance(rows, list) else optional(view(rows), "rows") or []
    return [row if isinstance(row, SimpleNamespace) else view(row) for row in rows if row]


def _row_fits(row: SimpleNamespace, report: Report, arch: str | None, input_size: list[int] | None) -> bool:
    """The row is this model on this board: by the model's name, or by its architecture at the input size
    the row was counted at (`input_size`, else the cycle model's ImageNet-style 224x224)."""
    if optional(row, "board") != report.target or not str(optional(row, "runtime", "")).startswith("tvm"):
        return False
    if optional(row, "model") == report.model != arch:
        return True  # a zoo model by name (resnet20-fmnist): its input size is its own
    counted_at = optional(row, "input_size", CYCLE_MODEL_INPUT)
    counted_at = list(counted_at) if isinstance(counted_at, list) else [counted_at, counted_at]
    return arch is not None and optional(row, "model") == arch and input_size is not None and list(input_size) == counted_at


def cycle_estimates(report: Report, arch: str | None, input_size: list[int] | None,
                    results: Path = CYCLE_MODEL_RESULTS) -> list[SpeedFigure]:
    """The cycle model's rows (benchmarks/arm_cost.py) for this artifact's model, input size and board,
    TVM's INT8 library, one figure per thread count."""
    figures = []
    for row in cycle_model_rows(results):
        if not _row_fits(row, report, arch, input_size) or optional(row, "cycles") is None:
            continue
        ms = optional(row, "estimated_ms", optional(row, "ms"))
        threads = optional(row, "threads", 1)
        ratio = optional(row, "ratio_vs_ort_int8")
        value = (f"{row.cycles / 1e6:.2f} M cycles" + (f", ~{ms:.2f} ms at the board's clock" if ms is not None else "")
                 + (f" ({ratio:.2f}x ONNX Runtime INT8)" if ratio else ""))
        figures.append(SpeedFigure(f"cycle-model estimate, {threads} thread{'s' if threads != 1 else ''}", value,
                                   f"benchmarks/results/arm_cost.json ({row.runtime}): one inference under qemu, "
                                   "weighted by llvm-mca's core model and simulated caches; not a board timing", True))
    return figures


@dataclass
class ClassLoss:
    name: str
    fp32: float
    int8: float
    drop_pts: float  # FP32 minus INT8 top-1 of the class, points


def class_losses(report: Report, count: int = 3) -> list[ClassLoss]:
    """The classes whose top-1 fell most from FP32 to INT8 (only those that fell)."""
    fp32, int8 = report.fp32.per_class, report.int8.per_class
    if not fp32 or not int8:
        return []
    names = report.class_names
    losses = [ClassLoss(names[i] if i < len(names) else str(i), round(a, 2), round(b, 2), round(a - b, 2))
              for i, (a, b) in enumerate(zip(fp32, int8)) if a is not None and b is not None]
    return sorted((c for c in losses if c.drop_pts > 0), key=lambda c: -c.drop_pts)[:count]


@dataclass
class Verdict:
    ships: bool
    text: str
    warnings: list[str] = field(default_factory=list)

    @property
    def tone(self) -> str:
        return "fail" if not self.ships else ("warn" if self.warnings else "pass")


def verdict(report: Report) -> Verdict:
    """Ship or not, in words: the drop against the budget, with every warning beside it."""
    gate = report.gate
    warnings = list(report.warnings)
    drifted = [d for d in report.devices or [] if d.passed is False]
    for device in drifted:
        warnings.append(f"on the device {device.label}: {device.verdict or 'DRIFT'}"
                        + (": " + "; ".join(device.reasons) if device.reasons else ""))
    samples = report.int8.samples
    error = drop_standard_error_pts(report.agreement, samples)
    if report.int8.top1 is not None and report.fp32.top1 is not None:
        drop = (f"INT8 top-1 {report.int8.top1:.2f}% against FP32 {report.fp32.top1:.2f}%, "
                f"a drop of {report.drop_pts:+.2f} points (± {error:.2f}, {samples:,} images)")
    else:
        drop = (f"INT8 changes {100 * (1 - report.agreement):.2f}% of the predictions "
                f"(unlabelled data: no top-1; {samples:,} images)")
    if gate.max_drop is None:
        budget = "no budget was set (compile --max-drop)"
    elif gate.passed:
        budget = f"within the budget of {gate.max_drop} points"
    else:
        budget = f"over the budget of {gate.max_drop} points"
    ships = gate.passed and not drifted
    head = "Ships" if ships and not warnings else ("Ships, with warnings" if ships else "Does not ship")
    return Verdict(ships, f"{head}: {drop}; {budget}.", warnings)
