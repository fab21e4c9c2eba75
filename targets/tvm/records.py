"""The tuning-records folder of `edgeresnet tune`: MetaSchedule's JSON database and `tuning.json`.

`tuning.json` says what was tuned, for which profile and LLVM target, with which TVM,
and what each kernel measured. A leaf: the tuner writes this format, the schedules
and the backend read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeresnet import schema
from edgeresnet.errors import InputError

DATABASE_FILES = ("database_workload.json", "database_tuning_record.json")
SUMMARY_FILE = "tuning.json"
# /2: kernels carry their schedule rule as a block attribute, which is part of the TIR MetaSchedule
# hashes, so /1 records would match fewer kernels and lose their speed without a word.
SCHEMA = "edgeresnet.tuning/2"


@dataclass(frozen=True)
class TuningRun:
    """One `edgeresnet tune` run of a summary's `runs` (the fields the backend reads)."""
    trials_per_kernel: int | None = None


@dataclass(frozen=True)
class TuningSummary:
    """`tuning.json` as the backend reads it: what the records were tuned for and how they were made."""
    schema: str
    target: str | None = None
    llvm_target: dict[str, Any] | None = None
    measured_on: str | None = None
    reproduce: str | None = None
    runs: list[TuningRun] = field(default_factory=list)


def read_summary(records: str | Path) -> TuningSummary:
    folder = Path(records)
    missing = [name for name in (*DATABASE_FILES, SUMMARY_FILE) if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder} is not a tuning-records folder of edgeresnet tune (missing {', '.join(missing)})")
    try:
        data = json.loads((folder / SUMMARY_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder / SUMMARY_FILE}: unreadable ({exc})") from None
    found = schema.schema_of(data)
    if found != SCHEMA:
        hint = "; tune again with this version" if isinstance(found, str) and found.startswith("edgeresnet.tuning/") else ""
        raise InputError(f"{folder / SUMMARY_FILE}: not an {SCHEMA} summary{hint}")
    try:
        return schema.from_json(TuningSummary, data)
    except schema.SchemaError as exc:
        raise InputError(f"{folder / SUMMARY_FILE}: {exc}") from None


def check_records_for(records: str | Path, profile_name: str, llvm_target: dict) -> TuningSummary:
    """The records' summary, if they were tuned for this profile and LLVM target; else an InputError."""
    summary = read_summary(records)
    if summary.target != profile_name or summary.llvm_target != llvm_target:
        raise InputError(f"{records} holds records tuned for {summary.target} ({summary.llvm_target}), "
                         f"not for {profile_name} ({llvm_target})")
    return summary


def records_provenance(records: str | Path) -> dict[str, Any]:
    """What the manifest says of the records a build used: their hashes and how they were made."""
    folder = Path(records)
    summary = read_summary(folder)
    return {"sha256": {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in DATABASE_FILES},
            "measured_on": summary.measured_on, "reproduce": summary.reproduce,
            "trials_per_kernel": [run.trials_per_kernel for run in summary.runs]}


@contextlib.contextmanager
def open_records(records: str | Path):
    """MetaSchedule's JSON database of a records folder, entered (what MetaScheduleApplyDatabase reads)."""
    from tvm.s_tir import meta_schedule as ms

    read_summary(records)
    with ms.database.JSONDatabase(work_dir=str(records), allow_missing=False) as database:
        yield database
