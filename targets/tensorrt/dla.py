"""The DLA recipe: a Q/DQ-free model and a scale for every tensor DLA runs.

DLA on JetPack's TensorRT (8.5 to 10.x) runs only implicitly quantized INT8: a
Q/DQ network sent to it falls back to the GPU (NVIDIA/TensorRT#2222), and with
Q/DQ present TensorRT ignores any calibrator or cache (NVIDIA/TensorRT#2664).
NVIDIA's documented route (NVIDIA/Deep-Learning-Accelerator-SW, tools/qdq-translator)
strips the Q/DQ and writes their scales to a calibration cache. This module does
the same from our Q/DQ model, so the DLA engine uses the very scales the host measured.

Scales the Q/DQ model does not carry are inferred with the translator's rules:
  1. every activation QuantizeLinear gives its input tensor a scale;
  2. ops that do not change the range (Relu, MaxPool, Flatten, Reshape, Pad,
     Transpose, Squeeze, Unsqueeze: the translator's default set) pass a scale
     forward (input -> output), then backward (output -> input): a ReLU's output
     scale becomes its Conv's (or residual Add's) output scale;
  3. averaging pools (GlobalAveragePool, AveragePool: the translator's
     --infer_average_pool_scales) pass a scale forward only, after rule 2: a
     mean never leaves its input's range, but the input's range is wider than
     the mean's, so a pool-output scale given to the input would saturate it
     (the tensorrt scheme puts a Q/DQ on the pool input, so this rarely fires);
  4. a Conv whose only consumer is a two-input residual Add, with no scale after
     rules 1-3, gets the unary scale 1.0 (the translator's
     --add_unary_ew_scales_for_dla): from DLA SW 3.13 on, the DLA compiler reads
     1.0 there as "no scale", fuses Conv+Add and scales the Conv's accumulator by
     the weight scales only, as the Q/DQ graph computes it; without the unary
     scale TensorRT may run both layers in FP16 on DLA (the translator's README,
     "Why is --add_unary_ew_scales_for_dla needed?"). This is why the bundle
     offers DLA only from DLA SW 3.13 (JetPack 6.0) on: an older DLA would read
     1.0 as a real scale and clip.
The rules repeat until nothing changes. The network outputs (the logits) get no
scale, as in the Q/DQ model where the last Gemm's output stays float: DLA or the
GPU computes that layer's output in FP16.
"""

from __future__ import annotations

import onnx

from edgeresnet.quantize import keep_in_float, quantized_layers

from .calibration_cache import activation_scales

RANGE_PRESERVING = frozenset({"Relu", "MaxPool", "Flatten", "Reshape", "Pad", "Transpose", "Squeeze", "Unsqueeze"})
AVERAGING = frozenset({"GlobalAveragePool", "AveragePool"})
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
WEIGHTED = ("Conv", "Gemm", "MatMul", "ConvTranspose")
UNARY_SCALE = 1.0  # "no scale" to the DLA compiler between a Conv and the residual Add it feeds (DLA SW >= 3.13)
PINNED_INT8_OPS = ("Conv", "Gemm", "MatMul", "Add")


def qdq_free_model(int8_model: onnx.ModelProto) -> onnx.ModelProto:
    """The Q/DQ model with every Q/DQ pair removed: float weights, same tensor names."""
    model = keep_in_float(int8_model, quantized_layers(int8_model))
    left = [n.name for n in model.graph.node if n.op_type in QDQ_OPS]
    if left:
        raise ValueError(f"Q/DQ nodes left after stripping: {left[:3]}")
    return model


def float_layers(int8_model: onnx.ModelProto, quantized_ops: tuple[str, ...] = WEIGHTED) -> list[str]:
    """Layers of the quantized op types that read no dequantized input: kept in float (e.g. by --max-drop)."""
    producers = {o: n for n in int8_model.graph.node for o in n.output}
    return [n.name for n in int8_model.graph.node
            if n.op_type in quantized_ops and not any(
                (p := producers.get(i)) is not None and p.op_type == "DequantizeLinear" for i in n.input)]


def activation_tensors(model: onnx.ModelProto) -> list[str]:
    """The tensors TensorRT builds from the model: graph inputs and every node output, minus constants."""
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    names += [o for n in model.graph.node if n.op_type != "Constant" for o in n.output if o]
    return names


def dla_scales(int8_model: onnx.ModelProto, free_model: onnx.ModelProto) -> dict[str, float]:
    """Tensor -> scale for the Q/DQ-free model: the Q/DQ model's scales plus the inferred ones (module docstring)."""
    scales = {k: v for k, v in activation_scales(int8_model).items()}
    nodes = [n for n in free_model.graph.node if n.op_type != "Constant"]
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def propagate(ops: frozenset[str], backward: bool = True) -> bool:
        changed = False
        for node in nodes:  # forward, in topological order
            if node.op_type in ops and node.input[0] in scales and node.output[0] not in scales:
                scales[node.output[0]] = scales[node.input[0]]
                changed = True
        for node in reversed(nodes) if backward else ():
            if node.op_type in ops and node.output[0] in scales and node.input[0] not in scales:
                scales[node.input[0]] = scales[node.output[0]]
                changed = True
        return changed

    def unary_scale_into_residual_add() -> None:
        for node in nodes:
            if node.op_type != "Conv" or node.output[0] in scales:
                continue
            users = consumers.get(node.output[0], [])
            if len(users) == 1 and users[0].op_type == "Add" and len(users[0].input) == 2:
                other = next(i for i in users[0].input if i != node.output[0])
                if other not in unary:
                    scales[node.output[0]] = UNARY_SCALE
                    unary.add(node.output[0])

    unary: set[str] = set()
    while propagate(RANGE_PRESERVING) or propagate(AVERAGING, backward=False):
        pass
    unary_scale_into_residual_add()
    known = set(activation_tensors(free_model))
    return {name: scales[name] for name in sorted(scales) if name in known}


def int8_layers(free_model: onnx.ModelProto, scales: dict[str, float]) -> list[str]:
    """Compute layers whose every activation input and output has a scale: what DLA must run in INT8.

    The translator's README pins them with --precisionConstraints=obey and --layerPrecisions, since
    implicit INT8 otherwise lets the builder pick a faster FP16 kernel for any of them."""
    inits = {i.name for i in free_model.graph.initializer}
    return [n.name for n in free_model.graph.node if n.op_type in PINNED_INT8_OPS
            and all(t in scales for t in (*n.input, *n.output) if t and t not in inits)]


def tensors_without_scale(free_model: onnx.ModelProto, scales: dict[str, float]) -> list[str]:
    return [t for t in activation_tensors(free_model) if t not in scales]


def residual_blocks(int8_model: onnx.ModelProto) -> list[dict[str, str]]:
    """Each residual Add with the Conv on its branch and the ReLU after it: what TensorRT should fuse into one layer."""
    producers = {o: n for n in int8_model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in int8_model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    blocks = []
    for node in int8_model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        conv = next((p for i in node.input if (p := producers.get(i)) is not None and p.op_type == "Conv"), None)
        if conv is None:
            continue
        relu = next((c for c in consumers.get(node.output[0], []) if c.op_type == "Relu"), None)
        blocks.append({"add": node.name, "conv": conv.name, "relu": relu.name if relu else ""})
    return blocks
