"""benchmarks/peer_ncnn.py: ncnn in the ARM cycle model, and the model against ncnn's published board timings.

The counting itself needs ncnn's source (for its int8 tools and benchmark models) and minutes of
emulation: scripts/setup_ncnn.sh sets it up and benchmarks/results/ holds what it measured. These
tests cover what decides whether a conversion may be counted, the command line's refusals, and
that the committed results are consistent with the rules that made them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RESULTS = BENCHMARKS / "results"
sys.path.insert(0, str(BENCHMARKS))

import peer_ncnn  # noqa: E402


def test_agreement_is_cosine_and_top1_of_the_logits():
    reference = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 0.0]])
    same = peer_ncnn.agreement(reference, reference * 2)  # a scale changes neither
    assert same.fp32_cosine == 1.0 and same.fp32_top1_agreement == 1.0 and same.images == 4
    swapped = reference.copy()
    swapped[0] = [0.0, 1.0, 0.0]  # one image of four: orthogonal logits, another top class
    worse = peer_ncnn.agreement(reference, swapped)
    assert worse.fp32_top1_agreement == 0.75 and worse.fp32_cosine == 0.75


@pytest.mark.parametrize("args", [["--validate", "--models", "resnet34_int8"], ["--validate", "--boards", "jetson-orin-cpu"],
                                  ["--validate", "--threads", "1,2"], ["--models", "resnet18_int8"]])
def test_validation_refuses_what_ncnn_did_not_publish_before_any_work(args, tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "peer_ncnn.py"), *args], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "EDGERESNET_ARM_COST_CACHE": str(tmp_path / "cache"),
                                 "XDG_CACHE_HOME": str(tmp_path / "xdg")}, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists() and not (tmp_path / "xdg").exists()


def test_missing_ncnn_source_is_a_missing_dependency_that_says_how_to_get_it(tmp_path, monkeypatch):
    from edgeresnet.errors import MissingDependency

    monkeypatch.setenv(peer_ncnn.SOURCE_ENV, str(tmp_path / "no-ncnn"))
    with pytest.raises(MissingDependency, match=f"--branch {peer_ncnn.NCNN_RELEASE} "):
        peer_ncnn.build_tools()


def test_committed_validation_rows_are_the_estimate_over_the_published_time():
    rows = json.loads((RESULTS / "ncnn_validation.json").read_text())
    assert {(r["board"], r["threads"]) for r in rows if r["model"] == "resnet18_int8"} == {
        ("rpi4", 1), ("rpi4", 4), ("rpi5", 1), ("rpi5", 4)}
    for r in rows:
        assert r["published_ms"] == peer_ncnn.PUBLISHED_MS[r["board"]][r["model"]][r["threads"]]
        assert r["ratio"] == pytest.approx(r["estimated_ms"] / r["published_ms"], abs=1e-3)
        assert r["cycles"] == r["compute_cycles"] + r["memory_cycles"] and r["parallel_regions"] > 0
        assert r["version"] == peer_ncnn.VERSION
    table = peer_ncnn.validation_table(rows)
    assert len(table.splitlines()) == len(rows) + 2


def test_committed_ncnn_rows_passed_their_conversion_check():
    rows = [r for r in json.loads((RESULTS / "arm_cost.json").read_text()) if r["runtime"] in peer_ncnn.RUNTIMES]
    assert rows, "no ncnn rows in benchmarks/results/arm_cost.json"
    for r in rows:
        assert r["version"] == peer_ncnn.VERSION and r["fp32_cosine"] >= peer_ncnn.MIN_COSINE
        if r["model"] == "resnet20-fmnist":  # trained: judged by top-1 agreement on its test images
            assert r["fp32_top1_agreement"] >= peer_ncnn.MIN_AGREEMENT
        assert r["cycles"] == r["compute_cycles"] + r["memory_cycles"]
