"""The tuning-records folder of `edgeresnet tune`: MetaSchedule's JSON database and `tuning.json`.

`tuning.json` says what was tuned, for which profile and LLVM target, with which TVM,
and what each kernel measured. A leaf: the tuner writes this format, the schedules
and the backend read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from edgeresnet.errors import InputError

DATABASE_FILES = ("database_workload.json", "database_tuning_record.json")
SUMMARY_FILE = "tuning.json"
# /2: kernels carry their schedule rule as a block attribute, which is part of the TIR MetaSchedule
# hashes, so /1 records would match fewer kernels and lose their speed without a word.
SCHEMA = "edgeresnet.tuning/2"


def read_summary(records: str | Path) -> dict[str, Any]:
    folder = Path(records)
    missing = [name for name in (*DATABASE_FILES, SUMMARY_FILE) if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder} is not a tuning-records folder of edgeresnet tune (missing {', '.join(missing)})")
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder / SUMMARY_FILE}: unreadable ({exc})") from None
    if not isinstance(summary, dict) or summary.get("schema") != SCHEMA:
        found = summary.get("schema") if isinstance(summary, dict) else None
        hint = "; tune again with this version" if isinstance(found, str) and found.startswith("edgeresnet.tuning/") else ""
        raise InputError(f"{folder / SUMMARY_FILE}: not an {SCHEMA} summary{hint}")
    return summary


def check_records_for(records: str | Path, profile_name: str, llvm_target: dict) -> dict[str, Any]:
    """The records' summary, if they were tuned for this profile and LLVM target; else an InputError."""
    summary = read_summary(records)
    if summary.get("target") != profile_name or summary.get("llvm_target") != llvm_target:
        raise InputError(f"{records} holds records tuned for {summary.get('target')} ({summary.get('llvm_target')}), "
                         f"not for {profile_name} ({llvm_target})")
    return summary


def records_provenance(records: str | Path) -> dict[str, Any]:
    """What the manifest says of the records a build used: their hashes and how they were made."""
    folder = Path(records)
    summary = read_summary(folder)
    return {"sha256": {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in DATABASE_FILES},
            "measured_on": summary.get("measured_on"), "reproduce": summary.get("reproduce"),
            "trials_per_kernel": [run.get("trials_per_kernel") for run in summary.get("runs", [])]}


@contextlib.contextmanager
def open_records(records: str | Path):
    """MetaSchedule's JSON database of a records folder, entered (what MetaScheduleApplyDatabase reads)."""
    from tvm.s_tir import meta_schedule as ms

    read_summary(records)
    with ms.database.JSONDatabase(work_dir=str(records), allow_missing=False) as database:
        yield database
