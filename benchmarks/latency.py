"""Latency of every runtime side by side, in one run, on this host: batch 1.

    python benchmarks/latency.py [--json] [--runs 30] [--models resnet18,resnet20-fmnist] [--records DIR]

For ResNet-18 at 224x224 (calibrated on crops of the real photos matplotlib ships,
or --calib DIR) and the reference model: PyTorch eager, ONNX Runtime FP32 and INT8,
TVM FP32 and TVM INT8 (edgeresnet's rule-based schedules, no tuning; and, with
--records from `edgeresnet tune --target x86-64`, TVM INT8 with those records),
each as p50/p90 and as a ratio to ONNX Runtime FP32, plus the compile time per stage.
All runtimes use the same number of threads (TVM_NUM_THREADS, ORT intra-op threads,
torch threads). Ratios, not absolute numbers, are what compare across machines.

This host (x86-64 without AVX-512 VNNI) gains little from INT8 even in ONNX
Runtime; INT8 pays on ARM cores with sdot. The output says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

THREADS = os.cpu_count() or 1
os.environ.setdefault("TVM_NUM_THREADS", str(THREADS))


def photo_crops(size: int, count: int = 32) -> np.ndarray:
    """Random crops of matplotlib's sample photos, ImageNet-preprocessed: real image statistics for calibration."""
    import matplotlib
    from PIL import Image

    from edgeresnet.preprocessing import IMAGENET

    folder = Path(matplotlib.get_data_path()) / "sample_data"
    photos = [Image.open(folder / name).convert("RGB") for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")]
    rng = np.random.default_rng(0)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(min(photo.size) * rng.uniform(0.5, 1.0))
        left, top = rng.integers(0, photo.size[0] - side + 1), rng.integers(0, photo.size[1] - side + 1)
        crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        crops.append(np.asarray(crop, np.uint8))
    return IMAGENET.normalize_uint8(np.stack(crops))


def interleaved(candidates: dict, runs: int, per_round: int = 5) -> dict[str, dict]:
    """Round-robin timing: each round runs every candidate `per_round` times (after one
    warm-up call), so a shared machine's changing load and one runtime's idle-spinning
    threads fall on all candidates alike, not on whichever was measured at a bad moment."""
    from edgeresnet.timing import run_times, summarize_times

    samples: dict[str, list[float]] = {label: [] for label in candidates}
    for _ in range(max(1, runs // per_round)):
        for label, call in candidates.items():
            samples[label] += run_times(call, warmup=1, runs=per_round)
    return {label: summarize_times(times) for label, times in samples.items()}


def bench_model(name: str, calib_dir: str | None, runs: int, records: str | None, log) -> tuple[list[dict], dict]:
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from edgeresnet.calibration import Dataset, open_dataset
    from edgeresnet.models import load_model
    from edgeresnet.pipeline.frontend import export_and_quantize
    from edgeresnet.runners import OnnxRuntimeRunner
    from edgeresnet.targets import get_quant_scheme
    from edgeresnet.targets.tvm.module import compile_integer_module, host_cpu
    from edgeresnet.targets.tvm.pipeline import cpu_pipeline
    from edgeresnet.targets.tvm.records import read_summary
    from edgeresnet.targets.tvm.rules import ScheduleStats

    torch.set_num_threads(THREADS)
    stages: dict[str, float] = {}
    loaded = load_model(name)
    shape = [1, *loaded.preprocessing.input_shape]
    if calib_dir:
        calib = open_dataset(calib_dir, loaded.preprocessing, limit=64).images
    elif loaded.entry.weights is not None:
        calib = open_dataset("fashion-mnist", loaded.preprocessing, limit=256).images
    else:
        calib = photo_crops(shape[-1])
    x = calib[:1].copy()

    started = time.perf_counter()
    data = Dataset(calib, None, "benchmark calibration")
    ort_quantized = export_and_quantize(loaded, data, get_quant_scheme("onnxruntime"), progress=False)
    fp32, ort_int8 = ort_quantized.fp32, ort_quantized.int8
    tvm_qdq = export_and_quantize(loaded, data, get_quant_scheme("tvm"), progress=False).int8
    stages["export and quantize (both schemes)"] = time.perf_counter() - started

    target = {"kind": "llvm", "mcpu": host_cpu()}
    started = time.perf_counter()
    fp32_schedules = ScheduleStats()
    llvm = tvm.target.Target(target)
    tvm_fp32 = relax.build(from_onnx(fp32, shape_dict={"input": shape}, keep_params_in_input=False),
                           target=llvm, relax_pipeline=cpu_pipeline(llvm, fp32_schedules))
    stages["tvm build fp32"] = time.perf_counter() - started
    started = time.perf_counter()
    tvm_int8, lowering, int8_schedules = compile_integer_module(tvm_qdq, shape, target)
    stages["tvm build int8"] = time.perf_counter() - started
    tuned = None
    if records:
        started = time.perf_counter()
        tuned, _, tuned_schedules = compile_integer_module(tvm_qdq, shape, target, Path(records))
        stages["tvm build int8 with records"] = time.perf_counter() - started

    device = tvm.cpu()
    x_tvm = tvm.runtime.tensor(x, device)
    fp32_main = relax.VirtualMachine(tvm_fp32, device)["main"]
    int8_main = relax.VirtualMachine(tvm_int8, device)["main"]
    # ONNX Runtime as users run it back to back: its threads spin between runs (its default).
    ort_fp32_runner = OnnxRuntimeRunner(fp32.SerializeToString(), threads=THREADS, spinning=True)
    ort_int8_runner = OnnxRuntimeRunner(ort_int8.SerializeToString(), threads=THREADS, spinning=True)
    x_torch = torch.from_numpy(x)
    candidates = {
        "pytorch eager fp32": lambda: loaded.module(x_torch),
        "onnxruntime fp32": lambda: ort_fp32_runner.infer(x),
        "onnxruntime int8": lambda: ort_int8_runner.infer(x),
        "tvm fp32 (rules)": lambda: fp32_main(x_tvm),
        "tvm int8 (rules)": lambda: int8_main(x_tvm),
    }
    if tuned is not None:
        tuned_main = relax.VirtualMachine(tuned, device)["main"]
        trials = read_summary(records)["runs"][-1]["trials_per_kernel"]
        candidates[f"tvm int8 (+records, {tuned_schedules.from_records} kernels, {trials} trials)"] = lambda: tuned_main(x_tvm)
    rows = []
    with torch.no_grad():
        for label, timing in interleaved(candidates, runs).items():
            p50, p90 = timing["p50_ms"], timing["p90_ms"]
            rows.append({"name": label, "model": name, "p50_ms": round(p50, 3), "p90_ms": round(p90, 3)})
            log(f"  {name:16s} {label:24s} p50 {p50:9.3f} ms  p90 {p90:9.3f} ms")
    baseline = next(r["p50_ms"] for r in rows if r["name"] == "onnxruntime fp32")
    for row in rows:
        row["ratio_vs_ort_fp32"] = round(row["p50_ms"] / baseline, 3)
    info = {"compile_seconds": {k: round(v, 2) for k, v in stages.items()},
            "tvm_schedules": {"fp32": fp32_schedules.to_dict(), "int8": int8_schedules.to_dict()},
            "tvm_lowering": lowering.to_dict()}
    return rows, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--models", default="resnet18,resnet20-fmnist")
    parser.add_argument("--calib", default=None, help="a folder of photos to calibrate ResNet-18 on, instead of matplotlib's samples")
    parser.add_argument("--records", default=None, help="tuning records of `edgeresnet tune --target x86-64` to add a tuned TVM INT8 row")
    args = parser.parse_args()
    log = (lambda _m: None) if args.json else print
    log(f"threads: {THREADS} (TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}); batch 1; "
        + (f"tuning records: {args.records}" if args.records else "no tuning records applied"))
    runs, details = [], {}
    for name in args.models.split(","):
        rows, info = bench_model(name, args.calib, args.runs, args.records, log)
        runs += rows
        details[name] = info
    if args.json:
        print(json.dumps({"runs": runs, "details": details, "threads": THREADS}, indent=2))
        return
    print()
    print(f"{'model':16s} {'runtime':24s} {'p50 ms':>9s} {'p90 ms':>9s} {'x ORT FP32':>10s}")
    for r in runs:
        print(f"{r['model']:16s} {r['name']:24s} {r['p50_ms']:9.3f} {r['p90_ms']:9.3f} {r['ratio_vs_ort_fp32']:10.2f}")
    for name, info in details.items():
        print(f"{name}: compile seconds {info['compile_seconds']}; TVM kernels scheduled fp32 "
              f"{info['tvm_schedules']['fp32']['share']:.0%}, int8 {info['tvm_schedules']['int8']['share']:.0%}")
    print("note: this host has no VNNI, so INT8 barely pays here, even in ONNX Runtime; INT8 pays on ARM cores with sdot.")


if __name__ == "__main__":
    sys.exit(main())
