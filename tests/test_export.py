import json

import numpy as np
import onnx
import pytest

from edgeresnet.errors import CheckFailed
from edgeresnet.export import check_against_pytorch, export, export_onnx_model, fold_batchnorm
from edgeresnet.models import load_model
from edgeresnet.runners import OnnxRuntimeRunner, TorchRunner

from helpers import run_cli


def _opset(model):
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


@pytest.mark.parametrize("name", ["resnet20-fmnist", "resnet50"])
def test_export_cli_gives_folded_checked_opset17(tmp_path, name):
    out = tmp_path / f"{name}.onnx"
    result = run_cli("export", "--model", name, "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert _opset(model) == 17
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    assert all(len(n.input) == 3 for n in model.graph.node if n.op_type == "Conv")  # folded BN became a bias
    if name == "resnet20-fmnist":
        assert report["max_abs_diff"] <= 1e-4
    assert report["max_abs_diff"] <= report["tolerance"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["edgeresnet.model"] == name


def test_folding_preserves_the_function():
    loaded = load_model("resnet20-fmnist")
    folded = fold_batchnorm(loaded.module)
    x = np.random.default_rng(1).standard_normal((8, 1, 28, 28)).astype(np.float32)
    assert np.abs(TorchRunner(folded).infer(x) - TorchRunner(loaded.module).infer(x)).max() < 1e-4


def test_an_export_that_computes_something_else_is_refused():
    """The check every FP32 reference passes before it measures: ORT on the ONNX model against PyTorch."""
    loaded = load_model("resnet20-fmnist")
    model = export_onnx_model(loaded, dynamic_batch=True)
    x = np.random.default_rng(2).standard_normal((4, 1, 28, 28)).astype(np.float32)
    agreement = check_against_pytorch(OnnxRuntimeRunner(model.SerializeToString()), loaded, x)
    assert agreement.images == 4 and agreement.max_abs_diff <= agreement.tolerance
    last_weight = onnx.numpy_helper.to_array(model.graph.initializer[-1])
    model.graph.initializer[-1].CopyFrom(onnx.numpy_helper.from_array(last_weight * 1.01, model.graph.initializer[-1].name))
    with pytest.raises(CheckFailed, match="disagree"):
        check_against_pytorch(OnnxRuntimeRunner(model.SerializeToString()), loaded, x)


def test_dynamic_batch_runs_any_batch(tmp_path):
    result = export(tmp_path / "dyn.onnx", model="resnet20", dynamic_batch=True)
    runner = OnnxRuntimeRunner(result.path)
    assert runner.static_batch is None
    assert runner.infer(np.zeros((5, 3, 32, 32), np.float32)).shape == (5, 10)
    assert result.input_shape[0] == "batch"


def test_every_layer_owns_its_weights():
    # An untrained net has equal tensors that torch's exporter would share through Identity nodes.
    model = export_onnx_model(load_model("resnet20"))
    assert "Identity" not in {n.op_type for n in model.graph.node}
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    assert len(conv_weights) == len(set(conv_weights))


def test_bad_opset_and_batch_are_usage_errors(tmp_path):
    for args in (["--opset", "7"], ["--batch", "0"]):
        result = run_cli("export", "--model", "resnet20", "-o", str(tmp_path / "x.onnx"), *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("edgeresnet: error:") and "Traceback" not in result.stderr
        assert not (tmp_path / "x.onnx").exists()
