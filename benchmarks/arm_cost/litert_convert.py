"""Runs in the converter's own environment (litert_peer.converter_python): FP32 model -> full-integer INT8 .tflite.

    PYTHONPATH=<project root> python litert_convert.py MODEL.pt CALIBRATION.npy CHECK.npy OUT.tflite REPORT.json

MODEL.pt is the FP32 network saved whole (`torch.save`), so that torch.export here sees the
project's own modules (edgeresnet.models.resnet, which needs torch alone): PT2E's annotators find
residual additions by their Python source (`operator.add`), which a re-exported .pt2 program no
longer carries (its additions then stay in float).

litert-torch's documented PT2E route: the exported FP32 network, its input made channels-last
(`to_channel_last_io`, so the .tflite takes NHWC and starts with no transpose), observers from
litert-torch's `PT2EQuantizer` with its symmetric static config (int8 per-channel weights,
int8 per-tensor activations from histograms: the QS8 operators XNNPACK runs fastest), one
forward pass per calibration image, `convert_pt2e`, then `litert_torch.convert` with the same
quantizer in its `QuantConfig`. The result is checked here, on the host's own LiteRT build,
against the FP32 program on CHECK images: top-1 agreement and logit cosine similarity, and the
element types of every convolution and fully connected operator (int8 in, int8 out). The int8
input takes the image quantized with the input tensor's own scale and zero point, the int8 logits
are dequantized with the output's.
"""

import json
import sys
from importlib.metadata import version

import numpy as np
import torch

import litert_torch
from ai_edge_litert.interpreter import Interpreter
from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
from litert_torch.quantize.quant_config import QuantConfig
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def channels_last(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 2, 3, 1)))


def quantized_input(detail: dict, x: np.ndarray) -> np.ndarray:
    """The model's own input quantization (litert-torch quantizes the input tensor too) applied to a float image."""
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(detail["dtype"])


def dequantized_output(detail: dict, y: np.ndarray) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.astype(np.float64)
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float64) - zero_point) * scale


def main() -> None:
    network, calibration_file, check_file, out, report = sys.argv[1:6]
    calibration, check = np.load(calibration_file), np.load(check_file)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a calibration run is a few hundred forward passes; deterministic and no spinning
    fp32 = torch.load(network, weights_only=False).eval()
    sample = (channels_last(calibration[:1]),)
    nhwc = litert_torch.to_channel_last_io(fp32, args=[0])
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    observed = prepare_pt2e(torch.export.export(nhwc, sample).module(), quantizer)
    with torch.no_grad():
        for image in calibration:
            observed(channels_last(image[None]))
    quantized = convert_pt2e(observed, fold_quantize=False)
    litert_torch.convert(quantized, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(out)

    interpreter = Interpreter(model_path=out, num_threads=1)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the only listing of operators and their tensors LiteRT's Python API has
    weighted = [op for op in ops if op["op_name"] in WEIGHTED_OPS]
    float_weighted = [op["op_name"] for op in weighted
                      if any(tensors[i]["dtype"] != np.int8 for i in (op["inputs"][0], op["outputs"][0]) if i in tensors)]
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    logits_int8 = []
    for image in check:
        interpreter.set_tensor(source["index"], quantized_input(source, channels_last(image[None]).numpy()))
        interpreter.invoke()
        logits_int8.append(dequantized_output(target, interpreter.get_tensor(target["index"])[0]))
    with torch.no_grad():  # in batches: one image at a time costs torch ~25x more here
        b = np.concatenate([fp32(torch.from_numpy(chunk)).numpy() for chunk in np.array_split(check, -(-len(check) // 64))])
    a, b = np.stack(logits_int8), b.astype(np.float64)
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    with open(report, "w") as handle:
        json.dump({"fp32_cosine": round(float(cosine.mean()), 5), "fp32_cosine_min": round(float(cosine.min()), 5),
                   "fp32_top1_agreement": round(float((a.argmax(1) == b.argmax(1)).mean()), 5),
                   "check_images": len(check), "calibration_images": len(calibration),
                   "weighted_ops": len(weighted), "weighted_ops_not_int8": float_weighted,
                   "operators": sorted({op["op_name"] for op in ops}),
                   "input": {"dtype": source["dtype"].__name__, "shape": [int(v) for v in source["shape"]],
                             "quantization": [float(v) for v in source["quantization"]]},
                   "output_dtype": target["dtype"].__name__,
                   "converter": f"litert-torch {version('litert-torch')} (torch {torch.__version__.split('+')[0]}, "
                                f"torchao {version('torchao')})"}, handle, indent=1)


if __name__ == "__main__":
    main()
