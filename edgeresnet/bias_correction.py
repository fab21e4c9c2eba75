"""`--bias-correction`: take out the systematic per-channel shift that quantization leaves in each layer's output.

Rounding weights to int8 shifts a convolution's expected output per output channel by
sum_k E[x_k] (w_q - w)_k, and clipped activations shift it further; a network passes
these shifts on and adds its own. As NNCF's fast bias correction and AIMET's empirical
bias correction do, each quantized layer's bias is moved by the mean difference
between its INT8 and FP32 outputs on calibration images, per output channel, layer
by layer in graph order, each measured with the corrections before it in place.

The bias takes the form the backend's scheme gives it: a float initializer
(TensorRT and TVM schemes: `QuantizeBias=False`) is shifted as is; an int32 bias
behind a DequantizeLinear (ONNX Runtime's scheme) is shifted by the rounded number
of its own quantization steps (scale = input scale x weight scale). Layers without
a bias are left as they are.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgeresnet.evaluate import samples_within
from edgeresnet.schema import BiasShiftRecord as BiasShift

# Calibration images the shifts are measured on: 128 at 28x28, the floor (16) at 224x224 (each layer
# runs the INT8 model once more over them).
BIAS_INPUT_BUDGET = 128 * 28 * 28
MIN_BIAS_SAMPLES = 16
CORRECTED_OPS = ("Conv", "Gemm", "ConvTranspose")


def bias_sample(data) -> np.ndarray:
    from edgeresnet.calibration import Dataset

    count = min(len(data), samples_within(BIAS_INPUT_BUDGET, data.shape[1:], MIN_BIAS_SAMPLES))
    return data.take(np.arange(count)) if isinstance(data, Dataset) else np.ascontiguousarray(np.asarray(data[:count]), np.float32)


def _channel_means(model: onnx.ModelProto, tensors: list[str], images: np.ndarray, fuse_qdq: bool) -> dict[str, np.ndarray]:
    """Per-channel (axis 1) means of `tensors` over `images`, from one run of `model` exposing them."""
    import onnxruntime as ort

    from edgeresnet.runners import dynamic_batch_copy, session_options

    batched = dynamic_batch_copy(model)
    static = None if batched is not None else model.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    copy = onnx.ModelProto.FromString((batched or model).SerializeToString())
    present = {o.name for o in copy.graph.output}
    copy.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors if t not in present)
    session = ort.InferenceSession(copy.SerializeToString(), session_options(fuse_qdq=fuse_qdq), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    step = static or 32
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        rows = len(chunk)
        if static and rows < static:  # a static batch takes only whole batches: pad, then leave the padding out
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], static - rows, axis=0)])
        for name, value in zip(tensors, session.run(tensors, {input_name: chunk})):
            value = value[:rows].astype(np.float64)
            sums[name] = sums.get(name, 0.0) + value.sum(axis=tuple(i for i in range(value.ndim) if i != 1))
            counts[name] = counts.get(name, 0) + value.size // value.shape[1]
    return {name: sums[name] / counts[name] for name in tensors}


def correct_bias(fp32: onnx.ModelProto, int8: onnx.ModelProto, images: np.ndarray) -> tuple[onnx.ModelProto, list[BiasShift]]:
    """`int8` with each quantized layer's bias shifted by its mean INT8 - FP32 output difference on `images`
    (calibration images), layer by layer in graph order; and the shifts made."""
    corrected = onnx.ModelProto.FromString(int8.SerializeToString())
    fp32_outputs = {node.name: node.output[0] for node in fp32.graph.node if node.op_type in CORRECTED_OPS}
    producer = {out: node for node in corrected.graph.node for out in node.output}
    layers = [node for node in corrected.graph.node if node.op_type in CORRECTED_OPS and node.name in fp32_outputs
              and len(node.input) > 2 and node.input[2]]
    reference = _channel_means(fp32, [fp32_outputs[node.name] for node in layers], images, fuse_qdq=True)
    initializers = {init.name: init for init in corrected.graph.initializer}
    shifts = []
    for node in layers:
        # The layer's own output before any output Q/DQ: the name it writes in the INT8 graph.
        tested = _channel_means(corrected, [node.output[0]], images, fuse_qdq=False)[node.output[0]]
        difference = tested - reference[fp32_outputs[node.name]]
        shift = _shift_bias(node.input[2], producer, initializers, difference)
        if shift is not None:
            shifts.append(BiasShift(node.name, *shift, round(float(np.mean(np.abs(difference))), 6),
                                    round(float(np.max(np.abs(difference))), 6)))
    return corrected, shifts


def _shift_bias(name: str, producer: dict, initializers: dict, difference: np.ndarray) -> tuple[str, str] | None:
    """Move the bias feeding a layer by -difference, in its own form; None when it is neither form."""
    if name in initializers:  # a float bias
        init = initializers[name]
        value = numpy_helper.to_array(init).astype(np.float64)
        init.CopyFrom(numpy_helper.from_array((value - difference).astype(numpy_helper.to_array(init).dtype), name))
        return name, "float"
    dq = producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in initializers or dq.input[1] not in initializers:
        return None
    quantized = initializers[dq.input[0]]
    integers = numpy_helper.to_array(quantized).astype(np.int64)
    scale = numpy_helper.to_array(initializers[dq.input[1]]).astype(np.float64)
    info = np.iinfo(numpy_helper.to_array(quantized).dtype)
    moved = np.clip(integers - np.round(difference / scale), info.min, info.max).astype(numpy_helper.to_array(quantized).dtype)
    quantized.CopyFrom(numpy_helper.from_array(moved, dq.input[0]))
    return dq.input[0], "int32"
