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


@pytest.fixture(scope="session")
def reference_qdq():
    """The reference model, its TVM-scheme Q/DQ model and 2,000 test images (the TVM tests' input)."""
    from edgeresnet.calibration import open_dataset
    from edgeresnet.export import export_onnx_model
    from edgeresnet.models import load_model
    from edgeresnet.quantize import QuantizeConfig, quantize
    from edgeresnet.targets.tvm.backend import TVM_SCHEME

    loaded = load_model("resnet20-fmnist")
    calib = open_dataset("fashion-mnist", loaded.preprocessing, limit=512)
    test = open_dataset("fashion-mnist:test", loaded.preprocessing, limit=2000)
    fp32 = export_onnx_model(loaded)
    return loaded, quantize(fp32, calib.images, QuantizeConfig(scheme=TVM_SCHEME), progress=False), test


@pytest.fixture(scope="session")
def host_library(reference_qdq, tmp_path_factory):
    """The reference model's TVM library for this host: (path, lowering stats, schedule stats)."""
    from edgeresnet.targets.tvm.module import compile_integer_module, host_cpu

    loaded, qdq, _ = reference_qdq
    executable, stats, scheduled = compile_integer_module(qdq, [1, 1, 28, 28], {"kind": "llvm", "mcpu": host_cpu()})
    path = tmp_path_factory.mktemp("tvm") / "host.so"
    executable.export_library(str(path))
    return path, stats, scheduled
