"""The three calibration methods side by side, per target, on the embedded default.

    python benchmarks/calibration_methods.py [--targets ort-cpu,jetson] [--percentile 99.999] [--json]

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

METHODS = ("minmax", "entropy", "percentile")


def activation_scales(artifact: Path) -> dict[str, float]:
    """Scale of each activation QuantizeLinear (input not an initializer) in the artifact's Q/DQ model."""
    path = next((p for p in sorted(artifact.rglob("*.onnx")) if "fp32" not in p.name and "dla" not in p.name), None)
    if path is None:
        return {}
    model = onnx.load(path)
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {node.input[0]: float(constants[node.input[1]]) for node in model.graph.node
            if node.op_type == "QuantizeLinear" and node.input[0] not in constants and constants[node.input[1]].size == 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="ort-cpu,jetson")
    parser.add_argument("--percentile", type=float, default=None, help="for the percentile rows [default: 99.999]")
    parser.add_argument("--eval-samples", type=int, default=None, help="evaluate on a sample [default: all 10,000]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeresnet-methods-") as tmp:
        for target in args.targets.split(","):
            minmax_scales = None
            for method in METHODS:
                started = time.time()
                out = Path(tmp) / f"{target}-{method}"
                result = compile_artifact(CompileOptions(target=target, method=method, out=str(out), progress=False,
                                                         eval_samples=args.eval_samples,
                                                         percentile=args.percentile if method == "percentile" else None))
                report = to_json(result.report)
                scales = activation_scales(out)
                minmax_scales = minmax_scales or scales
                shared = sorted(set(scales) & set(minmax_scales))
                stability = report["calibration"]["stability"]
                rows.append({
                    "target": report["target"], "method": method, "options": {k: v for k, v in report["calibration"].items()
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
    print(f"{'target':16s} {'method':11s} {'FP32':>7s} {'INT8':>7s} {'drop':>6s} {'agree':>7s} {'SQNR dB':>8s} "
          f"{'scale/mm':>8s} {'half/all':>8s} {'s':>6s}")
    for r in rows:
        print(f"{r['target']:16s} {r['method']:11s} {r['fp32_top1']:7.2f} {r['int8_top1']:7.2f} {r['drop_pts']:6.2f} "
              f"{r['agreement'] * 100:6.2f}% {r['sqnr_db']:8.1f} {r['scale_vs_minmax'] or float('nan'):8.3f} "
              f"{r['max_scale_change'] * 100:7.1f}% {r['seconds']:6.1f}")


if __name__ == "__main__":
    main()
