"""`edgeresnet report A B C ...`: artifacts of one model, built for different targets or settings, side by side.

Only artifacts of the same weights evaluated on the same data are compared (their report.json's
figures are then comparable); anything else is refused. Agreement between artifacts is measured
on the golden inputs they share (each artifact's golden/ holds its INT8 logits of a fixed sample
of the evaluation set, with the indices of the images). A device's own check, folded in with
`report ARTIFACT --device FILE`, lives in `<artifact>.device/report.json` and is shown when present.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeresnet.artifact import verify_folder
from edgeresnet.errors import InputError
from edgeresnet.schema import GOLDEN_FOLDER, MANIFEST_FILE, REPORT_FILE, Manifest, Report, SchemaError, read

from .facts import (ClassLoss, SpeedFigure, class_losses, cycle_estimates, drop_standard_error_pts, human_bytes, is_emulated,
                    shipped_files, standard_error_pts, verdict)
from .markup import esc, figures, page, pct, raw_json, table
from .page import input_size_of
from .plots import class_labels, png

COMPARISON_SCHEMA = "edgeresnet.comparison/1"


@dataclass
class DeviceRow:
    label: str
    samples: int
    top1: float | None
    host_agreement: float | None
    verdict: str
    emulated: bool


@dataclass
class Column:
    """One artifact's figures, as its report.json and folder give them."""

    path: str
    target: str
    quant_profile: str
    method: str
    verdict: str
    ships: bool
    warnings: list[str]
    fp32_top1: float | None
    int8_top1: float | None
    int8_samples: int
    top1_standard_error_pts: float | None
    drop_pts: float | None  # None: unlabelled evaluation (agreement only)
    drop_standard_error_pts: float
    agreement_with_fp32: float
    int8_runtime: str
    bytes: int
    files: int
    kept_in_float: list[str]
    lost_most: list[ClassLoss]  # largest drop first
    speed: list[SpeedFigure]
    devices: list[DeviceRow] = field(default_factory=list)


@dataclass
class EvaluationSet:
    source: str | None
    samples: int
    sha256: str | None


@dataclass
class Comparison:
    model: str
    weights_sha256: str | None
    evaluation: EvaluationSet
    golden_inputs: int  # evaluation images every artifact's golden/ holds
    agreement: list[list[float | None]]  # INT8 top-1 agreement between artifacts i and j on those inputs
    columns: list[Column]
    class_names: list[str]
    per_class_drop: list[list[float | None] | None]  # per artifact, FP32 minus INT8 top-1 per class (points; None: no image)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": COMPARISON_SCHEMA, **asdict(self)}


@dataclass
class _Loaded:
    folder: Path
    report: Report
    manifest: Manifest


def _load(path: str | Path) -> _Loaded:
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: not an artifact folder (unpack a .tar.gz first)")
    verify_folder(folder)  # the figures must be the artifact's own
    return _Loaded(folder, read(Report, folder / REPORT_FILE), read(Manifest, folder / MANIFEST_FILE))


def _model_of(a: _Loaded) -> str:
    return f"{a.report.model}, weights sha256 {str(a.manifest.model.weights_sha256)[:12]}"


def _evaluation_of(a: _Loaded) -> str:
    evaluation = a.report.evaluation
    return f"{evaluation.source}, {a.report.int8.samples} images, sha256 {str(evaluation.sha256)[:12]}"


def _same(loaded: list[_Loaded]) -> None:
    """One line naming the first artifact that differs from the first in model or evaluation set."""
    first = loaded[0]
    for other in loaded[1:]:
        for what, describe in (("model", _model_of), ("evaluation set", _evaluation_of)):
            if describe(first) != describe(other):
                raise InputError(f"{other.folder} is not comparable with {first.folder}: different {what} "
                                 f"({describe(other)} vs {describe(first)})")


def _golden(folder: Path) -> tuple[list[int], np.ndarray] | None:
    """The golden sample's evaluation-set indices and the host's INT8 logits of it."""
    index = folder / GOLDEN_FOLDER / "golden.json"
    logits = folder / GOLDEN_FOLDER / "int8_logits.npy"
    if not index.is_file() or not logits.is_file():
        return None
    indices = json.loads(index.read_text()).get("indices")
    return (list(indices), np.load(logits)) if indices is not None else None


def _agreement(loaded: list[_Loaded]) -> tuple[int, list[list[float | None]]]:
    goldens = [_golden(a.folder) for a in loaded]
    present = [g for g in goldens if g is not None]
    shared = sorted(set.intersection(*(set(g[0]) for g in present))) if present else []
    predictions: list[np.ndarray | None] = []
    for golden in goldens:
        if golden is None or not shared:
            predictions.append(None)
            continue
        position = {index: row for row, index in enumerate(golden[0])}
        predictions.append(golden[1][[position[i] for i in shared]].argmax(1))
    matrix = [[None if a is None or b is None else round(float((a == b).mean()), 4) for b in predictions] for a in predictions]
    return len(shared), matrix


def _devices(folder: Path) -> list[DeviceRow]:
    """The device columns `report ARTIFACT --device` folded into <artifact>.device/report.json."""
    combined = folder.with_name(folder.name + ".device") / REPORT_FILE
    if not combined.is_file():
        return []
    try:
        report = read(Report, combined)
    except SchemaError as exc:
        raise InputError(str(exc)) from None
    return [DeviceRow(d.label, d.samples or 0, d.int8.top1 if d.int8 else None, d.host_agreement,
                      d.verdict or ("PASS" if d.passed else "DRIFT"),
                      is_emulated(d.label, d.device.machine, d.int8.runtime if d.int8 else ""))
            for d in report.devices or []]


def _column(a: _Loaded, measured: list[SpeedFigure]) -> Column:
    r = a.report
    decision = verdict(r)
    files = shipped_files(a.folder)
    speed = measured + cycle_estimates(r, a.manifest.model.arch, input_size_of(r))
    top1 = r.int8.top1
    return Column(
        str(a.folder), r.target, r.quant_profile, r.method, decision.text, decision.ships, decision.warnings,
        r.fp32.top1, top1, r.int8.samples,
        None if top1 is None else round(standard_error_pts(top1 / 100, r.int8.samples), 3),
        r.drop_pts, round(drop_standard_error_pts(r.agreement, r.int8.samples), 3), r.agreement, r.int8.runtime,
        sum(f.bytes for f in files), len(files), list(r.fallback_layers),
        class_losses(r), speed, _devices(a.folder))


def compare_artifacts(paths: Sequence[str | Path], measured: dict[str, list[SpeedFigure]] | None = None) -> Comparison:
    """The comparison of artifacts of one model; `measured` adds latency figures by artifact path."""
    if not paths:
        raise InputError("report needs at least one artifact folder")
    loaded = [_load(p) for p in paths]
    _same(loaded)
    shared, matrix = _agreement(loaded)
    first = loaded[0].report
    per_class: list[list[float | None] | None] = []
    for a in loaded:
        fp32, int8 = a.report.fp32.per_class, a.report.int8.per_class
        per_class.append([None if x is None or y is None else round(x - y, 2) for x, y in zip(fp32, int8)]
                         if fp32 and int8 else None)
    return Comparison(
        first.model, loaded[0].manifest.model.weights_sha256,
        EvaluationSet(first.evaluation.source, first.int8.samples, first.evaluation.sha256),
        shared, matrix, [_column(a, (measured or {}).get(str(p), [])) for a, p in zip(loaded, paths)],
        list(first.class_names), per_class)


def _drop_plot(comparison: Comparison) -> dict[str, tuple[str, str]]:
    drops = [(c.target, d) for c, d in zip(comparison.columns, comparison.per_class_drop) if d]
    if not drops:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(drops[0][1])
    names = class_labels(comparison.class_names, count)
    width = 0.8 / len(drops)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = np.arange(count)
    for k, (target, values) in enumerate(drops):
        ax.bar(x - 0.4 + width * (k + 0.5), [np.nan if v is None else v for v in values], width, label=target)
    ax.axhline(0, color="#444", linewidth=0.8)
    ax.set_xticks(x, names, rotation=45 if count <= 20 else 90, ha="right")
    ax.set_ylabel("top-1 lost, FP32 minus INT8 (pts)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(drops), 4), frameon=False)
    return {"per_class_drop": ("Where each artifact lost accuracy: top-1 points lost per class (above 0: INT8 worse)", png(fig))}


def render_comparison_html(comparison: Comparison) -> str:
    c = comparison
    targets = [col.target for col in c.columns]
    verdicts = "".join(f'<li class="{"pass" if col.ships and not col.warnings else ("warn" if col.ships else "fail")}">'
                       f"<b>{esc(col.target)}</b>: {esc(col.verdict)}"
                       + "".join(f"<br>&#9888; {esc(w)}" for w in col.warnings) + "</li>" for col in c.columns)

    def row(label: str, values) -> tuple:
        return (label, *values)

    rows = [
        row("FP32 top-1", [f"{col.fp32_top1:.2f}%" if col.fp32_top1 is not None else None for col in c.columns]),
        row("INT8 top-1 (± s.e.)", [f"{col.int8_top1:.2f}% ± {col.top1_standard_error_pts:.2f}" if col.int8_top1 is not None else None
                                    for col in c.columns]),
        row("drop (pts, ± s.e.)", [f"{col.drop_pts:+.2f} ± {col.drop_standard_error_pts:.2f}" if col.drop_pts is not None
                                   else "unlabelled: agreement only" for col in c.columns]),
        row("agreement with FP32", [pct(col.agreement_with_fp32) for col in c.columns]),
        row("lost most in", [", ".join(f"{x.name} ({x.drop_pts:+.1f})" for x in col.lost_most) or "no class fell"
                             for col in c.columns]),
        row("kept in float", [", ".join(col.kept_in_float) or "none" for col in c.columns]),
        row("size (files)", [f"{human_bytes(col.bytes)} ({col.files})" for col in c.columns]),
        row("speed", ["; ".join(f"{s.what}: {s.value}" for s in col.speed) or "not measured" for col in c.columns]),
        row("calibration", [f"{col.method} ({col.quant_profile} scheme)" for col in c.columns]),
        row("INT8 ran on", [col.int8_runtime for col in c.columns]),
    ]
    agreement = table(("", *targets), ((targets[i], *(pct(v) if v is not None else None for v in line))
                                       for i, line in enumerate(c.agreement)), "golden-agreement")
    device_rows = [(col.target, f"{'emulated' if d.emulated else 'device'}: {d.label}", d.samples,
                    f"{d.top1:.2f}%" if d.top1 is not None else None, pct(d.host_agreement), d.verdict)
                   for col in c.columns for d in col.devices]
    devices = (table(("artifact", "what ran where", "inputs", "top-1", "agreement with host INT8", "verdict"), device_rows, "device-table")
               if device_rows else "<p>No device check folded in yet (<code>edgeresnet report ARTIFACT --device FILE</code>).</p>")
    estimates = ('<p class="estimate">Cycle-model figures are estimates from a model of the board\'s core, not board timings.</p>'
                 if any(s.estimate for col in c.columns for s in col.speed) else "")
    body = "".join((
        f"<h1>{esc(c.model)}: {len(c.columns)} artifacts compared</h1>",
        f'<ul id="verdict">{verdicts}</ul>',
        f'<h2>Side by side</h2><section id="accuracy"><p>Every artifact was evaluated on the same '
        f"{c.evaluation.samples:,} images of <code>{esc(str(c.evaluation.source))}</code>.</p>",
        table(("", *targets), rows, "comparison-table"), estimates, "</section>",
        f'<h2>Agreement with each other</h2><section id="agreement"><p>INT8 top-1 agreement between the artifacts on the '
        f"{c.golden_inputs} golden inputs they share (the same images, run on the host).</p>{agreement}</section>",
        f'<h2>On the devices</h2><section id="devices">{devices}</section>',
        f'<h2>Plots</h2><section id="plots">{figures(_drop_plot(c))}</section>',
        raw_json(c.to_dict(), "comparison.json"),
    ))
    return page(f"edgeresnet comparison: {c.model}", body)
