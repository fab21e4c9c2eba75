"""PyTorch to ONNX, with BatchNorm folded and the result checked against PyTorch in ONNX Runtime."""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from edgeresnet.atomic import write_bytes_atomically
from edgeresnet.errors import CheckFailed, InputError
from edgeresnet.models import DEFAULT_MODEL, LoadedModel, ModelDescription, load_model
from edgeresnet.runners import OnnxRuntimeRunner, Runner
from edgeresnet.schema import PytorchAgreement

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17  # the newest opset TensorRT 8.5/8.6 (JetPack 5.1/6.0) parse
SUPPORTED_OPSETS = range(13, 22)  # per-axis Q/DQ needs 13; onnxruntime 1.32 runs up to 21+


@dataclass(frozen=True)
class ExportResult:
    path: Path
    opset: int
    input_shape: list  # [batch or "batch", C, H, W]
    max_abs_diff: float
    tolerance: float

    def to_dict(self) -> dict:
        return {
            "path": str(self.path), "opset": self.opset, "input_shape": self.input_shape,
            "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
        }


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy in which every Conv2d followed by BatchNorm2d is one Conv2d with bias."""
    folded = copy.deepcopy(model).eval()

    def visit(parent: nn.Module) -> None:
        # Within our ResNet every BatchNorm2d follows the Conv2d registered just before it.
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(parent, conv_name, torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
        for _, child in parent.named_children():
            visit(child)

    visit(folded)
    leftover = [n for n, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if leftover:
        raise CheckFailed(f"BatchNorm layers not folded: {', '.join(leftover)}")
    return folded


def _own_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Undo the exporter's sharing of equal initializers through Identity nodes.

    Equal tensors (zero biases, an untrained net's twin weights) are
    deduplicated by torch's exporter; each layer needs its own weight to be
    quantized per channel and kept in float on its own.
    """
    initializers = {init.name: init for init in model.graph.initializer}
    for node in [n for n in model.graph.node if n.op_type == "Identity" and n.input[0] in initializers]:
        copy_ = onnx.TensorProto()
        copy_.CopyFrom(initializers[node.input[0]])
        copy_.name = node.output[0]
        model.graph.initializer.append(copy_)
        model.graph.node.remove(node)
    return model


# The largest batch any command builds or runs: a host holds 1024 224x224 inputs (600 MB); 100,000 would not fit.
MAX_BATCH = 1024


def check_batch(batch: int) -> None:
    if not 1 <= batch <= MAX_BATCH:
        raise InputError(f"--batch must be 1..{MAX_BATCH}, not {batch}")


def export_onnx_model(
    loaded: LoadedModel, batch: int = 1, dynamic_batch: bool = False, opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """The folded network as an in-memory ONNX model carrying the model's metadata."""
    if opset not in SUPPORTED_OPSETS:
        raise InputError(f"opset {opset} is not supported; use {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1}")
    check_batch(batch)
    folded = fold_batchnorm(loaded.module)
    example = torch.zeros(batch, *loaded.preprocessing.input_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which needs
        # onnxscript; it is the mature path for plain CNNs and fast (< 1 s).
        warnings.simplefilter("ignore")
        # The stub names paths only; the TorchScript exporter writes to a file object as well.
        torch.onnx.export(
            folded, (example,), buffer, dynamo=False, opset_version=opset,  # type: ignore[arg-type]
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
            do_constant_folding=True,
        )
    model = _own_initializers(onnx.load_from_string(buffer.getvalue()))
    metadata = {
        "edgeresnet.model": loaded.name,
        "edgeresnet.arch": loaded.entry.arch,
        "edgeresnet.preprocessing": json.dumps(loaded.preprocessing.to_dict(), sort_keys=True),
        "edgeresnet.weights_sha256": loaded.weights_sha256 or "untrained",
    }
    onnx.helper.set_model_props(model, metadata)
    model.producer_name = "edgeresnet"
    onnx.checker.check_model(model, full_check=True)
    if any(node.op_type == "BatchNormalization" for node in model.graph.node):
        raise CheckFailed("the exported graph still holds BatchNormalization nodes")
    return model


def check_against_pytorch(runner: Runner, loaded: LoadedModel, inputs: np.ndarray,
                          tolerance: float = 1e-4) -> PytorchAgreement:
    """`runner` (the exported model in ONNX Runtime) must compute what PyTorch computes on `inputs`:
    CheckFailed when it does not."""
    ort_logits = np.concatenate([logits for _, logits in runner.batches(inputs, batch_size=len(inputs))])
    with torch.no_grad():
        torch_logits = loaded.module(torch.from_numpy(inputs)).numpy()
    diff = float(np.abs(ort_logits - torch_logits).max())
    # Deep untrained networks have large logits; the budget scales with them.
    budget = tolerance * max(1.0, float(np.abs(torch_logits).max()))
    if not diff <= budget:
        raise CheckFailed(f"ONNX Runtime and PyTorch disagree: max |logit diff| {diff:.3g} > {budget:.3g}")
    return PytorchAgreement(len(inputs), diff, budget)


def export(
    output: str | Path,
    model: str = DEFAULT_MODEL,
    weights: str | Path | None = None,
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    tolerance: float = 1e-4,
    description: ModelDescription | None = None,
) -> ExportResult:
    """Export `model` to `output` and check it: onnx.checker, then ONNX Runtime against PyTorch."""
    output = Path(output)
    check_batch(batch)  # before the model is loaded
    loaded = load_model(model, weights, description)
    onnx_model = export_onnx_model(loaded, batch, dynamic_batch, opset)
    rng = np.random.default_rng(0)
    probe = rng.standard_normal((2 if dynamic_batch else batch, *loaded.preprocessing.input_shape)).astype(np.float32)
    agreement = check_against_pytorch(OnnxRuntimeRunner(onnx_model.SerializeToString()), loaded, probe, tolerance)
    write_bytes_atomically(output, onnx_model.SerializeToString())
    shape = ["batch" if dynamic_batch else batch, *loaded.preprocessing.input_shape]
    return ExportResult(output, opset, shape, agreement.max_abs_diff, agreement.tolerance)
