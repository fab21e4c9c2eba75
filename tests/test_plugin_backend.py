"""A backend from another installed package (tests/fixtures/toy_plugin), found through the
"edgeresnet.backends" entry point group alone: no file of the project names it, yet `targets`,
`compile --help` and a whole `compile` offer it, with its own option passed through to its build."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, compile_small, run_cli

PLUGIN = REPO / "tests" / "fixtures" / "toy_plugin"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> dict[str, str]:
    """The plug-in pip-installed (no dependencies, no build isolation: no network) into a folder on PYTHONPATH,
    built from a copy (a build leaves its build/ and .egg-info folders beside the sources)."""
    folder = tmp_path_factory.mktemp("plugin-site")
    source = tmp_path_factory.mktemp("plugin-source") / "toy_plugin"
    shutil.copytree(PLUGIN, source)
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                             "--no-index", "--target", str(folder), str(source)],
                            cwd=source, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert list(folder.glob("edgeresnet_toy_plugin-*.dist-info/entry_points.txt"))
    return {"PYTHONPATH": str(folder)}


def test_the_plugin_is_named_nowhere_in_the_project():
    sources = [p for root in ("edgeresnet", "targets", "calibration") for p in (REPO / root).rglob("*") if p.is_file()]
    sources += [REPO / "pyproject.toml", REPO / "setup.py", REPO / "cli.py"]
    assert [p for p in sources if p.suffix in (".py", ".toml", ".md") and
            ("toy-plugin" in p.read_text() or "toy-pytorch" in p.read_text())] == []


def test_without_the_plugin_its_target_is_unknown():
    assert "plugin-cpu" not in run_cli("targets", "--json").stdout
    assert "--toy-plugin-graph-optimizations" not in run_cli("compile", "--help").stdout


def test_the_plugin_is_listed_and_its_option_offered(plugin_path):
    listed = json.loads(run_cli("targets", "--json", env=plugin_path).stdout)
    assert {"name": "plugin-cpu", "backend": "toy-plugin", "quant_profile": "toy-plugin"}.items() \
        <= next(t for t in listed if t["name"] == "plugin-cpu").items()
    backends = [t["backend"] for t in listed]
    assert backends == sorted(backends)  # registry order: by backend name, a plug-in's among the built-ins
    assert "--toy-plugin-graph-optimizations" in run_cli("compile", "--help", env=plugin_path).stdout


def test_the_plugin_compiles_end_to_end_with_its_own_option(plugin_path, small_data, tmp_path):
    out = tmp_path / "plugin"
    result = compile_small("plugin-cpu", out, small_data, "--toy-plugin-graph-optimizations", "--json", env=plugin_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["target"] == "plugin-cpu" and report["quant_profile"] == "toy-plugin"
    assert report["target_details"] == {"graph_optimizations": True}  # the option reached the build
    assert report["sensitivity"] and report["layer_drift"] and "skipped_steps" not in report  # a Q/DQ backend: all run
    assert "toy plug-in, graph optimizations on" in report["int8"]["runtime"]
    assert (out / "model.plugin.onnx").is_file()
    assert_verifies_and_runs(out, "plugin-cpu", small_data, plugin_path)


def assert_verifies_and_runs(out: Path, target: str, small_data: dict, env: dict[str, str]) -> None:
    verified = run_cli("verify", str(out), "--json", env=env)
    assert verified.returncode == 0 and json.loads(verified.stdout)["target"] == target
    ran = run_cli("run", str(out), "--input", str(small_data["eval"]), "--limit", "4", "--json", env=env)
    assert ran.returncode == 0 and json.loads(ran.stdout)["samples"] == 4


def test_an_option_of_another_backend_is_bad_input(plugin_path, small_data, tmp_path):
    result = compile_small("ort-cpu", tmp_path / "ort", small_data, "--toy-plugin-graph-optimizations", env=plugin_path)
    assert result.returncode == 2
    assert "--toy-plugin-graph-optimizations is an option of another backend; ort-cpu builds with onnxruntime" in result.stderr
    assert not (tmp_path / "ort").exists()


def test_a_backend_that_quantizes_in_pytorch_compiles_and_names_the_steps_not_run(plugin_path, small_data, tmp_path):
    """edgeresnet_toy_plugin.pytorch fake-quantizes in PyTorch and ships a torch.export program: no Q/DQ graph, so
    sensitivity, fallback and per-layer drift are not run, and the report says so; the rest is any backend's."""
    out = tmp_path / "pytorch"
    result = compile_small("pytorch-cpu", out, small_data, "--max-drop", "100", "--json", env=plugin_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["quant_profile"] == "toy-pytorch" and report["int8"]["runtime"].startswith("toy PyTorch int8")
    assert [step.split(":")[0] for step in report["skipped_steps"]] == [
        "layer sensitivity", "fallback of sensitive layers to float", "per-layer drift"]
    assert report["sensitivity"] == [] and "layer_drift" not in report
    assert report["calibration"]["method"] == "minmax" and report["calibration"]["inferences"] == 32
    assert 0.99 < report["drift"]["cosine"] <= 1.0  # int8 steps of the untrained network's own ranges
    assert (out / "model.pt2").is_file() and (out / "model.fp32.onnx").is_file()
    assert "Not run for this backend" in (out / "report.html").read_text()
    assert_verifies_and_runs(out, "pytorch-cpu", small_data, plugin_path)


def test_bias_correction_is_bad_input_for_a_backend_that_quantizes_in_pytorch(plugin_path, small_data, tmp_path):
    result = compile_small("pytorch-cpu", tmp_path / "pytorch", small_data, "--bias-correction", env=plugin_path)
    assert result.returncode == 2
    assert "--bias-correction shifts biases in a Q/DQ graph; pytorch-cpu builds with toy-pytorch" in result.stderr
    assert not (tmp_path / "pytorch").exists()
