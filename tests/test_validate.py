"""`validate --rpc` (edgeresnet/pipeline/validate.py) asks the artifact's backend for its device farm
capability; an artifact whose backend has none is refused in one line that says which backends do.
The run on a farm itself: tests/test_golden.py (a tracker and two servers on loopback)."""

from __future__ import annotations

from helpers import run_cli


def test_an_artifact_without_a_device_farm_is_refused(ort_artifact, tmp_path):
    result = run_cli("validate", str(ort_artifact), "--rpc", "board@127.0.0.1:9190", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "device farm, which tvm artifacts reach; ort-cpu is a onnxruntime artifact" in result.stderr
    assert not (tmp_path / "out").exists()
