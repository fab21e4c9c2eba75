"""The report in lines of text, as `compile` prints it."""

from __future__ import annotations

from typing import Any

from edgeresnet.schema import Report

CALIBRATION_OPTIONS = ("percentile", "num_bins", "num_quantized_bins")


def calibration_summary(report: Report) -> str:
    """'percentile (percentile 99.999, num_bins 2048), 512 samples; scales moved <= 7.2% from the first 256'."""
    calibration = report.calibration
    options = ", ".join(f"{name} {calibration.options[name]}" for name in CALIBRATION_OPTIONS if name in calibration.options)
    text = f"{report.method}{f' ({options})' if options else ''}, {report.samples} samples"
    stability = calibration.stability
    if stability is not None and stability.max_scale_change is not None:
        text += f"; scales moved <= {stability.max_scale_change:.1%} from the first {stability.first_half_samples}"
    return text


def twin_statement(shipped: dict[str, Any]) -> str:
    """Why a host build's figure is the shipped library's: their logits were compared bit for bit."""
    return (f"the same integer program: its logits equal those of {shipped['runtime']} bit for bit "
            f"on all {shipped['samples']} images run there")


def _db(value: float | None, spec: str = "") -> str:
    """An SQNR in dB; None is unbounded (identical logits)."""
    return "unbounded (identical logits)" if value is None else f"{value:{spec}} dB"


def summary_lines(report: Report) -> list[str]:
    r = report
    fp32, int8, gate = r.fp32, r.int8, r.gate
    lines = [
        f"model {r.model} -> target {r.target} ({r.method} calibration, {r.samples} samples)",
        f"calibration: {calibration_summary(r)}",
    ]
    if fp32.top1 is not None and int8.top1 is not None:
        checked = fp32.pytorch_agreement
        against_pytorch = (f"; PyTorch's logits within {checked.max_abs_diff:.1g} on {checked.images} images"
                           if checked else "")
        lines.append(f"FP32 top-1 {fp32.top1:.2f}%  [{fp32.runtime}{against_pytorch}]")
        lines.append(f"INT8 top-1 {int8.top1:.2f}%  [{int8.runtime}, {int8.arch}]  drop {r.drop_pts:+.2f} pts")
    if int8.bit_identical_to:
        lines.append(f"  stands for the shipped files: {twin_statement(int8.bit_identical_to)}")
    lines.append(f"top-1 agreement with FP32 {r.agreement * 100:.2f}%, logit SQNR {_db(r.drift.sqnr_db, '.1f')}, on {int8.samples} images")
    for extra in r.extra_measurements:
        # Unlabelled data has no top-1, and its drop is the share of changed predictions: agreement says it all.
        scored = (f"top-1 {extra.top1:.2f}%, drop {extra.drop_pts:+.2f} pts, "
                  if extra.top1 is not None and extra.drop_pts is not None else "")
        lines.append(f"also measured: {extra.runtime} on {extra.samples} images: {scored}"
                     f"agreement {_pct(extra.agreement)}")
    if r.fallback_layers:
        lines.append(f"kept in float: {', '.join(r.fallback_layers)}")
    if gate.max_drop is not None:
        lines.append(f"gate: drop <= {gate.max_drop} pts: {'PASSED' if gate.passed else 'FAILED'}")
    for note in r.not_measured:
        lines.append(f"not measured: {note}")
    for step in r.skipped_steps or []:
        lines.append(f"not run: {step}")
    lines.extend(device_lines(r))
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def device_lines(report: Report) -> list[str]:
    """One line per device measurement folded in by `edgeresnet report --device`."""
    lines = []
    for device in report.devices or []:
        top1 = device.int8.top1 if device.int8 else None
        lines.append(f"on the device: {device.label}: {device.samples} inputs ({device.source or '?'})"
                     + (f", top-1 {top1:.2f}%" if top1 is not None else "")
                     + (f", drop {device.drop_pts:+.2f} pts" if device.drop_pts is not None else "")
                     + (f", agreement with the host INT8 {_pct(device.host_agreement)}" if device.host_agreement is not None else "")
                     + f": {device.verdict or ('PASS' if device.passed else 'DRIFT')}")
    return lines
