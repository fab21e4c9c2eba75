"""Adding a backend takes one module (tests/toy_backend.py) and one registry entry, made here only:
`compile`, `verify`, `run`, `bench` and the command line's choices then work through it end to end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import edgeresnet
from edgeresnet.cli import cli
from edgeresnet.errors import InputError
from edgeresnet.targets import get_target, register_backend, unregister_backend
from toy_backend import MODEL_FILE, OnnxReferenceBackend


@pytest.fixture
def toy_backend():
    backend = register_backend(OnnxReferenceBackend())
    yield backend
    unregister_backend(backend.name)


def test_compile_verify_run_and_bench_through_a_toy_backend(toy_backend, small_data, tmp_path):
    out = tmp_path / "toy"
    result = edgeresnet.compile(edgeresnet.CompileOptions(
        target="qdq-reference", model="resnet20", calib=str(small_data["calib"]), eval=str(small_data["eval"]),
        out=str(out), progress=False))
    report, manifest = result.report, result.manifest
    assert report["target"] == "reference-cpu" and report["quant_profile"] == "onnx-reference"
    assert report["int8"]["runtime"].endswith("(CPUExecutionProvider, exact Q/DQ, graph optimizations off)")
    assert report["not_measured"] == ["nothing: this backend runs wherever ONNX Runtime does"]
    assert manifest["target"]["files"] == [MODEL_FILE] and manifest["target"]["details"] == {"optimizations": "off"}
    assert manifest["toolchain"]["executor"] == "onnxruntime, graph optimizations off"
    assert (out / MODEL_FILE).is_file() and report["samples"] == 32 and report["int8"]["samples"] == 64

    assert edgeresnet.verify(out).target == "reference-cpu"
    run = edgeresnet.run_artifact(out, str(small_data["eval"]), limit=8)
    assert run.samples == 8 and run.runtime == report["int8"]["runtime"]
    assert edgeresnet.bench_artifact(out, runs=2).int8.runtime == report["int8"]["runtime"]


def test_the_command_line_offers_a_registered_backend(toy_backend, small_data, tmp_path):
    runner = CliRunner()
    listed = json.loads(runner.invoke(cli, ["targets", "--json"]).stdout)
    assert {"name": "reference-cpu", "backend": "onnx-reference", "quant_profile": "onnx-reference",
            "aliases": ["qdq-reference"]}.items() <= next(t for t in listed if t["name"] == "reference-cpu").items()
    quantized = runner.invoke(cli, ["quantize", "--scheme", "onnx-reference", "--model", "resnet20", "--calib",
                                    str(small_data["calib"]), "--calib-samples", "8", "-o", str(tmp_path / "q.onnx"), "--json"])
    assert quantized.exit_code == 0, quantized.output
    assert json.loads(quantized.stdout)["profile"] == "onnx-reference"


def test_unregistered_backends_are_gone(small_data):
    backend = register_backend(OnnxReferenceBackend())
    with pytest.raises(ValueError, match="registered twice"):
        register_backend(OnnxReferenceBackend())
    unregister_backend(backend.name)
    with pytest.raises(InputError, match="unknown target 'reference-cpu'"):
        get_target("reference-cpu")
    with pytest.raises(InputError, match="unknown target 'qdq-reference'"):
        get_target("qdq-reference")
