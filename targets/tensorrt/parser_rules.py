"""What TensorRT's ONNX parser accepts, checked statically: no GPU, no TensorRT.

Rules from the TensorRT developer guide (explicit quantization) and the
onnx-tensorrt parser sources:
  * Q/DQ are INT8 and symmetric: every zero point is 0 and int8;
  * scales are positive and finite;
  * per-axis scales only on weights, along the output-channel axis (Conv 0,
    ConvTranspose 1), one scale per output channel;
  * no DequantizeLinear of int32 tensors (biases): "only activation types allowed";
  * every op is one the parser knows, and the opset is within its range;
  * TensorRT 8.5 wants QuantizeLinear and DequantizeLinear to carry their zero-point input.
Placements that block Conv+Add+ReLU fusion are warnings, not errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from edgeresnet.errors import InputError

# Opset ceilings of the parser shipped with each TensorRT line (10.x taken at
# its conservative 10.0 value; TensorRT 11 documents 25).
MAX_OPSET = {"8.5": 17, "8.6": 17, "10": 20, "11": 25}
MIN_OPSET = 9  # parser backward compatibility; per-axis Q/DQ needs 13 anyway
SUPPORTED_TRT = ("8.5", "8.6", "10.3", "10.13", "11")

# The ONNX operators in onnx-tensorrt's operators.md that image classifiers use, and more;
# an op outside this set is reported rather than guessed at.
SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip Concat
Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal
Erf Exp Expand Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater
GreaterOrEqual GridSample GroupNormalization HardSigmoid HardSwish Identity If InstanceNormalization IsInf IsNaN
LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN MatMul Max MaxPool Mean Min Mish Mod Mul Neg
NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomUniform
Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round ScaledTanh Scatter ScatterElements ScatterND Selu
Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
PER_CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1}


def trt_line(version: str) -> str:
    """'8.5.2' -> '8.5'; '10.3' -> '10'; '11.0' -> '11'."""
    parts = version.split(".")
    if not parts[0].isdigit():
        raise InputError(f"not a TensorRT version: {version!r}")
    major = int(parts[0])
    if major == 8 and len(parts) > 1 and parts[1] in ("5", "6"):
        return f"8.{parts[1]}"
    if major in (10, 11):
        return str(major)
    raise InputError(f"TensorRT {version} is not supported; choose one of {', '.join(SUPPORTED_TRT)}")


@dataclass
class Finding:
    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.node}: {self.message}"


@dataclass
class CheckReport:
    trt_version: str
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "trt_version": self.trt_version, "passed": self.passed,
            "errors": [f.__dict__ for f in self.errors], "warnings": [f.__dict__ for f in self.warnings],
        }

    def lines(self) -> list[str]:
        return [f"TensorRT {self.trt_version}: {'PASS' if self.passed else 'FAIL'} "
                f"({len(self.errors)} errors, {len(self.warnings)} warnings)",
                *(f"  error {f}" for f in self.errors), *(f"  warning {f}" for f in self.warnings)]


def _const(model_inits: dict, producers: dict, name: str) -> np.ndarray | None:
    if name in model_inits:
        return numpy_helper.to_array(model_inits[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        return numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))
    return None


def check_model(model: onnx.ModelProto, trt_version: str) -> CheckReport:
    line = trt_line(trt_version)
    report = CheckReport(trt_version)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def error(rule, node, message):
        report.errors.append(Finding(rule, node.name or node.op_type if node is not None else "model", message))

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not MIN_OPSET <= opset <= MAX_OPSET[line]:
        report.errors.append(Finding("opset", "model", f"opset {opset} is outside TensorRT {trt_version}'s range {MIN_OPSET}..{MAX_OPSET[line]}"))
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            domain = f"{node.domain}." if node.domain not in ("", "ai.onnx") else ""
            error("unsupported-op", node, f"op {domain}{node.op_type} is not supported by TensorRT {trt_version}'s ONNX parser")

    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = _const(inits, producers, node.input[1]) if len(node.input) > 1 else None
        zero = _const(inits, producers, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            error("scale", node, "scale is not a constant")
            continue
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            error("scale", node, f"scales must be positive and finite (min {float(np.min(scale)):.3g})")
        if zero is not None:
            if zero.dtype != np.int8:
                error("zero-point", node, f"zero point is {zero.dtype}; TensorRT takes int8 (symmetric) Q/DQ only")
            if np.any(zero != 0):
                error("zero-point", node, f"zero point {int(zero.flat[np.flatnonzero(zero)[0]])} is not 0; TensorRT quantization is symmetric")
        if line == "8.5" and (len(node.input) < 3 or not node.input[2]):
            # Without a zero point ONNX's QuantizeLinear outputs uint8 (ONNX operator spec), and the 8.5 parser takes the
            # int8 type from the zero-point input: the same rule on Q as on DQ.
            rule = "dq-zero-point-input" if node.op_type == "DequantizeLinear" else "q-zero-point-input"
            error(rule, node, f"TensorRT 8.5 needs {node.op_type} to carry its zero-point input")
        if node.op_type == "DequantizeLinear":
            source = _const(inits, producers, node.input[0])
            if source is not None and source.dtype == np.int32:
                error("int32-bias", node, "DequantizeLinear of an int32 tensor (bias): TensorRT allows only activation types")
        if scale.size > 1:
            _check_per_axis(node, scale, inits, producers, consumers, error)

    for node in graph.node:  # fusion placement (warnings)
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        quantized = [(p := producers.get(i)) is not None and p.op_type == "DequantizeLinear" for i in node.input]
        if all(quantized):
            report.warnings.append(Finding("fusion", node.name, "both Add inputs are quantized: TensorRT cannot fuse the convolution branch (Conv+Add+ReLU)"))
        elif not any(quantized) and all(i in producers for i in node.input):
            report.warnings.append(Finding("fusion", node.name, "no Add input is quantized: the residual Add runs in higher precision, unfused"))
    return report


def _check_per_axis(node, scale, inits, producers, consumers, error) -> None:
    """Per-axis scales: only on weights, on the output-channel axis, one per channel."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    # The quantized tensor: for DQ fed by Q, the Q's input; weights are constants.
    source_name = node.input[0]
    if node.op_type == "DequantizeLinear" and source_name in producers and producers[source_name].op_type == "QuantizeLinear":
        source_name = producers[source_name].input[0]
    weight = _const(inits, producers, source_name)
    if weight is None:
        error("per-axis-activation", node, "per-axis scales on an activation; TensorRT allows per-axis only on weights")
        return
    # The layer that consumes the dequantized weight.
    dq_out = node.output[0]
    if node.op_type == "QuantizeLinear":
        dq_out = next((c.output[0] for c in consumers.get(dq_out, []) if c.op_type == "DequantizeLinear"), dq_out)
    layer = next((c for c in consumers.get(dq_out, []) if c.op_type in PER_CHANNEL_AXIS or c.op_type in ("Gemm", "MatMul")), None)
    expected_axis = PER_CHANNEL_AXIS.get(layer.op_type) if layer is not None else None
    if layer is not None and layer.op_type == "Gemm":
        trans_b = next((a.i for a in layer.attribute if a.name == "transB"), 0)
        expected_axis = 0 if trans_b else 1
    if layer is not None and layer.op_type == "MatMul":
        expected_axis = weight.ndim - 1
    if layer is None or expected_axis is None:
        error("per-axis-axis", node, "per-axis weight scales feed no Conv/ConvTranspose/Gemm/MatMul")
        return
    if axis < 0:
        axis += weight.ndim
    if axis != expected_axis:
        error("per-axis-axis", node, f"per-axis scales along axis {axis}; {layer.op_type} {layer.name} needs its output-channel axis {expected_axis}")
    elif scale.size != weight.shape[axis]:
        error("per-axis-count", node, f"{scale.size} scales for {weight.shape[axis]} output channels of {layer.name}")


def check_file(path: str, trt_versions: list[str]) -> list[CheckReport]:
    """Check an ONNX file for each TensorRT version; a file ONNX cannot read is bad input."""
    try:
        model = onnx.load(path)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise InputError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    return [check_model(model, version) for version in trt_versions]
