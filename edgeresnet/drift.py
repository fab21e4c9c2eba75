"""Where the drift starts: every quantized layer's output in the INT8 model against the same tensor in FP32.

Per-layer sensitivity (`edgeresnet.sensitivity`) quantizes one layer at a time; this runs
the whole INT8 model once, as it ships, with every quantized layer's output exposed (as
ONNX Runtime's `qdq_loss_debug` and Polygraphy's `--mark-all` do), and the FP32 model with
the same tensors: the Q/DQ graph keeps each layer's output name, so tensors match by name.
For each layer, in graph order:

* `sqnr_db`, `cosine`: its output against FP32 (accumulated error: everything before it too);
* `input_sqnr_db`: its quantized input against the FP32 tensor that input quantizes;
* `local_db` = input SQNR - output SQNR: the dB this layer loses itself (its weights, its arithmetic),
  so a layer that only passes on an already noisy input is told apart from one that adds noise;
* `clipped_share`: the share of its FP32 input outside the range its QuantizeLinear can hold.

Batches are reduced as they come (sums of squares, cosines, counts): memory holds one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from edgeresnet.evaluate import samples_within
from edgeresnet.metrics import cosine_rows, sqnr_db_of_sums
from edgeresnet.schema import LayerDriftRecord as LayerDrift

# Input values the drift is measured on: 256 images at 28x28, the floor (16) at 224x224.
DRIFT_INPUT_BUDGET = 256 * 28 * 28
MIN_DRIFT_SAMPLES = 16
DRIFT_BATCH = 32
WORST_SHOWN = 10


@dataclass(frozen=True)
class QuantizedLayer:
    node: str
    op_type: str
    tensor: str  # its output, the same name in the FP32 graph
    int8_tensor: str  # what the INT8 graph's next layers read of it (its Q/DQ'd copy where the output is quantized)
    input_dq: str | None  # the dequantized activation it reads, None if it reads none
    input_source: str | None  # the FP32 tensor that DequantizeLinear's QuantizeLinear quantizes
    input_range: tuple[float, float] | None  # what that QuantizeLinear can hold


def quantized_layers_in_order(int8: onnx.ModelProto, fp32_names: set[str]) -> list[QuantizedLayer]:
    """Non-Q/DQ nodes that read a DequantizeLinear output, whose output also names a tensor of the FP32 graph."""
    producer = {out: node for node in int8.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in int8.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {init.name: init for init in int8.graph.initializer}
    layers = []
    for node in int8.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or not node.output:
            continue
        consumed = _as_consumed(node.output[0], consumers)
        # ONNX Runtime renames a graph output it quantizes ("logits_QuantizeLinear_Input"); its DequantizeLinear
        # writes the FP32 name.
        tensor = node.output[0] if node.output[0] in fp32_names else consumed
        if tensor not in fp32_names:
            continue
        dequantized = [name for name in node.input if (p := producer.get(name)) is not None and p.op_type == "DequantizeLinear"]
        if not dequantized:
            continue
        activation = next((name for name in dequantized if producer[name].input[0] not in constants), None)
        source, held = None, None
        if activation is not None:
            quantize = producer.get(producer[activation].input[0])
            if quantize is not None and quantize.op_type == "QuantizeLinear":
                source, held = quantize.input[0], _representable(quantize, constants)
        layers.append(QuantizedLayer(node.name, node.op_type, tensor, consumed, activation, source, held))
    return layers


def _as_consumed(tensor: str, consumers: dict[str, list[onnx.NodeProto]]) -> str:
    """The tensor the next layers read: DequantizeLinear(QuantizeLinear(tensor)) where the output is quantized.
    ONNX Runtime's asymmetric scheme deletes a ReLU and lets the zero point clamp, leaving the ReLU's
    output name on the convolution: only the dequantized tensor holds the ReLU's values."""
    quantize = [n for n in consumers.get(tensor, []) if n.op_type == "QuantizeLinear"]
    if len(quantize) == 1:
        dequantize = [n for n in consumers.get(quantize[0].output[0], []) if n.op_type == "DequantizeLinear"]
        if dequantize:
            return dequantize[0].output[0]
    return tensor


def _representable(quantize: onnx.NodeProto, constants: dict) -> tuple[float, float] | None:
    if quantize.input[1] not in constants:
        return None
    scale = numpy_helper.to_array(constants[quantize.input[1]]).astype(np.float64)
    zero = (numpy_helper.to_array(constants[quantize.input[2]]) if len(quantize.input) > 2 and quantize.input[2] in constants
            else np.zeros((), np.uint8))
    if scale.size != 1:
        return None
    info = np.iinfo(zero.dtype)
    zero_point = float(zero.reshape(-1)[0]) if zero.size else 0.0
    # Beyond half a step past the end codes a value saturates; within it, it only rounds to them.
    return float((info.min - 0.5 - zero_point) * scale.item()), float((info.max + 0.5 - zero_point) * scale.item())


def _exposing(model: onnx.ModelProto, tensors: list[str]) -> bytes:
    """`model` with `tensors` added as graph outputs (typed as float, shapes left to ONNX Runtime)."""
    copy = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in copy.graph.output}
    copy.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                             for name in tensors if name not in present)
    return copy.SerializeToString()


def layer_drift(fp32: onnx.ModelProto, int8: onnx.ModelProto, images) -> list[LayerDrift]:
    """Per quantized layer of `int8`, in graph order, its drift from `fp32` on `images` (an array or a Dataset)."""
    import onnxruntime as ort

    from edgeresnet.calibration import Dataset
    from edgeresnet.runners import dynamic_batch_copy, session_options

    fp32_names = {out for node in fp32.graph.node for out in node.output} | {i.name for i in fp32.graph.input}
    layers = quantized_layers_in_order(int8, fp32_names)
    fp32_tensors = sorted({layer.tensor for layer in layers} | {l.input_source for l in layers if l.input_source})
    int8_tensors = sorted({layer.int8_tensor for layer in layers} | {l.input_dq for l in layers if l.input_dq})
    sessions = []
    for model, tensors, fuse in ((fp32, fp32_tensors, True), (int8, int8_tensors, False)):
        batched = dynamic_batch_copy(model) or model
        # Q/DQ unfused: the graph's own fake-quant arithmetic, so that every exposed tensor is the graph's.
        session = ort.InferenceSession(_exposing(batched, tensors), session_options(fuse_qdq=fuse),
                                       providers=["CPUExecutionProvider"])
        sessions.append((session, tensors))
    static = dynamic_batch_copy(int8) is None and int8.graph.input[0].type.tensor_type.shape.dim[0].dim_value or None
    sums: dict[tuple[str, str], float] = {}

    def add(key: tuple[str, str], value: float) -> None:
        sums[key] = sums.get(key, 0.0) + value

    data = images if isinstance(images, Dataset) else Dataset(np.asarray(images), None, "array")
    for chunk in data.batches(static or DRIFT_BATCH, hash=False):
        chunk = np.ascontiguousarray(chunk, np.float32)
        outputs = []
        for session, tensors in sessions:
            name = session.get_inputs()[0].name
            outputs.append(dict(zip(tensors, session.run(tensors, {name: chunk}))))
        reference, tested = outputs
        for layer in layers:
            pairs = [("out", reference[layer.tensor], tested[layer.int8_tensor])]
            if layer.input_source and layer.input_dq:
                pairs.append(("in", reference[layer.input_source], tested[layer.input_dq]))
            for side, a, b in pairs:
                a64 = a.astype(np.float64)
                add((layer.tensor, side + "_signal"), float(np.sum(a64 ** 2)))
                add((layer.tensor, side + "_noise"), float(np.sum((a64 - b) ** 2)))
            out_ref, out_test = pairs[0][1:]
            add((layer.tensor, "cosine"), float(np.sum(cosine_rows(out_ref.reshape(len(chunk), -1), out_test.reshape(len(chunk), -1)))))
            add((layer.tensor, "rows"), len(chunk))
            if layer.input_source and layer.input_range:
                lo, hi = layer.input_range
                source = reference[layer.input_source]
                add((layer.tensor, "clipped"), float(np.count_nonzero((source < lo) | (source > hi))))
                add((layer.tensor, "values"), float(source.size))
    result = []
    for depth, layer in enumerate(layers):
        out = sqnr_db_of_sums(sums[(layer.tensor, "out_signal")], sums[(layer.tensor, "out_noise")])
        inp = (sqnr_db_of_sums(sums[(layer.tensor, "in_signal")], sums[(layer.tensor, "in_noise")])
               if layer.input_source else None)
        local = inp - out if inp is not None and out is not None else None
        clipped = (sums[(layer.tensor, "clipped")] / sums[(layer.tensor, "values")]
                   if (layer.tensor, "values") in sums and sums[(layer.tensor, "values")] else None)
        result.append(LayerDrift(depth, layer.node, layer.op_type, layer.tensor, out,
                                 round(sums[(layer.tensor, "cosine")] / sums[(layer.tensor, "rows")], 6),
                                 inp, None if local is None else round(local, 3),
                                 None if clipped is None else round(clipped, 6)))
    return result


def drift_sample(data):
    """The images drift is measured on: the first of `data` that fit the input budget."""
    from edgeresnet.calibration import Dataset

    count = min(len(data), samples_within(DRIFT_INPUT_BUDGET, data.shape[1:], MIN_DRIFT_SAMPLES))
    return data.take(np.arange(count)) if isinstance(data, Dataset) else np.asarray(data[:count])


def worst_layers(drift: list[LayerDrift], count: int = WORST_SHOWN) -> list[LayerDrift]:
    """The layers that lose the most themselves (local dB; output SQNR where a layer has no quantized input)."""
    def loss(d: LayerDrift) -> float:
        if d.local_db is not None:
            return d.local_db
        return -d.sqnr_db if d.sqnr_db is not None else float("-inf")

    return sorted(drift, key=lambda d: (-loss(d), d.depth))[:count]


def worst_layers_table(drift: list[LayerDrift], count: int = WORST_SHOWN) -> list[str]:
    lines = [f"{'depth':>5s} {'layer':48s} {'SQNR dB':>8s} {'local dB':>8s} {'cosine':>8s} {'clipped':>8s}"]
    for d in worst_layers(drift, count):
        local = f"{d.local_db:8.2f}" if d.local_db is not None else f"{'-':>8s}"
        clipped = f"{d.clipped_share:8.3%}" if d.clipped_share is not None else f"{'-':>8s}"
        sqnr = f"{d.sqnr_db:8.2f}" if d.sqnr_db is not None else f"{'inf':>8s}"
        name = d.layer if len(d.layer) <= 48 else "..." + d.layer[-45:]
        lines.append(f"{d.depth:5d} {name:48s} {sqnr} {local} {d.cosine:8.5f} {clipped}")
    return lines


def plot_layer_drift(layer_drift: list[LayerDrift], worst: int = 3):
    """"Where the drift starts": output SQNR by depth (accumulated) and the dB each layer loses itself
    (bars), the `worst` local losses marked and named. Takes a Report's `layer_drift` (typed records);
    returns a matplotlib Figure (render it as `edgeresnet.report` renders its plots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth = [d.depth for d in layer_drift]
    sqnr = [d.sqnr_db if d.sqnr_db is not None else np.nan for d in layer_drift]
    local = [d.local_db or 0.0 for d in layer_drift]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot(depth, sqnr, marker="o", markersize=3, label="output SQNR vs FP32 (accumulated)")
    ax.bar(depth, local, color="tab:orange", alpha=0.6, label="dB lost at this layer (input SQNR - output SQNR)")
    ranked = sorted(range(len(layer_drift)), key=lambda i: -local[i])[:worst]
    for i in ranked:
        if local[i] > 0:
            ax.annotate(layer_drift[i].layer[-28:], (depth[i], sqnr[i]), textcoords="offset points", xytext=(0, 8),
                        fontsize=7, ha="center", color="tab:red")
            ax.plot(depth[i], sqnr[i], marker="o", color="tab:red")
    ax.set_xlabel("quantized layer, graph order")
    ax.set_ylabel("dB")
    ax.set_title("Where the drift starts")
    ax.legend(fontsize=7, loc="upper right")
    return fig
