"""layer_report.py on TensorRT's layer information: real excerpts from public sources and documented-shape fixtures.

Where each fixture comes from: tests/fixtures/README.md.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jetson_standins import FIXTURES, build_sh, copy_bundle

TEMPLATES = Path(__file__).resolve().parents[1] / "targets" / "tensorrt" / "templates"


@pytest.fixture(scope="module")
def layer_report():
    sys.path.insert(0, str(TEMPLATES))
    try:
        import layer_report
    finally:
        sys.path.pop(0)
    return layer_report


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_real_names_only_gpu_build_still_shows_the_fused_residual_blocks(layer_report):
    """NVIDIA/TensorRT#4020: without detailed profiling only names remain; fusion is still in them."""
    blocks = [{"conv": "resnetv15_stage1_conv1_fwd", "add": "resnetv15_stage1__plus0"},
              {"conv": "resnetv15_stage1_conv3_fwd", "add": "resnetv15_stage1__plus1"}]
    summary = layer_report.summarize(load("trt4020_resnet18_layer_names.json"), blocks, dla=False)
    assert not summary["detailed"] and summary["precision"] == {"DLA": {}, "GPU": {}}
    assert summary["layers"] == 5 and summary["gpu"] == 5 and summary["bookkeeping"] == 1  # the input reformat
    assert summary["fused_residual_blocks"] == 2 and summary["warnings"] == [
        "layer information has names only (no precision): build with --profilingVerbosity=detailed"]
    text = layer_report.describe(summary)
    assert "2 residual blocks fused into one Conv+Add+ReLU layer each" in text and "INT8" not in text
    unfused = layer_report.summarize(load("trt4020_resnet18_layer_names.json"),
                                     [{"conv": "resnetv15_stage1_conv0_fwd", "add": "resnetv15_stage1__plus0"}], dla=False)
    assert "are not one fused layer" in unfused["warnings"][-1]


def test_real_dla_engine_names(layer_report):
    """NVIDIA/TensorRT#3143: one DLA subgraph, tensors moved to and from DLA memory around it."""
    summary = layer_report.summarize(load("trt3143_dla_layer_names.json"), [], dla=True)
    assert summary["dla"] == 1 and summary["gpu"] == 0 and summary["bookkeeping"] == 7
    assert "fell back" not in " ".join(summary["warnings"])
    # On a GPU build a {ForeignNode[...]} is a Myelin subgraph, not DLA.
    assert layer_report.summarize(load("trt3143_dla_layer_names.json"), [], dla=False)["gpu"] == 1


def test_real_dynamic_shape_int8_layer_precision_from_its_weights(layer_report):
    """Dynamic shapes leave every Format/Datatype "N/A due to dynamic shapes": the weights' type tells INT8."""
    summary = layer_report.summarize(load("trt_layer_info_int8_dynamic.json"), [], dla=False)
    assert summary["detailed"] and summary["layers"] == 1 and summary["bookkeeping"] == 2
    assert summary["precision"]["GPU"] == {"INT8": 1}


def test_documented_shape_dla_fixture(layer_report):
    summary = layer_report.summarize(load("trt_layer_info_dla.json"), [], dla=True)
    assert summary["dla"] == 1 and summary["gpu"] == 1
    assert summary["precision"] == {"DLA": {"INT8": 1}, "GPU": {"FP16": 1}}
    everything_on_gpu = layer_report.summarize(load("trt_layer_info_gpu.json"), [], dla=True)
    assert "every layer fell back to the GPU" in everything_on_gpu["warnings"][0]


def test_checks_each_residual_block_on_gpu_builds(jetson_artifact, tmp_path):
    bundle = copy_bundle(jetson_artifact, tmp_path)
    result, _ = build_sh(bundle, tmp_path, "10.3.0", layer_info=str(FIXTURES / "trt_layer_info_gpu.json"))
    assert result.returncode == 0, result.stderr
    blocks = json.loads((bundle / "bundle.json").read_text())["residual_blocks"]
    assert len(blocks) == 9 and blocks[0] == {"add": "/layer1/layer1.0/Add", "conv": "/layer1/layer1.0/conv2/Conv",
                                              "relu": "/layer1/layer1.0/relu_1/Relu"}
    assert "8 residual blocks fused into one INT8 Conv+Add+ReLU layer each" in result.stdout
    assert "warning: residual block /layer3/layer3.2/Add: Conv+Add fused but outputs FP32, not INT8" in result.stdout
    summary = json.loads(next(bundle.with_name("bundle.device").glob("engines/*.layers.summary.json")).read_text())
    assert summary["dla"] == 0 and summary["gpu"] == 24 and summary["bookkeeping"] == 1
    assert summary["precision"]["GPU"] == {"INT8": 21, "FP32": 3}


def test_command_line_refuses_unreadable_information_with_one_line(tmp_path):
    broken = tmp_path / "layers.json"
    broken.write_text("{")
    result = subprocess.run([sys.executable, str(TEMPLATES / "layer_report.py"), str(broken)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("layer_report.py: cannot read") and len(result.stderr.splitlines()) == 1
