"""docs/python-api.md: the functions it names exist, and its example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgeresnet

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def test_every_function_the_page_names_is_public():
    named = set(re.findall(r"`edgeresnet\.([a-z_]+)\(", PAGE.read_text()))
    assert {"compile", "quantize_model", "evaluate_onnx", "verify", "run_artifact", "bench_artifact"} <= named
    for name in named:
        assert name in edgeresnet.__all__ and callable(getattr(edgeresnet, name)), name


@pytest.mark.slow
def test_the_example_runs_and_gives_typed_results(tmp_path):
    (example,) = python_blocks(PAGE.read_text())
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    top1 = re.match(r"FP32 ([\d.]+)%  INT8 ([\d.]+)%  drop ([+-][\d.]+) pts", lines[0])
    assert top1 and float(top1.group(1)) > 80 and abs(float(top1.group(3))) < 3, lines[0]
    assert any(re.fullmatch(r"verified \d+ files for ort-cpu", line) for line in lines), lines
    assert sum(1 for line in lines if re.fullmatch(r"[0-3] \S.* 0\.\d+|[0-3] \S.* 1\.0", line)) == 4, lines
    assert lines[-1] == "refused: --calib-samples must be at least 1, not 0"
    assert (tmp_path / "build" / "api-demo" / "manifest.json").is_file()
