"""The calibration methods side by side, per target, on the embedded default; auto's cost; bias correction.

    python benchmarks/calibration_methods.py [--targets ort-cpu,jetson] [--models resnet20-fmnist,resnet29-fmnist]
                                             [--methods minmax,entropy,percentile,mse,auto] [--percentile 99.999] [--json]
    python benchmarks/calibration_methods.py --auto-cost [--models resnet20-fmnist]
    python benchmarks/calibration_methods.py --bias-correction [--models resnet20-fmnist,resnet29-fmnist,resnet18]

Each cell is a full `compile` into a temporary folder: FP32 and INT8 top-1 over
all 10,000 Fashion-MNIST test images, the drop in points, top-1 agreement with
FP32, logit SQNR, the runtime that produced the INT8 number, the mean activation
scale relative to min-max's (the ranges each method chose, from the shipped model's
QuantizeLinear scales), and the largest scale change between calibrating on the first
half of the samples and on all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgeresnet.pipeline.compile import CompileOptions, compile_artifact
from edgeresnet.schema import to_json

METHODS = ("minmax", "entropy", "percentile", "mse", "auto")
SCHEMES = ("onnxruntime", "tensorrt")  # int32 bias, float bias


def activation_scales(artifact: Path) -> dict[str, float]:
    """Scale of each activation QuantizeLinear (input not an initializer) in the artifact's Q/DQ model."""
    path = next((p for p in sorted(artifact.rglob("*.onnx")) if "fp32" not in p.name and "dla" not in p.name), None)
    if path is None:
        return {}
    model = onnx.load(path)
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {node.input[0]: float(constants[node.input[1]]) for node in model.graph.node
            if node.op_type == "QuantizeLinear" and node.input[0] not in constants and constants[node.input[1]].size == 1}


def _front(model: str, calib_samples: int = 512, eval_samples: int = 2000):
    """The model's FP32 ONNX, calibration images and evaluation images: Fashion-MNIST's splits for its models,
    seeded normal images (disjoint seeds) for an architecture without data (ResNet-18 at 224)."""
    from edgeresnet.calibration import Dataset, open_dataset
    from edgeresnet.export import export_onnx_model
    from edgeresnet.models import load_model

    loaded = load_model(model)
    if model.endswith("-fmnist"):
        calib = open_dataset("fashion-mnist", loaded.preprocessing, limit=calib_samples)
        evaluation = open_dataset("fashion-mnist:test", loaded.preprocessing, limit=eval_samples)
    else:
        shape = loaded.preprocessing.input_shape
        calib = Dataset(np.random.default_rng(1).standard_normal((128, *shape)).astype(np.float32), None, "normal(seed 1)")
        evaluation = Dataset(np.random.default_rng(2).standard_normal((64, *shape)).astype(np.float32), None, "normal(seed 2)")
    return export_onnx_model(loaded), calib, evaluation


def _scored(fp32_logits, model, evaluation) -> dict:
    from edgeresnet.evaluate import collect_logits, compare
    from edgeresnet.runners import OnnxRuntimeRunner

    logits = collect_logits(OnnxRuntimeRunner(model.SerializeToString(), any_batch=True), evaluation, progress=False)
    drift = compare(fp32_logits, logits)
    row = {"sqnr_db": drift.sqnr_db, "agreement": drift.agreement}
    if evaluation.labels is not None:
        row["top1"] = round(float(np.mean(logits.argmax(1) == evaluation.labels) * 100), 2)
    return row


def bias_correction_table(models: list[str]) -> list[dict]:
    """Logit SQNR and agreement against FP32, without and with bias correction, per model and scheme (ORT's
    scheme keeps an int32 bias, TensorRT's a float one), min-max calibration, on evaluation images."""
    from edgeresnet.bias_correction import bias_sample, correct_bias
    from edgeresnet.evaluate import collect_logits
    from edgeresnet.quantize import QuantizeConfig, calibrate_and_quantize
    from edgeresnet.runners import OnnxRuntimeRunner
    from edgeresnet.targets import get_quant_scheme

    rows = []
    for model in models:
        fp32, calib, evaluation = _front(model)
        fp32_logits = collect_logits(OnnxRuntimeRunner(fp32.SerializeToString(), any_batch=True), evaluation, progress=False)
        for scheme in SCHEMES:
            int8 = calibrate_and_quantize(fp32, calib, QuantizeConfig(get_quant_scheme(scheme), "minmax"), progress=False).model
            started = time.time()
            corrected, shifts = correct_bias(fp32, int8, bias_sample(calib))
            row = {"model": model, "scheme": scheme, "images": len(evaluation), "layers": len(shifts),
                   "seconds": round(time.time() - started, 1),
                   "plain": _scored(fp32_logits, int8, evaluation), "corrected": _scored(fp32_logits, corrected, evaluation)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def auto_cost(models: list[str], repeats: int = 3) -> list[dict]:
    """Seconds of calibrate-and-quantize per method, side by side in one process (best of `repeats`), and the
    images each runs through a model (deterministic)."""
    from edgeresnet.quantize import QuantizeConfig, calibrate_and_quantize
    from edgeresnet.targets import get_quant_scheme

    rows = []
    for model in models:
        fp32, calib, _ = _front(model)
        images = calib.images
        for method in METHODS:
            best, inferences = float("inf"), None
            for _ in range(repeats):
                started = time.perf_counter()
                record = calibrate_and_quantize(fp32, images, QuantizeConfig(get_quant_scheme("onnxruntime"), method),
                                                progress=False).calibration
                best, inferences = min(best, time.perf_counter() - started), record.inferences
            rows.append({"model": model, "method": method, "seconds": round(best, 2), "inferences": inferences})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="ort-cpu,jetson")
    parser.add_argument("--models", default="resnet20-fmnist")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--auto-cost", action="store_true", help="time calibrate-and-quantize per method instead")
    parser.add_argument("--bias-correction", action="store_true", help="the bias-correction table instead")
    parser.add_argument("--percentile", type=float, default=None, help="for the percentile rows [default: 99.999]")
    parser.add_argument("--eval-samples", type=int, default=None, help="evaluate on a sample [default: all 10,000]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.auto_cost or args.bias_correction:
        rows = (auto_cost if args.auto_cost else bias_correction_table)(args.models.split(","))
        print(json.dumps({"runs": rows}, indent=2))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeresnet-methods-") as tmp:
        for target, model in ((t, m) for t in args.targets.split(",") for m in args.models.split(",")):
            minmax_scales = None
            for method in args.methods.split(","):
                started = time.time()
                out = Path(tmp) / f"{target}-{model}-{method}"
                result = compile_artifact(CompileOptions(target=target, model=model, method=method, out=str(out), progress=False,
                                                         eval_samples=args.eval_samples,
                                                         percentile=args.percentile if method == "percentile" else None))
                report = to_json(result.report)
                scales = activation_scales(out)
                minmax_scales = minmax_scales or scales
                shared = sorted(set(scales) & set(minmax_scales))
                stability = report["calibration"]["stability"]
                rows.append({
                    "target": report["target"], "model": model, "method": method, "shipped": report["method"],
                    "candidates": report["calibration"].get("candidates"), "options": {k: v for k, v in report["calibration"].items()
                                                                              if k in ("percentile", "num_bins", "num_quantized_bins")},
                    "fp32_top1": report["fp32"]["top1"], "int8_top1": report["int8"]["top1"], "drop_pts": report["drop_pts"],
                    "agreement": report["agreement"], "sqnr_db": report["drift"]["sqnr_db"], "runtime": report["int8"]["runtime"],
                    "scale_vs_minmax": float(np.mean([scales[t] / minmax_scales[t] for t in shared])) if shared else None,
                    "max_scale_change": stability["max_scale_change"], "seconds": round(time.time() - started, 1),
                })
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # each row as soon as it is measured
    if args.json:
        print(json.dumps({"runs": rows}, indent=2))
        return
    print(f"{'target':16s} {'model':16s} {'method':11s} {'FP32':>7s} {'INT8':>7s} {'drop':>6s} {'agree':>7s} {'SQNR dB':>8s} "
          f"{'scale/mm':>8s} {'half/all':>8s} {'s':>6s}")
    for r in rows:
        print(f"{r['target']:16s} {r['model']:16s} {r['method'] + ('=' + r['shipped'] if r['method'] == 'auto' else ''):11s} {r['fp32_top1']:7.2f} {r['int8_top1']:7.2f} {r['drop_pts']:6.2f} "
              f"{r['agreement'] * 100:6.2f}% {r['sqnr_db']:8.1f} {r['scale_vs_minmax'] or float('nan'):8.3f} "
              f"{r['max_scale_change'] * 100:7.1f}% {r['seconds']:6.1f}")


if __name__ == "__main__":
    main()
