"""The three calibration methods side by side, per target, on the embedded default.

    python benchmarks/calibration_methods.py [--targets ort-cpu,jetson] [--json]

Each cell is a full `compile` into a temporary folder: FP32 and INT8 top-1 over
all 10,000 Fashion-MNIST test images, the drop in points, top-1 agreement with
FP32, logit SQNR, and the runtime that produced the INT8 number.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from edgeresnet.pipeline.compile import CompileOptions, compile_artifact

METHODS = ("minmax", "entropy", "percentile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="ort-cpu,jetson")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeresnet-methods-") as tmp:
        for target in args.targets.split(","):
            for method in METHODS:
                started = time.time()
                result = compile_artifact(CompileOptions(target=target, method=method, out=str(Path(tmp) / f"{target}-{method}"), progress=False))
                report = result.report
                rows.append({
                    "target": report["target"], "method": method, "fp32_top1": report["fp32"]["top1"],
                    "int8_top1": report["int8"]["top1"], "drop_pts": report["drop_pts"], "agreement": report["agreement"],
                    "sqnr_db": report["drift"]["sqnr_db"], "runtime": report["int8"]["runtime"],
                    "seconds": round(time.time() - started, 1),
                })
    if args.json:
        print(json.dumps({"runs": rows}, indent=2))
        return
    print(f"{'target':16s} {'method':11s} {'FP32':>7s} {'INT8':>7s} {'drop':>6s} {'agree':>7s} {'SQNR dB':>8s} {'s':>6s}")
    for r in rows:
        print(f"{r['target']:16s} {r['method']:11s} {r['fp32_top1']:7.2f} {r['int8_top1']:7.2f} {r['drop_pts']:6.2f} "
              f"{r['agreement'] * 100:6.2f}% {r['sqnr_db']:8.1f} {r['seconds']:6.1f}")


if __name__ == "__main__":
    main()
