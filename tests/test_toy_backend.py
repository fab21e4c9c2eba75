"""Adding a backend takes one module (tests/toy_backend.py) and one registry entry, made here only:
`compile`, `verify`, `run`, `bench` and the command line's choices then work through it end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

import edgeresnet
from edgeresnet.cli import cli
from edgeresnet.errors import InputError
from edgeresnet.runners import Runner
from edgeresnet.schema import to_json
from edgeresnet.targets import get_target, register_backend, unregister_backend
from edgeresnet.targets.base import BuildContext, Target, TargetBuild
from toy_backend import MODEL_FILE, OnnxReferenceBackend, ReferenceDetails


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
    assert report.target == "reference-cpu" and report.quant_profile == "onnx-reference"
    assert report.int8.runtime.endswith("(CPUExecutionProvider, exact Q/DQ, graph optimizations off)")
    assert report.not_measured == ["nothing: this backend runs wherever ONNX Runtime does"]
    assert manifest.target.files == [MODEL_FILE] and manifest.target.details == {"optimizations": "off"}
    assert manifest.toolchain["executor"] == "onnxruntime, graph optimizations off"
    assert (out / MODEL_FILE).is_file() and report.samples == 32 and report.int8.samples == 64

    assert edgeresnet.verify(out).target == "reference-cpu"
    run = edgeresnet.run_artifact(out, str(small_data["eval"]), limit=8)
    assert run.samples == 8 and run.runtime == report.int8.runtime
    assert edgeresnet.bench_artifact(out, runs=2).int8.runtime == report.int8.runtime


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


class _Shifted(Runner):
    """The same program as the shipped runner, built elsewhere: equal logits, or off by `offset`."""

    def __init__(self, inner: Runner, offset: float):
        self.inner, self.offset, self.static_batch = inner, offset, inner.static_batch

    @property
    def runtime(self) -> str:
        return f"host twin (offset {self.offset})"

    def infer(self, batch):
        return self.inner.infer(batch) + np.float32(self.offset)


class _SampledBackend(OnnxReferenceBackend):
    """Like an aarch64 target: the shipped runner sees a sample only; a host twin sees everything."""

    name = "onnx-reference-sampled"

    def __init__(self, offset: float):
        self.offset = offset

    def targets(self) -> list[Target]:
        return [Target("sampled-cpu", self.name, "the shipped runner on a sample, its host twin on all", "any",
                       ReferenceDetails(optimizations="off"))]

    def build(self, context: BuildContext) -> TargetBuild:
        built = super().build(context)
        twin = _Shifted(self._runner(context.folder), self.offset)
        return replace(built, sample_limit=16, reference_runners=[twin], host_twin=twin)


@pytest.mark.parametrize("offset", [0.0, 1e-3])
def test_a_host_twin_is_the_headline_only_when_bit_identical_on_the_sample(small_data, tmp_path, offset):
    backend = register_backend(_SampledBackend(offset))
    try:
        report = to_json(edgeresnet.compile(edgeresnet.CompileOptions(  # as report.json says it
            target="sampled-cpu", model="resnet20", calib=str(small_data["calib"]), eval=str(small_data["eval"]),
            out=str(tmp_path / "sampled"), progress=False)).report)
    finally:
        unregister_backend(backend.name)
    (other,) = report["extra_measurements"]
    if offset == 0.0:
        assert report["int8"]["samples"] == 64 and report["int8"]["runtime"] == "host twin (offset 0.0)"
        shipped = report["int8"]["bit_identical_to"]
        assert shipped["samples"] == 16 and shipped["runtime"] == other["runtime"] and other["samples"] == 16
        assert "bit for bit on all 16 images" in (tmp_path / "sampled" / "report.html").read_text()
        assert report["warnings"] == [] or all("bit-identical" not in w for w in report["warnings"])
    else:
        assert report["int8"]["samples"] == 16 and "bit_identical_to" not in report["int8"]
        assert other["samples"] == 64 and other["runtime"] == "host twin (offset 0.001)"
        assert any("is not bit-identical to" in w for w in report["warnings"])
