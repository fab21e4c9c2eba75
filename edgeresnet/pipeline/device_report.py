"""`edgeresnet report ARTIFACT --device device-report.json`: the device's own measurement beside the host's.

A device report (written on the board by `run.py --check` or `edgeresnet-run
--check`, schema edgeresnet.device-report/1) is folded into a copy of the
artifact's report: report.json gains a `devices` column and report.html a table
with the host row and one row per device, each labelled with what ran where.

The artifact itself is never changed: its manifest hashes report.json, and its
digest and signature cover the manifest, so a report written inside it would
break `verify` or the signature. The combined report goes to its own folder
beside the artifact (`<artifact>.device/` by default, `--out` otherwise) with a
copy of each device report under `device/`, and records the sha256 of the
artifact's manifest.json it was made from. Folding more devices into the same
folder adds columns (the same label replaces its column); a folder made from
another build of the artifact is refused.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeresnet.artifact import MANIFEST, device_output_folder, verify_folder
from edgeresnet.atomic import atomic_directory
from edgeresnet.digest import sha256_file
from edgeresnet.errors import InputError
from edgeresnet.report import render_html
from edgeresnet.schema import (DEVICE_REPORT_FILE, DEVICE_REPORT_SCHEMA, GOLDEN_META_FILE, REPORT_FILE, REPORT_HTML,
                               ArtifactRef, DeviceColumn, DeviceReport, GoldenMeta, Report, SchemaError, from_json, loads,
                               read, schema_of, to_json, write)

DEVICE_DIR = "device"


@dataclass
class DeviceFold:
    artifact: str
    out: str  # the folder holding report.json / report.html with the device columns
    label: str
    file: str
    passed: bool
    column: DeviceColumn

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "out": self.out, "label": self.label, "file": self.file, "passed": self.passed,
                **to_json(self.column)}


def load_device_report(path: str | Path) -> DeviceReport:
    """A device report as device_check.py writes it: strict JSON (no NaN or Infinity), its schema, typed
    fields, and figures in their ranges; anything else is refused in one line."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such device report") from None
    except OSError as exc:
        raise InputError(f"{path}: not a readable JSON device report ({exc.strerror or exc})") from None
    try:
        data = loads(text, path)
    except SchemaError as exc:
        raise InputError(str(exc).replace("not valid JSON", "not a readable JSON device report", 1)) from None
    if schema_of(data) != DEVICE_REPORT_SCHEMA:
        raise InputError(f"{path}: not a device report (schema {str(schema_of(data))[:60]!r}, expected {DEVICE_REPORT_SCHEMA}); "
                         "run.py --check or edgeresnet-run --check writes one")
    try:
        report = from_json(DeviceReport, data)
    except (SchemaError, TypeError) as exc:
        raise InputError(f"{path}: device report: {exc}") from None
    _check_ranges(report, path)
    return report


def _check_ranges(report: DeviceReport, path: Path) -> None:
    """Shares in 0..1, top-1 in 0..100, counts positive, and a verdict that follows from its reasons."""
    shares = {"agreement": report.agreement, "host_agreement": report.host_agreement,
              "drift.agreement": report.drift.agreement if report.drift else None,
              "host_drift.agreement": report.host_drift.agreement if report.host_drift else None}
    percents = {f"{key}.top1": run.top1 for key, run in (("int8", report.int8), ("fp32", report.fp32),
                                                          ("host_int8", report.host_int8)) if run is not None}
    wrong = ([k for k, v in shares.items() if v is not None and not 0 <= v <= 1]
             + [k for k, v in percents.items() if v is not None and not 0 <= v <= 100]
             + (["samples"] if report.samples < 1 or report.int8.samples != report.samples else [])
             + (["passed"] if report.passed == bool(report.reasons) else []))
    if wrong:
        raise InputError(f"{path}: device report: {wrong[0]} is out of range or contradicts the rest "
                         "(not as run.py --check writes it)")


TOP1_ROUNDING = 1.5e-4  # the native runner rounds halves away from zero (91.40625 -> 91.4063), Python to even


def _same_figure(reported: float | int | None, golden: float | int | None) -> bool:
    if reported is None or golden is None:
        return reported is golden
    return math.isclose(reported, golden, rel_tol=0, abs_tol=TOP1_ROUNDING)


def check_same_build(device: DeviceReport, source: str | Path, folder: Path, manifest_sha256: str) -> None:
    """A device report of this very build: its manifest digest when it records one, else the host figures it
    copied from golden/ (sample count and host top-1) against the artifact's own golden/golden.json."""
    if device.manifest_sha256 is not None:
        if device.manifest_sha256 != manifest_sha256:
            raise InputError(f"{source}: measured another build of the artifact (manifest sha256 "
                             f"{device.manifest_sha256[:12]}..., not {manifest_sha256[:12]}...)")
        return  # the digest names the build; its inputs may be other images than golden/ (validate --eval)
    if device.host_int8 is None or not (folder / GOLDEN_META_FILE).is_file():
        return  # the user's own labelled images: no host references to hold it to
    meta = read(GoldenMeta, folder / GOLDEN_META_FILE)  # verified with the artifact
    host_top1 = meta.host_top1
    claims = {"host_int8.samples": (device.host_int8.samples, meta.samples),
              "host_int8.top1": (device.host_int8.top1, host_top1.int8 if host_top1 else None),
              "fp32.top1": (device.fp32.top1 if device.fp32 else None, host_top1.fp32 if host_top1 else None)}
    for claim, (reported, golden) in claims.items():
        if not _same_figure(reported, golden):
            raise InputError(f"{source}: {claim} is {reported!r}, but this artifact's golden vectors give {golden!r}: "
                             "a device report of another build")


def describe_device(report: DeviceReport) -> str:
    """What ran where, in one line: the runtime, and the machine it ran on."""
    device = report.device
    return f"{report.int8.runtime} on {device.machine or '?'} ({device.board or device.cpu_model or 'unknown CPU'})"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "device"


def default_out(artifact: Path) -> Path:
    return device_output_folder(artifact)


# What the device commands write into the device folder; folding a report keeps them.
DEVICE_WRITTEN = ("engines", DEVICE_REPORT_FILE)


def _column(label: str, file: str, device: DeviceReport) -> DeviceColumn:
    """The fields of a device report that the report's device column carries (the rest stays in device/<name>.json)."""
    return DeviceColumn(label=label, file=file, device=device.device, source=device.source, samples=device.samples,
                        int8=device.int8, fp32=device.fp32, host_int8=device.host_int8, drop_pts=device.drop_pts,
                        agreement=device.agreement, drift=device.drift, host_drop_pts=device.host_drop_pts,
                        host_agreement=device.host_agreement, host_drift=device.host_drift, latency_ms=device.latency_ms,
                        budget=device.budget, passed=device.passed, verdict=device.verdict, reasons=device.reasons,
                        note=device.note)


def fold_device_report(artifact: str | Path, device_report: str | Path, label: str | None = None,
                       out: str | Path | None = None) -> DeviceFold:
    folder = Path(artifact)
    if not folder.is_dir():
        raise InputError(f"{folder}: report --device needs an artifact folder (unpack a .tar.gz first)")
    verify_folder(folder)  # the host numbers must be the artifact's own
    device = load_device_report(device_report)
    destination = Path(out) if out else default_out(folder)
    manifest_sha256 = sha256_file(folder / MANIFEST)
    check_same_build(device, device_report, folder, manifest_sha256)
    report = _base_report(folder, destination, manifest_sha256)
    for key, measured, built in (("model", device.model, report.model), ("target", device.target, report.target)):
        if measured is not None and measured != built:
            raise InputError(f"{device_report}: measured {key} {measured!r}, but the artifact is for {built!r}")
    label = label or describe_device(device)
    name = f"{DEVICE_DIR}/{_slug(label)}.json"
    column = _column(label, name, device)
    report.devices = [d for d in report.devices or [] if d.label != label] + [column]
    report.artifact = ArtifactRef(str(folder), manifest_sha256)

    keep = [d.file for d in report.devices if d.file != name]
    with atomic_directory(destination, force=True) as staging:
        (staging / DEVICE_DIR).mkdir()
        for previous in keep:
            shutil.copyfile(destination / previous, staging / previous)
        shutil.copyfile(device_report, staging / name)
        for entry in DEVICE_WRITTEN:
            if (destination / entry).is_dir():
                shutil.copytree(destination / entry, staging / entry, copy_function=os.link)
            elif (destination / entry).is_file():
                os.link(destination / entry, staging / entry)
        write(report, staging / REPORT_FILE)
        (staging / REPORT_HTML).write_text(render_html(report, report.confusion.fp32, report.confusion.int8, folder=folder))
    return DeviceFold(str(folder), str(destination), label, name, device.passed, column)


def _base_report(artifact: Path, destination: Path, manifest_sha256: str) -> Report:
    """The combined report so far in `destination` (same artifact build), else the artifact's own report."""
    existing = destination / REPORT_FILE
    if destination.exists():
        if not existing.is_file() and any((destination / entry).exists() for entry in DEVICE_WRITTEN):
            return read(Report, artifact / REPORT_FILE)  # the device folder, before its first fold
        if not existing.is_file():
            raise InputError(f"{destination} exists and holds no report.json; choose another --out")
        report = read(Report, existing)
        made_from = report.artifact.manifest_sha256 if report.artifact else None
        if made_from != manifest_sha256:
            raise InputError(f"{destination} was made from another build of the artifact (manifest sha256 "
                             f"{str(made_from)[:12]}..., not {manifest_sha256[:12]}...); choose another --out")
        return report
    return read(Report, artifact / REPORT_FILE)
