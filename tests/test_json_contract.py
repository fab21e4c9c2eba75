"""What each command prints with --json is a contract with users' scripts: the keys stay.

The key lists below are what the commands printed before the typed-results refactor
(checked side by side with the previous release); typed results must keep them.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeresnet.cli import cli

KEYS = {
    "models": ["name", "arch", "depth", "input", "classes", "params", "macs", "flops", "weights"],
    "targets": ["name", "backend", "quant_profile", "description", "arch", "details", "aliases"],
    "export": ["path", "opset", "input_shape", "max_abs_diff", "tolerance"],
    "quantize": ["path", "profile", "method", "samples", "calibration_sha256", "quantized_layers"],
    "evaluate": ["fp32", "onnx", "drop_pts", "agreement", "drift", "evaluation"],
    "inspect": ["trt_version", "passed", "errors", "warnings"],
    "verify": ["artifact", "target", "files", "ok"],
    "run": ["artifact", "target", "runtime", "samples", "predictions", "ms_per_image", "top1"],
    "bench": ["artifact", "machine", "batch", "int8", "fp32", "int8_speedup", "warnings"],
}


def _json(*args: str):
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stderr carries progress and warnings


def _first_row(data):
    return data[0] if isinstance(data, list) else data


@pytest.fixture(scope="module")
def printed(ort_artifact, small_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("json")
    common = ["--model", "resnet20"]
    qdq = str(folder / "q.onnx")
    return {
        "models": _json("models"),
        "targets": _json("targets"),
        "export": _json("export", *common, "-o", str(folder / "m.onnx")),
        "quantize": _json("quantize", *common, "--scheme", "tensorrt", "--calib", str(small_data["calib"]), "--calib-samples", "8", "-o", qdq),
        "evaluate": _json("evaluate", qdq, *common, "--eval", str(small_data["eval"]), "--eval-samples", "16"),
        "inspect": _json("inspect", qdq, "--trt-version", "10.3"),
        "verify": _json("verify", str(ort_artifact)),
        "run": _json("run", str(ort_artifact), "--input", str(small_data["eval"]), "--limit", "4"),
        "bench": _json("bench", str(ort_artifact), "--runs", "2"),
    }


@pytest.mark.parametrize("command", sorted(KEYS))
def test_json_keys_are_kept(printed, command):
    # in their order; new keys may follow them
    assert list(_first_row(printed[command]))[: len(KEYS[command])] == KEYS[command]


def test_nested_keys_are_kept(printed):
    assert list(printed["run"]["predictions"][0]) == ["index", "file", "class", "name", "score"]
    assert list(printed["bench"]["int8"]) == ["runtime", "p50_ms", "p90_ms", "runs"]
    assert list(printed["evaluate"]["drift"]) == ["agreement", "cosine", "sqnr_db", "max_abs_diff"]
    assert {"runtime", "arch", "samples", "top1", "top5", "per_class"} <= set(printed["evaluate"]["onnx"])
