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

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeresnet.artifact import MANIFEST, verify_folder
from edgeresnet.atomic import atomic_directory
from edgeresnet.digest import sha256_file
from edgeresnet.errors import InputError
from edgeresnet.report import render_html

DEVICE_SCHEMA = "edgeresnet.device-report/1"
DEVICE_DIR = "device"
# The fields of a device report that the report's device column carries (the rest stays in device/<name>.json).
COLUMN_FIELDS = ("source", "samples", "int8", "fp32", "host_int8", "drop_pts", "agreement", "drift", "host_drop_pts",
                 "host_agreement", "host_drift", "latency_ms", "budget", "passed", "verdict", "reasons", "note")


@dataclass
class DeviceFold:
    artifact: str
    out: str  # the folder holding report.json / report.html with the device columns
    label: str
    file: str
    passed: bool
    column: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "out": self.out, "label": self.label, "file": self.file, "passed": self.passed,
                **self.column}


def load_device_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such device report") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON device report ({exc})") from None
    if not isinstance(report, dict) or report.get("schema") != DEVICE_SCHEMA:
        schema = report.get("schema") if isinstance(report, dict) else None
        raise InputError(f"{path}: not a device report (schema {schema!r}, expected {DEVICE_SCHEMA}); "
                         "run.py --check or edgeresnet-run --check writes one")
    missing = [k for k in ("device", "int8", "samples", "passed") if k not in report]
    if missing:
        raise InputError(f"{path}: device report lacks {', '.join(missing)}")
    return report


def describe_device(report: dict[str, Any]) -> str:
    """What ran where, in one line: the runtime, and the machine it ran on."""
    device = report["device"]
    where = device.get("board") or device.get("cpu_model") or "unknown CPU"
    return f"{report['int8']['runtime']} on {device.get('machine', '?')} ({where})"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "device"


def default_out(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".device")


def fold_device_report(artifact: str | Path, device_report: str | Path, label: str | None = None,
                       out: str | Path | None = None) -> DeviceFold:
    folder = Path(artifact)
    if not folder.is_dir():
        raise InputError(f"{folder}: report --device needs an artifact folder (unpack a .tar.gz first)")
    verify_folder(folder)  # the host numbers must be the artifact's own
    device = load_device_report(device_report)
    destination = Path(out) if out else default_out(folder)
    manifest_sha256 = sha256_file(folder / MANIFEST)
    report = _base_report(folder, destination, manifest_sha256)
    for key in ("model", "target"):
        if device.get(key) is not None and device[key] != report[key]:
            raise InputError(f"{device_report}: measured {key} {device[key]!r}, but the artifact is for {report[key]!r}")
    label = label or describe_device(device)
    name = f"{DEVICE_DIR}/{_slug(label)}.json"
    column = {"label": label, "file": name, "device": device["device"],
              **{k: device[k] for k in COLUMN_FIELDS if k in device}}
    report["devices"] = [d for d in report.get("devices", []) if d["label"] != label] + [column]
    report["artifact"] = {"path": str(folder), "manifest_sha256": manifest_sha256}

    keep = [d["file"] for d in report["devices"] if d["file"] != name]
    with atomic_directory(destination, force=True) as staging:
        (staging / DEVICE_DIR).mkdir()
        for previous in keep:
            shutil.copyfile(destination / previous, staging / previous)
        shutil.copyfile(device_report, staging / name)
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        confusion = report.get("confusion") or {}
        (staging / "report.html").write_text(render_html(report, confusion.get("fp32"), confusion.get("int8")))
    return DeviceFold(str(folder), str(destination), label, name, bool(device["passed"]), column)


def _base_report(artifact: Path, destination: Path, manifest_sha256: str) -> dict[str, Any]:
    """The combined report so far in `destination` (same artifact build), else the artifact's own report."""
    existing = destination / "report.json"
    if destination.exists():
        if not existing.is_file():
            raise InputError(f"{destination} exists and holds no report.json; choose another --out")
        report = json.loads(existing.read_text())
        made_from = (report.get("artifact") or {}).get("manifest_sha256")
        if made_from != manifest_sha256:
            raise InputError(f"{destination} was made from another build of the artifact (manifest sha256 "
                             f"{str(made_from)[:12]}..., not {manifest_sha256[:12]}...); choose another --out")
        return report
    return json.loads((artifact / "report.json").read_text())
