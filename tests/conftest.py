"""Shared fixtures. Heavy ones (compiled artifacts) are built once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import compile_small

@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> dict[str, Path]:
    """Calibration and labelled evaluation arrays for the untrained CIFAR-style resnet20 (fast tests)."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    calib = folder / "calib.npy"
    np.save(calib, rng.standard_normal((32, 3, 32, 32)).astype(np.float32))
    evaluation = folder / "eval.npz"
    np.savez(evaluation, images=rng.integers(0, 255, (64, 32, 32, 3), dtype=np.uint8), labels=rng.integers(0, 10, 64))
    return {"calib": calib, "eval": evaluation}


def _compiled(tmp_path_factory, small_data, target: str) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / target
    result = compile_small(target, out, small_data)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def ort_artifact(tmp_path_factory, small_data) -> Path:
    return _compiled(tmp_path_factory, small_data, "ort-cpu")


@pytest.fixture(scope="session")
def jetson_artifact(tmp_path_factory, small_data) -> Path:
    return _compiled(tmp_path_factory, small_data, "jetson-orin-nx")
