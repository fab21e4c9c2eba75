"""ncnn as a peer in the ARM cycle model (benchmarks/arm_cost.py), and the model checked against ncnn's published board timings.

    python benchmarks/peer_ncnn.py --validate [--boards rpi5,rpi4] [--threads 1,4] [--models resnet18_int8,...]
                                   [--results benchmarks/results/ncnn_validation.json] [--json]

Runtimes (arm_cost.py --runtimes):
  ncnn-int8  our model through pnnx (PyTorch -> ncnn), calibrated by ncnn2table on the same
             calibration images as the other runtimes, quantized by ncnn2int8. Method aciq, the
             other of the two ncnn's int8 guide offers: with kl the reference model's conversion
             failed the check below (top-1 agreement 0.87, cosine 0.948 on 100 test images;
             aciq: 0.99, 0.9996);
  ncnn-fp16  the same ncnn model unquantized. ncnn runs it in fp16 arithmetic on a core that has
             it (Cortex-A76/A78: ncnn's default); on the Cortex-A72 it runs FP32.
Both run ncnn's aarch64 wheel under qemu with benchncnn's options (arm_cost/ncnn_guest.py).
Each conversion is checked before it is counted, under the same qemu CPU model: top-1 agreement
with the FP32 PyTorch model on test images for a trained model (at least MIN_AGREEMENT), and the
mean logit cosine similarity with FP32 on the sample (at least MIN_COSINE).

ncnn2table and ncnn2int8 are not in any package: they are built (once, cached) for this host
from the source of the pinned ncnn release NCNN_RELEASE, with cmake and only the layers a ResNet
uses. Get that source with
    git clone --depth 1 --branch 20260526 https://github.com/Tencent/ncnn ~/.cache/edgeresnet/ncnn/src-20260526
(or point EDGERESNET_NCNN_SOURCE at a checkout of that tag); the build needs cmake and g++.

Threads: ncnn parallelises with OpenMP (the wheel's own libgomp). Each call of GOMP_parallel,
which every `#pragma omp parallel` of ncnn goes through, opens a parallel region of the cycle
model. Waiting threads are made to block (OMP_WAIT_POLICY=passive: libgomp's spin count is 0),
so they wait inside the futex system call and execute no counted instruction; the rest of
libgomp (team start, barrier bookkeeping) is counted as work.

--validate runs ncnn's own benchmark models (benchmark/*.param of the pinned source, zero
weights as benchncnn loads them) under the model and sets the estimate beside the board timings
published in ncnn's benchmark/README.md (the avg of `benchncnn 10 N 0 -1`), with their ratio.
Nothing in the model is tuned to fit them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GUEST = HERE / "arm_cost" / "ncnn_guest.py"
NCNN_RELEASE = "20260526"
NCNN_AARCH64 = f"ncnn==1.0.{NCNN_RELEASE}"
PNNX = f"pnnx=={NCNN_RELEASE}"
VERSION = f"ncnn 1.0.{NCNN_RELEASE} (aarch64 wheel; int8 tools and pnnx of the same release)"
SOURCE_ENV = "EDGERESNET_NCNN_SOURCE"
RUNTIMES = ("ncnn-int8", "ncnn-fp16")
CALIBRATION_METHOD = "aciq"
MIN_AGREEMENT = 0.95
MIN_COSINE = 0.95
CHECK_IMAGES = 100  # test images of a trained model for the agreement check
# The layers pnnx writes for a ResNet, and those ncnn's own code and tools create.
TOOL_LAYERS = ("absval batchnorm bias binaryop cast clip concat convolution convolutiondepthwise copyto crop deepcopy "
               "dequantize dropout eltwise expanddims flatten gemm innerproduct input memorydata noop packing padding "
               "permute pooling quantize relu requantize reshape scale slice softmax split squeeze unaryop").split()
# Published by ncnn (benchmark/README.md, sections "Raspberry Pi 4 Model B Broadcom BCM2711B0, Cortex-A72"
# and "Raspberry Pi 5 Broadcom BCM2712, Cortex-A76"): avg ms of benchncnn, CPU, by model and thread count.
PUBLISHED_MS = {
    "rpi4": {"resnet18": {1: 191.10, 4: 123.12}, "resnet18_int8": {1: 158.50, 4: 83.92},
             "resnet50": {1: 534.11, 4: 262.83}, "resnet50_int8": {1: 423.96, 4: 196.65}},
    "rpi5": {"resnet18": {1: 29.68, 4: 19.96}, "resnet18_int8": {1: 36.42, 4: 16.74},
             "resnet50": {1: 89.43, 4: 46.21}, "resnet50_int8": {1: 80.16, 4: 40.75}},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def aarch64_site(cache: Path) -> Path:
    """ncnn's aarch64 wheel unpacked into a folder the emulated Python puts on its path."""
    from emulated_arm import aarch64_wheel_site

    return aarch64_wheel_site(cache, f"ncnn-aarch64-{NCNN_RELEASE}", NCNN_AARCH64, "ncnn")


# What an ncnn guest adds to the counting environment: OpenMP threads that block while waiting.
GUEST_ENVIRONMENT = {"OMP_WAIT_POLICY": "passive"}


@dataclass(frozen=True)
class Tools:
    ncnn2table: Path
    ncnn2int8: Path
    source: Path


def tools_cache() -> Path:
    """Where ncnn's source and the host build of its tools live, shared by every checkout."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeresnet" / "ncnn"


def source_folder() -> Path:
    from edgeresnet.errors import MissingDependency

    folder = Path(os.environ.get(SOURCE_ENV) or tools_cache() / f"src-{NCNN_RELEASE}")
    if not (folder / "tools" / "quantize" / "ncnn2table.cpp").is_file():
        raise MissingDependency(f"ncnn's int8 tools are built from ncnn {NCNN_RELEASE}'s source, not found in {folder}: "
                                f"git clone --depth 1 --branch {NCNN_RELEASE} https://github.com/Tencent/ncnn {folder} "
                                f"(or set {SOURCE_ENV})")
    return folder


def build_tools() -> Tools:
    """ncnn2table and ncnn2int8 for this host, built once from the pinned source (only the layers a ResNet needs)."""
    from edgeresnet.errors import MissingDependency

    source = source_folder()
    build = tools_cache() / f"build-{NCNN_RELEASE}"
    tools = Tools(build / "tools" / "quantize" / "ncnn2table", build / "tools" / "quantize" / "ncnn2int8", source)
    if tools.ncnn2table.is_file() and tools.ncnn2int8.is_file():
        return tools
    for program in ("cmake", "make", "g++"):
        if shutil.which(program) is None:
            raise MissingDependency(f"building ncnn's int8 tools needs {program}: apt-get install cmake make g++")
    layers = subprocess.run(["grep", "-o", r"ncnn_add_layer([A-Za-z0-9_]*", str(source / "src" / "CMakeLists.txt")],
                            capture_output=True, text=True, check=True).stdout.split()
    unused = sorted({line.split("(")[1].lower() for line in layers} - set(TOOL_LAYERS))
    log(f"building ncnn {NCNN_RELEASE}'s ncnn2table and ncnn2int8 for this host (once; minutes)")
    build.mkdir(parents=True, exist_ok=True)
    # SSE2 only, no run-time dispatch: these tools calibrate and rewrite files, their speed hardly matters.
    subprocess.run(["cmake", str(source), "-DCMAKE_BUILD_TYPE=Release", "-DNCNN_BUILD_TOOLS=ON",
                    "-DNCNN_BUILD_EXAMPLES=OFF", "-DNCNN_BUILD_BENCHMARK=OFF", "-DNCNN_BUILD_TESTS=OFF",
                    "-DNCNN_VULKAN=OFF", "-DNCNN_PYTHON=OFF", "-DNCNN_RUNTIME_CPU=OFF", "-DNCNN_AVX=OFF",
                    "-DNCNN_SIMPLEOCV=ON", *(f"-DWITH_LAYER_{name}=OFF" for name in unused)],
                   cwd=build, check=True, capture_output=True)
    subprocess.run(["nice", "-n", "10", "make", f"-j{min(os.cpu_count() or 1, 4)}", "ncnn2table", "ncnn2int8"],
                   cwd=build, check=True, capture_output=True)
    return tools


# --- our model to ncnn ------------------------------------------------------------------------

@dataclass(frozen=True)
class NcnnModel:
    runtime: str
    param: Path  # the .bin lies beside it


def to_ncnn(module, shape: list[int], folder: Path) -> Path:
    """FP32 ncnn model (model.ncnn.param/.bin) of a PyTorch module through a TorchScript trace and pnnx."""
    import torch

    from edgeresnet.errors import MissingDependency

    try:
        import pnnx
    except ImportError as error:
        raise MissingDependency(f"converting to ncnn needs pnnx: pip install {PNNX}") from error
    trace = folder / "model.pt"
    with torch.no_grad():
        torch.jit.trace(module.eval(), torch.zeros(shape)).save(str(trace))
    program = Path(pnnx.__file__).parent / "pnnx"
    result = subprocess.run([str(program), str(trace), f"inputshape=[{','.join(map(str, shape))}]", "fp16=0"],
                            cwd=folder, capture_output=True, text=True)
    param = folder / "model.ncnn.param"
    if result.returncode != 0 or not param.is_file():
        raise RuntimeError(f"pnnx failed ({result.returncode}): {result.stderr.strip().splitlines()[-3:]}")
    for extra in ("model.pnnx.param", "model.pnnx.bin", "model.pnnx.onnx", "model_pnnx.py", "model_ncnn.py", "model.pt"):
        (folder / extra).unlink(missing_ok=True)
    return param


def quantize(fp32: Path, calibration: np.ndarray, tools: Tools) -> Path:
    """ncnn2table (method aciq: see the module's docstring) on the calibration images, then ncnn2int8."""
    folder = fp32.parent
    images = folder / "calibration"
    images.mkdir(exist_ok=True)
    paths = []
    for n, image in enumerate(calibration):
        path = images / f"{n:04d}.npy"
        np.save(path, image.astype(np.float32))
        paths.append(str(path))
    listing = folder / "calibration.txt"
    listing.write_text("\n".join(paths) + "\n")
    channels, height, width = calibration.shape[1:]
    table = folder / "model.table"
    weights = fp32.with_suffix(".bin")
    result = subprocess.run([str(tools.ncnn2table), str(fp32), str(weights), str(listing), str(table),
                             f"shape=[{width},{height},{channels}]", "type=1", f"method={CALIBRATION_METHOD}", "thread=1"],
                            capture_output=True, text=True)
    if result.returncode != 0 or not table.is_file():
        raise RuntimeError(f"ncnn2table failed ({result.returncode}): {result.stderr.strip().splitlines()[-3:]}")
    int8 = folder / "model.int8.param"
    result = subprocess.run([str(tools.ncnn2int8), str(fp32), str(weights), str(int8), str(int8.with_suffix(".bin")),
                             str(table)], capture_output=True, text=True)
    if result.returncode != 0 or not int8.is_file():
        raise RuntimeError(f"ncnn2int8 failed ({result.returncode}): {result.stderr.strip().splitlines()[-3:]}")
    shutil.rmtree(images)
    return int8


def prepare(loaded, calibration: np.ndarray, runtimes: list[str], folder: Path) -> dict[str, NcnnModel]:
    """The ncnn model of each asked ncnn runtime, converted once into folder/ncnn."""
    wanted = [r for r in runtimes if r in RUNTIMES]
    if not wanted:
        return {}
    out = folder / "ncnn"
    shape = [1, *loaded.preprocessing.input_shape]
    fp32 = out / "model.ncnn.param"
    if not fp32.is_file():
        out.mkdir(parents=True, exist_ok=True)
        log(f"{loaded.name}: PyTorch -> ncnn (pnnx)")
        to_ncnn(loaded.module, shape, out)
    models = {"ncnn-fp16": NcnnModel("ncnn-fp16", fp32)}
    if "ncnn-int8" in wanted:
        int8 = out / "model.int8.param"
        if not int8.is_file():
            log(f"{loaded.name}: ncnn2table + ncnn2int8 ({len(calibration)} calibration images)")
            quantize(fp32, calibration, build_tools())
        models["ncnn-int8"] = NcnnModel("ncnn-int8", int8)
    return {r: models[r] for r in wanted}


# --- the conversion check -------------------------------------------------------------------------

@dataclass(frozen=True)
class Agreement:
    fp32_cosine: float  # mean over the sample of the cosine similarity of the logits with FP32
    fp32_top1_agreement: float  # share of the sample where the top class is FP32's
    images: int


def guest_logits(model: NcnnModel, images: np.ndarray, qemu_cpu: str, site: Path, runtime_folder: Path,
                 scratch: Path) -> np.ndarray:
    from edgeresnet.targets.tvm.emulation import qemu_binary

    inputs, outputs = scratch / "check-inputs.npy", scratch / "check-logits.npy"
    np.save(inputs, images.astype(np.float32))
    sysroot = runtime_folder / "sysroot"
    env = {**GUEST_ENVIRONMENT, "PYTHONPATH": f"{site}:{runtime_folder / 'site'}", "PYTHONNOUSERSITE": "1", "LC_ALL": "C"}
    result = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), qemu_binary(), "-cpu", qemu_cpu,
                             "-L", str(sysroot), str(sysroot / "usr/bin/python3.11"), str(GUEST), "logits",
                             str(model.param), str(inputs), "1", str(outputs)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ncnn under qemu -cpu {qemu_cpu} failed: {result.stderr.strip().splitlines()[-3:]}")
    logits = np.load(outputs)
    inputs.unlink()
    outputs.unlink()
    return logits


def agreement(reference: np.ndarray, logits: np.ndarray) -> Agreement:
    cosine = np.sum(reference * logits, axis=1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(logits, axis=1))
    top1 = np.mean(reference.argmax(axis=1) == logits.argmax(axis=1))
    return Agreement(round(float(np.mean(cosine)), 4), round(float(top1), 4), len(reference))


def check_images(loaded, calibration: np.ndarray) -> np.ndarray:
    """A trained model's test images (its own data set), else the sample the other runtimes calibrate on."""
    if loaded.entry.weights is None:
        return calibration
    from edgeresnet.calibration import open_dataset

    test = open_dataset("fashion-mnist:test", loaded.preprocessing, limit=CHECK_IMAGES, seed=0)
    return np.concatenate(list(test.batches(hash=False)))


def check(loaded, model: NcnnModel, images: np.ndarray, qemu_cpu: str, site: Path, runtime_folder: Path,
          scratch: Path) -> Agreement:
    """Agreement of the ncnn model run under the board's CPU model with the FP32 PyTorch model; fails below the bar."""
    import torch

    from edgeresnet.errors import CheckFailed

    with torch.no_grad():
        reference = loaded.module.eval()(torch.from_numpy(images.astype(np.float32))).numpy()
    result = agreement(reference, guest_logits(model, images, qemu_cpu, site, runtime_folder, scratch))
    trained = loaded.entry.weights is not None
    if result.fp32_cosine < MIN_COSINE or (trained and result.fp32_top1_agreement < MIN_AGREEMENT):
        raise CheckFailed(f"{loaded.name} / {model.runtime} under qemu -cpu {qemu_cpu}: FP32 cosine "
                          f"{result.fp32_cosine}, top-1 agreement {result.fp32_top1_agreement} on {result.images} "
                          f"images (at least {MIN_COSINE} / {MIN_AGREEMENT}): not counted")
    return result


# --- the model against ncnn's published board timings ---------------------------------------------

VALIDATION_MODELS = ("resnet18_int8", "resnet18", "resnet50_int8", "resnet50")
VALIDATION_SOURCE = f"ncnn {NCNN_RELEASE} benchmark/README.md (Raspberry Pi 4 Model B / Raspberry Pi 5 sections, CPU, avg)"


@dataclass
class Validation:
    """One of ncnn's benchmark models on one board and thread count: the cycle model's estimate beside ncnn's published time."""
    model: str
    board: str
    threads: int
    runtime: str
    estimated_ms: float
    published_ms: float
    ratio: float  # estimated / published
    cycles: int
    compute_cycles: int
    memory_cycles: int
    instructions: int
    parallel_regions: int
    version: str
    published: str = VALIDATION_SOURCE


def validate(models: list[str], boards: list[str], thread_counts: list[int]):
    """Yields the rows of each model and board as soon as they are counted and weighted."""
    import arm_cost
    from edgeresnet.targets import get_target
    from edgeresnet.targets.tvm.emulation import build_runtime

    cache = arm_cost.cache_folder()
    plugin = arm_cost.build_plugin(cache)
    llvm = arm_cost.Llvm(cache)
    runtime_folder = build_runtime(log=log)
    site = aarch64_site(runtime_folder.parent)
    symbols = arm_cost.Symbols(llvm)
    source = source_folder()
    work = cache / "work" / "ncnn-benchmark"
    work.mkdir(parents=True, exist_ok=True)
    for board_name in boards:
        board, target = arm_cost.BOARDS[board_name], get_target(board_name)
        for model in models:
            # The benchmark model alone, no .bin beside it: zero weights, as benchncnn loads it.
            param = work / f"{model}.param"
            shutil.copyfile(source / "benchmark" / "models" / f"{model}.param", param)
            runtime = "ncnn-int8" if model.endswith("_int8") else "ncnn-fp16"
            counted = {}
            for threads in thread_counts:
                log(f"ncnn benchmark {model} / {board_name} / {threads} thread(s): counting under qemu "
                    f"-cpu {target.details.qemu_cpu}")
                scratch = work / board_name / model / str(threads)
                scratch.mkdir(parents=True, exist_ok=True)
                counted[threads] = arm_cost.count_inference(plugin, runtime_folder, [site], board, target.details.qemu_cpu,
                                                            runtime, param, [1, 3, 224, 224], threads, scratch)
            unique = sorted({c.block[2] for counts in counted.values() for c in counts})
            cycles_of, assembly = arm_cost.block_cycles(llvm, board, unique)
            for threads, counts in counted.items():
                cost = arm_cost.cost_of(model, board, runtime, threads, counts, symbols, cycles_of, assembly)
                published = PUBLISHED_MS[board_name][model][threads]
                yield Validation(model, board_name, threads, runtime, cost.estimated_ms, published,
                                 round(cost.estimated_ms / published, 3), cost.cycles, cost.compute_cycles,
                                 cost.memory_cycles, cost.instructions, cost.parallel_regions, VERSION)


def merge_validation(path: Path, rows: list[Validation]) -> None:
    """Adds rows to the validation file, replacing any of the same model, board and threads."""
    import arm_cost

    arm_cost.merge_rows(path, [asdict(r) for r in rows], ("model", "board", "threads"), ("board", "model", "threads"))


def validation_table(rows: list[dict]) -> str:
    lines = ["| ncnn benchmark model | board | threads | cycle model (ms) | published (ms) | model / published |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['board']} | {r['threads']} | {r['estimated_ms']:.1f} | {r['published_ms']:.2f} "
                     f"| {r['ratio']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validate", action="store_true", help="count ncnn's benchmark models (see above)")
    parser.add_argument("--models", default=",".join(VALIDATION_MODELS))
    parser.add_argument("--boards", default="rpi5,rpi4")
    parser.add_argument("--threads", default="1,4")
    parser.add_argument("--results", type=Path, default=None, help="merge the rows into this JSON file as they come")
    parser.add_argument("--table", type=Path, default=None, help="print a validation file as a markdown table and exit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.table is not None:
        import arm_cost

        arm_cost.print_table(args.table, validation_table, "validation file")
        return
    models, boards = args.models.split(","), args.boards.split(",")
    try:
        thread_counts = [int(v) for v in args.threads.split(",")]
    except ValueError:
        thread_counts = [0]
    problems = ([f"unknown model {m!r}; choose from {', '.join(VALIDATION_MODELS)}" for m in models if m not in VALIDATION_MODELS]
                + [f"no published timings for board {b!r}; choose from {', '.join(PUBLISHED_MS)}" for b in boards if b not in PUBLISHED_MS]
                + ([f"--threads wants 1 and/or 4 (the published counts), got {args.threads!r}"]
                   if not set(thread_counts) <= {1, 4} else [])
                + ([] if args.validate else ["nothing to do: pass --validate or --table"]))
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        sys.exit(2)
    from edgeresnet.errors import EdgeResnetError

    rows = []
    try:
        for row in validate(models, boards, thread_counts):
            rows.append(row)
            if args.results:
                merge_validation(args.results, [row])
    except EdgeResnetError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(validation_table([asdict(r) for r in rows]))


if __name__ == "__main__":
    main()
