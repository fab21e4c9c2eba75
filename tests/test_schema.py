"""edgeresnet.schema: the typed report, manifest and device report, and their one mapping to and from JSON."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from edgeresnet import schema
from helpers import REPO


@pytest.mark.parametrize("fixture", ["ort_artifact", "jetson_artifact"])
def test_artifact_documents_read_and_write_back_byte_for_byte(fixture, request):
    folder = request.getfixturevalue(fixture)
    for cls, name in ((schema.Report, schema.REPORT_FILE), (schema.Manifest, schema.MANIFEST_FILE)):
        text = (folder / name).read_text()
        assert schema.dumps(schema.parse(cls, text, name)) == text, name


def test_typed_fields_of_a_report(ort_artifact, jetson_artifact):
    report = schema.read(schema.Report, ort_artifact / schema.REPORT_FILE)
    assert isinstance(report.drift, schema.Drift) and isinstance(report.gate, schema.Gate)
    assert isinstance(report.target_details, schema.OnnxRuntimeDetails) and report.target_details.model_file.endswith(".onnx")
    assert report.fp32.pytorch_agreement is not None and report.int8.pytorch_agreement is None
    assert report.calibration.stability is not None and report.passed == report.gate.passed
    jetson = schema.read(schema.Report, jetson_artifact / schema.REPORT_FILE)
    assert isinstance(jetson.target_details, schema.TensorRtDetails) and jetson.target_details.parser_checks
    manifest = schema.read(schema.Manifest, ort_artifact / schema.MANIFEST_FILE)
    assert manifest.accuracy is not None and manifest.accuracy.drop_pts == report.drop_pts
    assert schema.FP32_MODEL_FILE in manifest.files and manifest.input.channels == 3  # resnet20: the CIFAR preset


def _minimal_manifest() -> dict:
    return {"schema": schema.MANIFEST_SCHEMA, "edgeresnet_version": "0",
            "model": {"name": "m", "arch": "resnet20", "weights_sha256": None, "weights_file": None},
            "input": {"batch": 1, "dtype": "float32", "name": "input", "channels": 3, "input_size": [32, 32],
                      "num_classes": 10, "sources": {}, "dynamic_batch": None},
            "calibration": {"method": "percentile", "samples": 8, "source": "x", "sha256": None, "seed": 0,
                            "percentile": 99.9, "stability": None, "warning": None},
            "target": {"name": "t", "backend": "b", "quant_profile": "q", "description": "", "arch": "x86_64",
                       "details": {}, "files": []},
            "toolchain": {}, "tuning_records": {"kernels": 3}, "accuracy": None, "files": {}, "build": {}}


def test_open_keys_spread_where_they_stand_and_keep_their_order():
    data = _minimal_manifest()
    manifest = schema.from_json(schema.Manifest, data)
    assert manifest.calibration.options == {"percentile": 99.9}
    assert manifest.input.preprocessing == {"channels": 3, "input_size": [32, 32]} and manifest.input.input_size == [32, 32]
    assert manifest.provenance == {"tuning_records": {"kernels": 3}}
    assert list(schema.to_json(manifest)) == list(data) and schema.to_json(manifest) == data


def test_a_device_column_omits_what_the_device_did_not_measure():
    column = schema.DeviceColumn(label="board", file="device/board.json", device={"machine": "aarch64"}, samples=4,
                                 passed=True)
    assert schema.to_json(column) == {"label": "board", "file": "device/board.json", "device": {"machine": "aarch64"},
                                      "samples": 4, "passed": True}


def test_unknown_backend_details_stay_a_mapping():
    details = schema.from_json(schema.OtherDetails, {"engine": "x", "layers": 3})
    assert details.values == {"engine": "x", "layers": 3} and schema.to_json(details) == {"engine": "x", "layers": 3}


def test_wrong_schema_missing_fields_and_bad_json_are_refused(tmp_path):
    with pytest.raises(schema.SchemaError, match="unknown schema 'edgeresnet.report/1'"):
        schema.parse(schema.Manifest, json.dumps({"schema": schema.REPORT_SCHEMA}), "m.json")
    broken = _minimal_manifest()
    del broken["target"]
    with pytest.raises(schema.SchemaError, match="m.json: .*lacks target"):
        schema.parse(schema.Manifest, json.dumps(broken), "m.json")
    with pytest.raises(schema.SchemaError, match="not valid JSON"):
        schema.parse(schema.Manifest, "{", "m.json")
    with pytest.raises(schema.SchemaError, match="a list was expected"):
        schema.parse(schema.DeviceReport, json.dumps({"schema": schema.DEVICE_REPORT_SCHEMA, "source": "s", "samples": 1,
                                                      "device": {}, "int8": {"runtime": "r"}, "passed": True,
                                                      "reasons": "x"}), "d")


def test_unbounded_sqnr_round_trips_as_null():
    drift = schema.Drift(agreement=1.0, cosine=1.0, sqnr_db=None, max_abs_diff=0.0)
    text = json.dumps(schema.to_json(drift), allow_nan=False)
    assert schema.from_json(schema.Drift, json.loads(text)) == drift


# --- string-key reads ------------------------------------------------------------------------------------

SCHEMA_PACKAGE = "edgeresnet/schema"  # the one package that maps the schema to and from JSON
# Issue 24 asks for at most 80 string-key reads in all. What is left: the TVM lowering's ONNX attributes
# and constants, TVM's own mappings (tracker summaries, function attributes, LLVM target options), the
# model-card sources, report page details and the tables of a few commands. The ceiling is what the code
# holds, so that a read added anywhere fails here; lower it as they are typed.
STRING_KEY_READS_CEILING = 79


def string_key_reads(source: str) -> int:
    """Subscripts by a string literal (x["k"]) and .get("k", ...) calls, counted on the syntax tree."""
    count = 0
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            count += 1
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            count += 1
    return count


def counted_files() -> list[Path]:
    """The .py files under edgeresnet/ and targets/ (no symbolic links, no templates/ folder, not the schema package) and cli.py."""
    files = [REPO / "cli.py"]
    for folder in ("edgeresnet", "targets"):
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO)
            if path.is_symlink() or "templates" in relative.parts or relative.parent.as_posix() == SCHEMA_PACKAGE:
                continue
            files.append(path)
    return files


def test_the_counter_counts_subscripts_and_gets_by_literal_only():
    assert string_key_reads('a["x"]; a.get("y"); a.get("z", 1); a[k]; a[0]; a.get(k); a["x"] = 1') == 4  # a store is a subscript too


def test_string_key_reads_stay_under_the_ceiling():
    counts = {path.relative_to(REPO).as_posix(): string_key_reads(path.read_text()) for path in counted_files()}
    assert "edgeresnet/pipeline/compile.py" in counts and not any(name.startswith(SCHEMA_PACKAGE + "/") for name in counts)
    assert sum(counts.values()) <= STRING_KEY_READS_CEILING, sorted(counts.items(), key=lambda kv: -kv[1])[:8]
