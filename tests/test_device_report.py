"""Device reports that `report --device` must refuse in one line with exit 2: malformed or truncated JSON,
non-finite numbers, another schema, mistyped fields, figures out of range, and reports of another build.
The artifact stays as built and no combined report is written."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from helpers import cli_in_process, tree_state
from jetson_standins import copy_bundle, run_bundle


@pytest.fixture(scope="module")
def measured(jetson_artifact, tmp_path_factory) -> tuple[Path, dict, str]:
    """A private copy of the Jetson bundle, the device report its run.py --check wrote (ONNX Runtime standing in
    for the engine), and that report's text."""
    folder = tmp_path_factory.mktemp("device-report")
    bundle = copy_bundle(jetson_artifact, folder)
    result = run_bundle(bundle, folder, "--check", "--report", str(folder / "ok.json"))
    assert result.returncode == 0, result.stderr
    text = (folder / "ok.json").read_text()
    return bundle, json.loads(text), text


def _set(path: str, value):
    """A change to the report: the field at dotted `path` set to `value` (or removed when value is ...)."""
    def change(report: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            report = report[key]
        if value is ...:
            report.pop(last)
        else:
            report[last] = value
    return change


def _without_digest(change):
    def both(report: dict) -> None:
        report.pop("manifest_sha256")
        change(report)
    return both


MALFORMED = {
    "empty file": (lambda t: "", "not a readable JSON device report"),
    "truncated": (lambda t: t[: len(t) // 2], "not a readable JSON device report"),
    "one brace": (lambda t: "{", "not a readable JSON device report"),
    "binary": (lambda t: "\udcff\udcfe\x00garbage", "not a readable JSON device report"),
    "a list": (lambda t: "[]", "not a device report"),
    "null": (lambda t: "null", "not a device report"),
    "NaN cosine": (lambda t: t.replace('"cosine": ', '"cosine": NaN, "was": ', 1), "NaN"),
    "Infinity max diff": (lambda t: t.replace('"max_abs_diff": ', '"max_abs_diff": Infinity, "was": ', 1), "Infinity"),
    "-Infinity latency": (lambda t: t.replace('"p50": ', '"p50": -Infinity, "was": ', 1), "-Infinity"),
    "1e999 agreement": (lambda t: t.replace('"agreement": ', '"agreement": 1e999, "was": ', 1), "out of range"),
}
FIELDS = {
    "schema version 2": (_set("schema", "edgeresnet.device-report/2"), "not a device report"),
    "schema missing": (_set("schema", ...), "not a device report"),
    "schema a number": (_set("schema", 5), "not a device report"),
    "schema a list": (_set("schema", ["edgeresnet.device-report/1"]), "not a device report"),
    "samples a string": (_set("samples", "64"), "samples: an integer"),
    "samples a float": (_set("samples", 64.5), "samples: an integer"),
    "passed a string": (_set("passed", "yes"), "passed: true or false"),
    "passed missing": (_set("passed", ...), "lacks passed"),
    "int8 a string": (_set("int8", "fast"), "an object was expected"),
    "device a list": (_set("device", []), "an object was expected"),
    "reasons a string": (_set("reasons", "none"), "a list was expected"),
    "top-1 a string": (_set("int8.top1", "high"), "int8.top1: a number"),
    "drift agreement a bool": (_set("drift.agreement", True), "drift.agreement: a number"),
    "latency a list": (_set("latency_ms", [1, 2]), "an object was expected"),
    "agreement above 1": (_set("agreement", 1.5), "agreement is out of range"),
    "host agreement below 0": (_set("host_agreement", -0.1), "host_agreement is out of range"),
    "top-1 negative": (_set("int8.top1", -3.0), "int8.top1 is out of range"),
    "top-1 above 100": (_set("host_int8.top1", 100.5), "host_int8.top1 is out of range"),
    "no samples": (_set("samples", 0), "samples is out of range"),
    "passed with reasons": (_set("reasons", ["top-1 agreement 12%"]), "passed is out of range"),
    # Of another build: its recorded manifest digest, else the host figures it copied from golden/.
    "another manifest digest": (_set("manifest_sha256", "0" * 64), "another build"),
    "another host top-1": (_without_digest(_set("host_int8.top1", 12.5)), "another build"),
    "another sample count": (_without_digest(lambda r: (r.update(samples=32), r["int8"].update(samples=32),
                                                        r["host_int8"].update(samples=32))), "another build"),
    "another FP32 top-1": (_without_digest(_set("fp32.top1", 0.0)), "another build"),
    "another model": (_set("model", "resnet56"), "resnet56"),
    "another target": (_set("target", "rpi5"), "rpi5"),
}


def _fold(monkeypatch, capsys, tmp_path: Path, bundle: Path, report: Path) -> list[str]:
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    before = tree_state(bundle)
    out = tmp_path / "combined"
    code, stdout, err = cli_in_process(monkeypatch, capsys, "report", str(bundle), "--device", str(report), "--out", str(out))
    assert code == 2, (code, stdout, err)
    assert tree_state(bundle) == before and not out.exists()
    assert [p.name for p in private_tmp.iterdir() if p.name != ".ses"] == []
    assert len(err) == 1 and err[0].startswith("edgeresnet: error:") and "Traceback" not in err[0], err
    return err


def test_the_device_report_as_written_is_folded(measured, tmp_path, monkeypatch, capsys):
    """The control for the cases below: the unchanged report is taken."""
    bundle, _, text = measured
    (tmp_path / "ok.json").write_text(text)
    code, _, err = cli_in_process(monkeypatch, capsys, "report", str(bundle), "--device", str(tmp_path / "ok.json"),
                                  "--out", str(tmp_path / "combined"))
    assert code == 0, err
    assert json.loads((tmp_path / "combined" / "report.json").read_text())["devices"][0]["passed"] is True


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_report_refuses_malformed_device_reports(case, measured, tmp_path, monkeypatch, capsys):
    bundle, _, text = measured
    change, message = MALFORMED[case]
    path = tmp_path / "device.json"
    path.write_bytes(change(text).encode("utf-8", "surrogateescape"))
    (line,) = _fold(monkeypatch, capsys, tmp_path, bundle, path)
    assert message in line and str(path) in line, line


@pytest.mark.parametrize("case", sorted(FIELDS))
def test_report_refuses_device_reports_with_wrong_fields_or_of_another_build(case, measured, tmp_path, monkeypatch, capsys):
    bundle, report, _ = measured
    change, message = FIELDS[case]
    edited = json.loads(json.dumps(report))
    change(edited)
    path = tmp_path / "device.json"
    path.write_text(json.dumps(edited, indent=2))
    (line,) = _fold(monkeypatch, capsys, tmp_path, bundle, path)
    assert message in line, line
