"""report.html for one artifact: the verdict first, then accuracy, what ships, speed, calibration,
the device columns, the plots, and report.json folded away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeresnet.schema import MANIFEST_FILE, Manifest, Report, RunnerResult, read, to_json

from .facts import (SpeedFigure, class_losses, cycle_estimates, drop_standard_error_pts, human_bytes, is_emulated,
                    layer_precisions, shipped_files, standard_error_pts, top5_means_something, verdict)
from .markup import esc, figures, page, pct, raw_json, table
from .plots import plots
from .summary import calibration_summary, twin_statement

FILES_NAMED = 4  # the largest files named in the page; the full list is folded


def render_html(report: Report, fp32_confusion=None, int8_confusion=None, folder: Path | None = None,
                speed: list[SpeedFigure] | None = None) -> str:
    """The page for one artifact. `folder` is the artifact folder (file sizes, the model's architecture);
    `speed` adds measured figures (host latency from `bench`) to the cycle-model estimates found."""
    r = report
    speed = list(speed or []) + cycle_estimates(r, _architecture(folder), input_size_of(r))
    body = "".join((
        f"<h1>{esc(r.model)} &rarr; {esc(r.target)}</h1>",
        verdict_html(r),
        _accuracy(r),
        _ships(r, folder),
        speed_html(r, speed),
        _calibration(r),
        _devices(r),
        _plots(r, fp32_confusion, int8_confusion),
        raw_json(to_json(report), "report.json"),
    ))
    return page(f"edgeresnet report: {r.model} on {r.target}", body)


def _architecture(folder: Path | None) -> str | None:
    """The model's architecture, from the manifest (which `compile` writes after the page)."""
    manifest = folder / MANIFEST_FILE if folder else None
    return read(Manifest, manifest).model.arch if manifest is not None and manifest.is_file() else None


def input_size_of(report: Report) -> list[int] | None:
    size = report.model_description.preprocessing.get("input_size")
    return list(size) if size else None


def verdict_html(r: Report) -> str:
    decision = verdict(r)
    warnings = "".join(f"<li>{esc(w)}</li>" for w in decision.warnings)
    return (f'<p class="verdict {decision.tone}" id="verdict">{esc(decision.text)}</p>'
            + (f'<ul class="warnings" id="warnings">{warnings}</ul>' if warnings else ""))


def _top1(result: RunnerResult) -> str | None:
    if result.top1 is None:
        return None
    return f"{result.top1:.2f}% ± {standard_error_pts(result.top1 / 100, result.samples):.2f}"


def _db(value: float | None) -> str:
    """An SQNR; None is unbounded (identical logits)."""
    return "unbounded (identical logits)" if value is None else f"{value} dB"


def _accuracy(r: Report) -> str:
    source = r.evaluation.source
    rows = [("top-1 (± standard error)", _top1(r.fp32), _top1(r.int8))]
    if top5_means_something(r):
        rows.append(("top-5", _fmt(r.fp32.top5), _fmt(r.int8.top5)))
    rows.append(("images", f"{r.fp32.samples:,}", f"{r.int8.samples:,}"))
    drop_error = drop_standard_error_pts(r.agreement, r.int8.samples)
    # Unlabelled data has no accuracy: its one figure is the top-1 agreement with FP32, never a drop.
    facts = [f"drop: <b id=\"drop\">{r.drop_pts:+.2f}</b> points (± {drop_error:.2f})" if r.drop_pts is not None
             else "unlabelled evaluation: no accuracy, no drop",
             f"top-1 agreement with FP32: <b id=\"agreement\">{pct(r.agreement)}</b>",
             f"logit cosine {r.drift.cosine}, SQNR {_db(r.drift.sqnr_db)}"]
    twin = r.int8.bit_identical_to
    notes = [f"FP32 ran on {esc(r.fp32.runtime)}; INT8 on {esc(r.int8.runtime)}, {esc(r.int8.arch or '?')}."]
    notes += [f"The INT8 figures stand for the shipped files: {esc(twin_statement(twin))}."] if twin else []
    for extra in r.extra_measurements:
        label = "emulated" if is_emulated(extra.runtime, extra.arch) else "also measured"
        scored = (f"top-1 {extra.top1:.2f}%, drop {extra.drop_pts:+.2f} pts, "
                  if extra.top1 is not None and extra.drop_pts is not None else "")
        notes.append(f"{label}: {esc(extra.runtime)} on {extra.samples:,} images: {scored}agreement {pct(extra.agreement)}")
    losses = class_losses(r)
    if losses:
        notes.append("lost most in: " + ", ".join(f"{esc(c.name)} ({c.fp32:.1f}% &rarr; {c.int8:.1f}%)" for c in losses))
    not_measured = "".join(f"<li>{esc(n)}</li>" for n in r.not_measured)
    skipped = "".join(f"<li>{esc(step)}</li>" for step in r.skipped_steps or [])
    return (f'<h2>Accuracy</h2><section id="accuracy"><p>On {r.int8.samples:,} images of <code>{esc(source)}</code>.</p>'
            + table(("", "FP32", "INT8 (shipped)"), rows, "accuracy-table")
            + "<p>" + "; ".join(facts) + ".</p>"
            + "".join(f"<p>{n}</p>" for n in notes)
            + (f"<p>Not measured here:</p><ul>{not_measured}</ul>" if not_measured else "")
            + (f"<p>Not run for this backend:</p><ul>{skipped}</ul>" if skipped else "") + "</section>")


def _fmt(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}%"


def _ships(r: Report, folder: Path | None) -> str:
    files = shipped_files(folder)
    largest = ", ".join(f"<code>{esc(f.name)}</code> {human_bytes(f.bytes)}" for f in files[:FILES_NAMED])
    listing = (f'<p id="size">{human_bytes(sum(f.bytes for f in files))} in {len(files)} files; the largest: {largest}.</p>'
               f"<details><summary>Every file</summary>"
               f"{table(('file', 'size'), ((f.name, human_bytes(f.bytes)) for f in files), 'files')}</details>") if files else ""
    layers = layer_precisions(r)
    kept = [layer for layer in layers if layer.precision == "float"]
    summary = (f"{len(layers) - len(kept)} of {len(layers)} quantizable layers run in INT8; "
               + ("none is kept in float." if not kept else f"{len(kept)} kept in float:"))
    why = "".join(f"<li><code>{esc(k.layer)}</code>: {esc(k.why)}</li>" for k in kept)
    float_layers = getattr(r.target_details, "float_layers", None) or {}  # TensorRT bundles: how float layers run
    target_note = f"<p>On the device: {esc(str(float_layers['host_measured']))}</p>" if "host_measured" in float_layers else ""
    detail = table(("layer", "op", "precision", "SQNR alone (dB)"),
                   ((layer.layer, layer.op_type, layer.precision, layer.sqnr_db) for layer in layers))
    return (f'<h2>What ships</h2><section id="ships">{listing}<p id="precision">{esc(summary)}</p>'
            + (f"<ul>{why}</ul>" if why else "") + target_note
            + f"<details><summary>Precision of every layer, most sensitive first</summary>{detail}</details></section>")


def speed_html(r: Report, speed: list[SpeedFigure]) -> str:
    rows = [(s.what, s.value, s.source) for s in speed]
    measured = table(("what", "figure", "where it comes from"), rows, "speed-table") if rows else ""
    latency_notes = [n for n in r.not_measured if "latency" in n.lower()]
    missing = "" if rows else ("<p>Not measured: " + esc("; ".join(latency_notes) if latency_notes else
                               "run `edgeresnet bench ARTIFACT` where the artifact runs, or "
                               "`edgeresnet report ARTIFACT --bench 50` on this machine") + ".</p>")
    estimate = ('<p class="estimate">Estimates come from a model of the board\'s core (compute and memory cycles), '
                "not from a board.</p>") if any(s.estimate for s in speed) else ""
    return f'<h2>Speed</h2><section id="speed">{measured}{estimate}{missing}</section>'


def _calibration(r: Report) -> str:
    calibration = r.calibration
    stability = calibration.stability
    rows = [("method", calibration_summary(r)), ("data", f"{calibration.source}, {r.samples} samples")]
    if stability is not None and stability.max_scale_change is not None:
        trusted = "enough samples" if stability.trusted else "too few samples to trust"
        rows.append(("stability", f"scales moved at most {stability.max_scale_change:.1%} between the first "
                                  f"{stability.first_half_samples} samples and all (threshold {stability.threshold:.0%}): {trusted}"))
    if calibration.warning:
        rows.append(("warning", calibration.warning))
    return f'<h2>Calibration</h2><section id="calibration">{table((), rows)}</section>'


def _devices(r: Report) -> str:
    if not r.devices:
        return ""
    rows: list[tuple[Any, ...]] = []
    for d in r.devices:
        runtime = d.int8.runtime if d.int8 else ""
        emulated = is_emulated(d.label, d.device.machine, d.device.runtime, runtime)
        rows.append((f"host FP32, same {d.samples} inputs", d.samples, _fmt(d.fp32.top1 if d.fp32 else None), None, None, None, None))
        rows.append((f"host: {d.host_int8.runtime if d.host_int8 else r.int8.runtime} (INT8), same {d.samples} inputs", d.samples,
                     _fmt(d.host_int8.top1 if d.host_int8 else None), d.host_drop_pts, "(reference)", None, None))
        latency = d.latency_ms or {}
        timing = (f"{latency['p50']:.3f} ms (batch {latency.get('batch', '?')})" + (", emulated: not a board timing" if emulated else "")
                  if "p50" in latency else None)
        reasons = "; ".join(d.reasons or [])
        rows.append((f"{'emulated' if emulated else 'device'}: {d.label}", d.samples, _fmt(d.int8.top1 if d.int8 else None),
                     d.drop_pts, pct(d.host_agreement), timing,
                     (d.verdict or ("PASS" if d.passed else "DRIFT")) + (f": {reasons}" if reasons else "")))
    notes = "".join(f"<li>{esc(d.label)}: {esc(d.device.machine or '?')}, {esc(d.device.cpu_model or '?')}"
                    f"; data: {esc(d.source or '?')}</li>" for d in r.devices)
    return ('<h2>Measured on the device</h2><section id="devices"><p>Each device ran the artifact\'s golden inputs (or your '
            "labelled images); the host rows are the same inputs on the host, so the columns compare like with like.</p>"
            + table(("what ran where", "inputs", "top-1", "drop vs FP32 (pts)", "agreement with host INT8", "latency p50", "verdict"),
                    rows, "device-table") + f"<ul>{notes}</ul></section>")


def _plots(r: Report, fp32_confusion, int8_confusion) -> str:
    drawn = plots(r, fp32_confusion, int8_confusion)
    return f'<h2>Plots</h2><section id="plots">{figures(drawn)}</section>' if drawn else ""
