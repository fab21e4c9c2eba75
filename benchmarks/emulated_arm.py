"""ARM speed as far as this x86 host can tell: everything under the same qemu-aarch64, side by side.

    python benchmarks/emulated_arm.py [--target rpi5] [--runs 20] [--json]

Compiles the embedded default for `ort-cpu` and for the ARM target, then, in one
qemu-aarch64 process with the board's CPU model, times ONNX Runtime's own aarch64
build on the FP32 and INT8 models and the TVM INT8 aarch64 library, batch 1.
Emulation cost is not board cost: the ratios are a proxy for the work each
runtime does, labelled as such. On an aarch64 machine run latency.py natively.

ONNX Runtime's aarch64 wheel is pinned to 1.20.1 here: 1.32.0 dies with SIGSEGV on
import under Debian 12's qemu-user 7.2, whatever the CPU model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgeresnet.pipeline.compile import CompileOptions, compile_artifact
from edgeresnet.targets import get_target
from edgeresnet.targets.tvm import emulation
from edgeresnet.targets.tvm.backend import TvmOptions

ORT_AARCH64 = "onnxruntime==1.20.1"

TIMING_SCRIPT = r'''
import json, sys, time
import numpy as np
import onnxruntime as ort
import tvm.runtime
from tvm.runtime.vm import VirtualMachine

fp32, int8, library, runs, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
x = np.random.default_rng(0).standard_normal(json.loads(sys.argv[6])).astype(np.float32)

def timed(fn):
    fn(); fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter(); fn(); times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90))}

rows = {}
for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8", int8)):
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    rows[name] = timed(lambda: session.run(None, {"input": x}))
vm = VirtualMachine(tvm.runtime.load_module(library), tvm.runtime.cpu())
tensor = tvm.runtime.tensor(x, tvm.runtime.cpu())
rows["tvm int8"] = timed(lambda: vm["main"](tensor))
print(json.dumps(rows))
'''


def aarch64_wheel_site(cache: Path, folder: str, requirement: str, package: str,
                       platforms: tuple[str, ...] = ("manylinux_2_28_aarch64",)) -> Path:
    """One cp311 aarch64 wheel from PyPI (no dependencies) unpacked into cache/folder, for a guest's PYTHONPATH."""
    site = cache / folder
    if (site / package).is_dir():
        return site
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        *(f"--platform={p}" for p in platforms), "--python-version", "3.11", "--implementation", "cp",
                        "-d", tmp, requirement], check=True)
        with zipfile.ZipFile(next(Path(tmp).glob("*.whl"))) as wheel:
            wheel.extractall(site)
    return site


def ort_aarch64_site(cache: Path) -> Path:
    return aarch64_wheel_site(cache, "onnxruntime-aarch64", ORT_AARCH64, "onnxruntime")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="rpi5")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    profile = get_target(args.target)
    runtime = emulation.build_runtime()
    ort_site = ort_aarch64_site(runtime.parent)
    with tempfile.TemporaryDirectory(prefix="edgeresnet-emubench-") as tmp:
        ort_artifact = compile_artifact(CompileOptions(target="ort-cpu", out=f"{tmp}/ort", eval_samples=200, progress=False))
        arm_artifact = compile_artifact(CompileOptions(target=profile.name, out=f"{tmp}/arm", eval_samples=200,
                                                       backend_options=TvmOptions(emulated_samples=20), progress=False))
        shape = [1, ort_artifact.manifest.input.channels, *ort_artifact.manifest.input.input_size]
        script = Path(tmp) / "timing.py"
        script.write_text(TIMING_SCRIPT)
        command, env = emulation.python_command(
            runtime, profile.details.qemu_cpu, script, str(ort_artifact.folder / "model.fp32.onnx"),
            str(ort_artifact.folder / "model.int8.onnx"), str(arm_artifact.folder / "model.so"),
            str(args.runs), str(args.threads), json.dumps(shape))
        env["PYTHONPATH"] = f"{ort_site}:{env['PYTHONPATH']}"
        env["TVM_NUM_THREADS"] = str(args.threads)
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    baseline = rows["onnxruntime fp32"]["p50_ms"]
    runs = [{"name": f"{name} (qemu -cpu {profile.details.qemu_cpu})", "model": "resnet20-fmnist", **{k: round(v, 3) for k, v in r.items()},
             "ratio_vs_ort_fp32": round(r["p50_ms"] / baseline, 3)} for name, r in rows.items()]
    if args.json:
        print(json.dumps({"runs": runs, "emulated": True, "onnxruntime_aarch64": ORT_AARCH64}, indent=2))
        return
    print(f"emulated-work proxy under qemu-aarch64 -cpu {profile.details.qemu_cpu} (not board latency), batch 1, {args.threads} threads")
    for r in runs:
        print(f"  {r['name']:45s} p50 {r['p50_ms']:9.2f} ms  p90 {r['p90_ms']:9.2f} ms  x ORT FP32 {r['ratio_vs_ort_fp32']:.2f}")


if __name__ == "__main__":
    main()
