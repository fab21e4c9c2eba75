"""ARM speed without a board: a deterministic cycle model of one inference per runtime, model, board and thread count.

    python benchmarks/arm_cost.py [--models resnet18,resnet50,resnet20-fmnist] [--boards rpi5,rpi4]
                                  [--runtimes tvm-int8,ort-int8,ort-fp32,xnnpack-int8] [--threads 1,4] [--json]
                                  [--results benchmarks/results/arm_cost.json]

Wall time under qemu misleads (TCG runs scalar code fast and NEON integer code slowly), so
this counts and weights instead. Each runtime runs under `qemu-aarch64 -cpu <board's core>`
in a fixed environment (`env -i`, no address randomization) with a TCG plugin
(benchmarks/arm_cost/block_counter.c, built once) that counts, per guest thread and per
parallel region, the executions of every translated block of one marked inference (after a
warm-up one), and runs every load and store through a simulated data-cache hierarchy of the
board (the BOARDS table: sizes, ways, sharing, latencies, each with its source). Cycles:
  compute: every executed block weighted by llvm-mca's cycles per iteration on the board's core
           (LLVM 19, unpacked from Debian's packages once): Neoverse-N1 + dotprod for the
           Cortex-A76/A78 boards, Cortex-A72 for the Pi 4 (loads at L1 latency);
  memory:  each load L1 missed, by the level that served it, at that level's latency beyond
           L1's, less what the core hides (HIDDEN_FRACTION; prefetched streams are free);
  threads: the work before the first parallel region, then per region its slowest thread
           (regions start at each call of TVM's TVMBackendParallelLaunch or of pthreadpool's
           pthreadpool_parallelize under XNNPACK; ONNX Runtime names no such entry, so its
           inference is one region: a lower bound); code a thread runs while waiting
           (WAIT_SYMBOLS, spin-hint functions) is left out.
Blocks are named by the symbol of the loaded library they belong to (the guest's
/proc/self/maps, then the library's symbol table).

What the figures are: estimates that rank runtimes and kernels, not board latencies;
branch mispredictions, memory bandwidth, TLBs and instruction fetch are not modelled, and
the milliseconds are the cycles at the board's clock. One thread: the same command twice
gives the same counts. Several threads: the work is the same, the shared caches see the
threads interleaved as the host schedules them (tests/test_arm_cost.py bounds the spread).

Runtimes: `tvm-int8` (our library for the board, the `tvm` quantization scheme),
`ort-int8` (ONNX Runtime's aarch64 build on the model quantized with the `onnxruntime`
scheme), `ort-fp32` (ONNX Runtime on the FP32 model), `xnnpack-int8` (LiteRT's aarch64 build,
XNNPACK delegate, on a full-integer .tflite made by litert-torch from the same FP32 network and
calibration images, checked against FP32 before it is counted: arm_cost/litert_peer.py),
`ncnn-int8` / `ncnn-fp16` (ncnn's aarch64 build, the model converted with ncnn's own tools and
checked the same way; its OpenMP regions open at GOMP_parallel: peer_ncnn.py, set up by
scripts/setup_ncnn.sh). Peers' rows carry `version` and `fp32_cosine` / `fp32_top1_agreement`
of that check. ExecuTorch is not measured: see NOT_MEASURED.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
SUPPORT = HERE / "arm_cost"
sys.path[:0] = [str(HERE), str(SUPPORT)]
import litert_peer  # noqa: E402  (benchmarks/arm_cost/litert_peer.py: the XNNPACK peer)
import peer_ncnn  # noqa: E402  (benchmarks/peer_ncnn.py: the ncnn peer)
PLUGIN_SOURCE = SUPPORT / "block_counter.c"
GUEST_SCRIPT = SUPPORT / "one_inference.py"
CACHE_ENV = "EDGERESNET_ARM_COST_CACHE"
LLVM_PACKAGES = ("llvm-19", "libllvm19")
MCA_ITERATIONS = 100
TOP_KERNELS = 10
NOT_MEASURED = ("ExecuTorch + XNNPACK (executorch 1.5.1 aarch64 wheel): not run; its runtime module "
                "(extension/pybindings/_C) links libtorch, libtorch_cpu and libc10, so the guest would need "
                "an aarch64 torch built for it as well, and the .pte export on the host the x86 executorch "
                "with its own torchao pin; a torch-free C++ runner against the wheel's libexecutorch.so and "
                "libexecutorch_backend_xnnpack.so is the way left (docs/benchmarks.md).")


@dataclass(frozen=True)
class Cache:
    """One data-cache level: size, ways, and whether all cores share it (else one per core)."""
    size_kb: int
    ways: int
    shared: bool
    latency: int  # load-to-use cycles of a load this level serves
    source: str


@dataclass(frozen=True)
class Board:
    name: str
    mca_cpu: str
    mca_attr: str
    clock_ghz: float
    clock_note: str
    cores: int
    caches: tuple[Cache, ...]  # L1D first
    dram_ns: float  # load-to-use of a load DRAM serves
    dram_source: str
    line: int = 64  # bytes; 64 on every core here (each core's TRM)

    def plugin_arguments(self) -> list[str]:
        levels = [f"l1={self.caches[0].size_kb * 1024}:{self.caches[0].ways}"]
        levels += [f"l{n}={c.size_kb * 1024}:{c.ways}:{'shared' if c.shared else 'private'}"
                   for n, c in enumerate(self.caches[1:], start=2)]
        return [f"cores={self.cores}", f"line={self.line}", *levels]

    def stall_cycles(self) -> tuple[float, float, float]:
        """Cycles one load served by L2, L3 and DRAM costs beyond an L1 hit (which llvm-mca already
        counts), before overlap; a board without L3 serves its L2 misses from DRAM."""
        l1 = self.caches[0].latency
        dram = self.dram_ns * self.clock_ghz
        l2 = self.caches[1].latency - l1
        l3 = (self.caches[2].latency - l1) if len(self.caches) > 2 else 0.0
        return l2, l3, dram - l1


# What the core hides, the same rule on every board (a stated assumption, not a measurement):
# a load miss that continues a stream the plugin's prefetcher model has learnt (see
# block_counter.c) costs nothing; any other load miss stalls for the serving level's latency
# beyond L1's, of which out-of-order execution and overlapping misses hide HIDDEN_FRACTION;
# stores cost nothing (store buffer). Bandwidth limits, TLB misses and instruction fetch are not modelled.
HIDDEN_FRACTION = 0.5

A72_TRM = "Arm Cortex-A72 MPCore TRM (100095), L1 data memory system / L2 memory system"
A76_TRM = "Arm Cortex-A76 Core TRM (100798), L1 memory system / L2 memory system"
A78_TRM = "Arm Cortex-A78AE Core TRM (101779), L1 and L2 memory systems"
BOARDS = {
    "rpi5": Board("rpi5", "neoverse-n1", "+dotprod", 2.4, "Raspberry Pi 5, Cortex-A76 at 2.4 GHz", 4, (
        Cache(64, 4, False, 4, f"{A76_TRM}: 64 KB, 4-way, 64-byte lines; 4-cycle load-to-use: Arm Cortex-A76 "
                               "Software Optimization Guide, load latencies"),
        Cache(512, 8, False, 9, "Raspberry Pi 5 product brief / raspberrypi.com documentation (BCM2712): 512 KB "
                                "private L2 per core; 8-way: " + A76_TRM + "; 9-cycle load-to-use: WikiChip, Cortex-A76"),
        Cache(2048, 16, True, 31, "Raspberry Pi documentation (BCM2712): 2 MB shared L3; 16-way: Arm DynamIQ Shared "
                                  "Unit TRM (100453); load-to-use 26-31 cycles, the upper taken: WikiChip, Cortex-A76")),
        110.0, "assumed (no public Pi 5 figure checked): LPDDR4X load-to-use ~110 ns"),
    "rpi4": Board("rpi4", "cortex-a72", "", 1.8, "Raspberry Pi 4, Cortex-A72 at 1.8 GHz", 4, (
        Cache(32, 2, False, 4, f"{A72_TRM}: 32 KB, 2-way, 64-byte lines; 4-cycle load-to-use: Arm Cortex-A72 "
                               "Software Optimization Guide, load latencies"),
        Cache(1024, 16, True, 21, "Raspberry Pi documentation (BCM2711): 1 MB L2 shared by the four cores; 16-way: "
                                  + A72_TRM + "; 21 cycles: assumed (7-cpu.com's Cortex-A72 figure, not re-checked)")),
        120.0, "assumed (no public Pi 4 figure checked): LPDDR4 load-to-use ~120 ns"),
    # LLVM has no Cortex-A78 model; Neoverse-N1 is the A76's server twin, the closest one.
    # Six cores as the jetson-orin-cpu target declares (Orin Nano / NX 6-core); one 2 MB L3 shared
    # by all of them, where the silicon has one per 4-core cluster.
    "jetson-orin-cpu": Board("jetson-orin-cpu", "neoverse-n1", "+dotprod", 2.2, "Jetson AGX Orin, Cortex-A78AE at 2.2 GHz", 6, (
        Cache(64, 4, False, 4, f"{A78_TRM}: 64 KB, 4-way, 64-byte lines; 4 cycles as the A76 (assumed)"),
        Cache(256, 8, False, 9, "NVIDIA Jetson AGX Orin Series Technical Brief: 256 KB L2 per core; 8-way: "
                                f"{A78_TRM}; 9 cycles as the A76 (assumed)"),
        Cache(2048, 16, True, 31, "NVIDIA Jetson AGX Orin Series Technical Brief: 2 MB L3 per CPU cluster; 16-way: "
                                  "Arm DynamIQ Shared Unit TRM; 31 cycles as the A76's DSU (assumed)")),
        120.0, "assumed (no public Orin figure checked): LPDDR5 load-to-use ~120 ns"),
}
RUNTIMES = ("tvm-int8", "ort-int8", "ort-fp32", "xnnpack-int8", "ncnn-int8", "ncnn-fp16")
GUEST_KIND = {"tvm-int8": "tvm", "ort-int8": "onnxruntime", "ort-fp32": "onnxruntime", "xnnpack-int8": "litert",
              "ncnn-int8": "ncnn", "ncnn-fp16": "ncnn"}
MODELS = ("resnet18", "resnet50", "resnet20-fmnist")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cache_folder() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeresnet" / "arm-cost"
    return Path(os.environ.get(CACHE_ENV) or default)


# --- tools: the plugin and LLVM 19, each built or unpacked once ------------------------------

def build_plugin(cache: Path) -> Path:
    from edgeresnet.errors import MissingDependency
    from edgeresnet.processes import die_with_parent

    digest = hashlib.sha256(PLUGIN_SOURCE.read_bytes()).hexdigest()[:12]
    plugin = cache / f"block_counter-{digest}.so"
    if plugin.is_file():
        return plugin
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise MissingDependency("building the qemu block-counting plugin needs gcc: apt-get install gcc")
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".{plugin.name}.{os.getpid()}.partial"  # one per process: builds side by side may race
    try:
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(staging), str(PLUGIN_SOURCE)],
                       check=True, preexec_fn=die_with_parent())
        os.replace(staging, plugin)  # atomic; the builds are identical, so whichever lands last is as good
    finally:
        staging.unlink(missing_ok=True)
    return plugin


class Llvm:
    """llvm-mc, llvm-mca, llvm-nm and llvm-readelf 19 from Debian's packages, unpacked (not installed)."""

    def __init__(self, cache: Path) -> None:
        from edgeresnet.atomic import first_use_lock

        self.root = cache / "llvm-19"
        if not (self.root / ".complete").is_file():
            with first_use_lock(self.root):  # side by side, one unpacks; the others wait and reuse it
                if not (self.root / ".complete").is_file():
                    self._unpack(cache)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "LD_LIBRARY_PATH": f"{self.root}/usr/lib/x86_64-linux-gnu:{self.root}/usr/lib/llvm-19/lib"}

    def _unpack(self, cache: Path) -> None:
        from edgeresnet.errors import MissingDependency

        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise MissingDependency("unpacking LLVM 19 needs apt-get and dpkg-deb (Debian 12)")
        staging = Path(tempfile.mkdtemp(prefix=".llvm-19.", dir=cache))
        try:
            log("unpacking LLVM 19 (llvm-mca) from Debian's packages (once)")
            result = subprocess.run(["apt-get", "download", *LLVM_PACKAGES], cwd=staging, capture_output=True, text=True)
            if result.returncode != 0:
                raise MissingDependency(f"apt-get download {' '.join(LLVM_PACKAGES)} failed (run apt-get update?): "
                                        f"{result.stderr.strip().splitlines()[-1:]}")
            for deb in sorted(staging.glob("*.deb")):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(staging / "root")], check=True)
                deb.unlink()
            (staging / "root" / ".complete").write_text("ok\n")
            if self.root.exists():  # an incomplete one (no mark), which no process uses
                shutil.rmtree(self.root)
            os.replace(staging / "root", self.root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def run(self, tool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.root / "usr/lib/llvm-19/bin" / tool), *args], input=stdin,
                              capture_output=True, text=True, env=self.env)


# --- the models and their per-runtime files -----------------------------------------------------

@dataclass
class ModelFiles:
    name: str
    shape: list[int]
    ort_fp32: Path
    ort_int8: Path
    tvm_int8: dict[str, Path] = field(default_factory=dict)  # board -> model.so
    xnnpack_int8: "litert_peer.LiteRtModel | None" = None
    ncnn: dict = field(default_factory=dict)  # runtime -> peer_ncnn.NcnnModel
    check_ncnn: Callable | None = None  # (NcnnModel, qemu cpu, site, runtime folder, scratch) -> peer_ncnn.Agreement


def prepare_model(name: str, boards: list[str], runtimes: list[str], work: Path) -> ModelFiles:
    """FP32 ONNX, ORT-scheme Q/DQ and the TVM library per board, in a fixed folder (fixed paths keep argv fixed)."""
    from edgeresnet.calibration import Dataset, open_dataset
    from edgeresnet.models import load_model
    from edgeresnet.pipeline.frontend import export_and_quantize
    from edgeresnet.targets import get_quant_scheme, get_target
    from latency import photo_crops

    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    loaded = load_model(name)
    shape = [1, *loaded.preprocessing.input_shape]
    if loaded.entry.weights is not None:
        calibration = open_dataset("fashion-mnist:train", loaded.preprocessing, limit=64, seed=0)
    else:
        calibration = Dataset(photo_crops(shape[-1]), None, "crops of matplotlib's sample photos")
    files = ModelFiles(name, shape, folder / "model.fp32.onnx", folder / "model.ort-int8.onnx")
    if "xnnpack-int8" in runtimes:
        # Checked on the trained model's test images, or on crops the calibration did not see.
        trained = loaded.entry.weights is not None
        check = (open_dataset("fashion-mnist:test", loaded.preprocessing, limit=litert_peer.CHECK_IMAGES["trained"], seed=0)
                 if trained else None)
        files.xnnpack_int8 = litert_peer.make_model(
            loaded, np.concatenate(list(calibration.batches(hash=False))),
            np.concatenate(list(check.batches(hash=False))) if check is not None
            else photo_crops(shape[-1], 32 + litert_peer.CHECK_IMAGES["untrained"])[32:],
            trained, folder, cache_folder(), log)
    log(f"{name}: export and quantize ({len(calibration)} calibration images)")
    ort = export_and_quantize(loaded, calibration, get_quant_scheme("onnxruntime"), progress=False)
    files.ort_fp32.write_bytes(ort.fp32.SerializeToString())
    files.ort_int8.write_bytes(ort.int8.SerializeToString())
    if "tvm-int8" in runtimes:
        from edgeresnet.targets.tvm.backend import llvm_target
        from edgeresnet.targets.tvm.module import compile_integer_module

        tvm_qdq = export_and_quantize(loaded, calibration, get_quant_scheme("tvm"), progress=False).int8
        for board in boards:
            target = get_target(board)
            log(f"{name}: compiling the TVM int8 library for {board}")
            executable, _, _ = compile_integer_module(tvm_qdq, shape, llvm_target(target))
            library = folder / board / "model.so"
            library.parent.mkdir(exist_ok=True)
            executable.export_library(str(library), cc=target.details.cross_compiler)
            files.tvm_int8[board] = library
    if any(r in peer_ncnn.RUNTIMES for r in runtimes):
        images = np.concatenate(list(calibration.batches(hash=False)))
        files.ncnn = peer_ncnn.prepare(loaded, images, runtimes, folder)
        test = peer_ncnn.check_images(loaded, images)
        files.check_ncnn = lambda model, *where: peer_ncnn.check(loaded, model, test, *where)
    return files


# --- counting under qemu ------------------------------------------------------------------------

@dataclass
class Mapping:
    start: int
    end: int
    offset: int
    path: str


def read_maps(text: str) -> list[Mapping]:
    mappings = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 5:
            continue
        start, end = (int(v, 16) for v in parts[0].split("-"))
        mappings.append(Mapping(start, end, int(parts[2], 16), parts[5].strip() if len(parts) > 5 else ""))
    return sorted(mappings, key=lambda m: m.start)


BlockKey = tuple[str, int, str]  # (library path or "", offset in the file or address, instruction bytes hex)
LOADS = ("l2", "l3", "dram")  # the level that served a load L1 missed


@dataclass
class Count:
    """What one guest thread did in one parallel region inside one block."""
    thread: int
    region: int
    block: BlockKey
    executions: int
    served: tuple[int, int, int]  # loads served by L2, L3, DRAM (not prefetched)
    prefetched: tuple[int, int, int]  # the same, arriving through a prefetched stream


def count_inference(plugin: Path, runtime_folder: Path, peer_sites: list[Path], board: Board, qemu_cpu: str, kind: str,
                    model: Path, shape: list[int], threads: int, scratch: Path, guest_args: tuple[str, ...] = (),
                    sysroot: Path | None = None) -> list[Count]:
    from edgeresnet.processes import die_with_parent
    from edgeresnet.targets.tvm.emulation import qemu_binary

    counts_file, maps_file = scratch / "counts.txt", scratch / "maps.txt"
    sysroot = sysroot or runtime_folder / "sysroot"
    # Everything the guest sees is fixed: one extra variable moves counts by ~0.4%. Idle TVM
    # workers sleep instead of spinning: spinning is not work (left out below) and slows qemu.
    env = {"PYTHONPATH": ":".join(str(p) for p in [*peer_sites, runtime_folder / "site"]), "TVM_USE_RUNTIME_LIB": "1", "PYTHONNOUSERSITE": "1",
           "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "TVM_NUM_THREADS": str(threads),
           "TVM_THREAD_POOL_SPIN_COUNT": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "LC_ALL": "C"}
    if kind in peer_ncnn.RUNTIMES:
        env.update(peer_ncnn.GUEST_ENVIRONMENT)
    plugin_arguments = ",".join([str(plugin), f"out={counts_file}", *board.plugin_arguments()])
    command = [qemu_binary(), "-cpu", qemu_cpu, "-L", str(sysroot), "-plugin", plugin_arguments,
               str(sysroot / "usr/bin/python3.11"), str(GUEST_SCRIPT), GUEST_KIND[kind],
               str(model), json.dumps(shape), str(threads), str(maps_file), *guest_args]
    if shutil.which("setarch"):
        command = ["setarch", os.uname().machine, "--addr-no-randomize", *command]
    result = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *command], capture_output=True, text=True,
                            preexec_fn=die_with_parent())
    if result.returncode != 0 or not maps_file.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{kind} under qemu -cpu {qemu_cpu} failed ({result.returncode}): {' | '.join(tail)}")
    mappings = read_maps(maps_file.read_text())
    starts = [m.start for m in mappings]
    blocks: dict[str, BlockKey] = {}
    counts = []
    with counts_file.open() as lines:
        for line in lines:
            fields = line.split()
            if fields[0] == "B":
                vaddr, code = int(fields[2], 16), fields[3]
                i = bisect.bisect_right(starts, vaddr) - 1
                if i >= 0 and vaddr < mappings[i].end and mappings[i].path.startswith("/"):
                    m = mappings[i]
                    blocks[fields[1]] = (m.path, vaddr - m.start + m.offset, code)
                else:
                    blocks[fields[1]] = ("", vaddr, code)
            else:
                n = [int(v) for v in fields[4:]]
                counts.append(Count(int(fields[1]), int(fields[2]), blocks[fields[3]], n[0], tuple(n[1:4]), tuple(n[4:7])))
    counts_file.unlink()
    maps_file.unlink()
    return counts


# --- weighting: llvm-mca cycles per block -------------------------------------------------------

WORD = re.compile(r"^\s*(.*?)\s*// encoding: \[0x(..),0x(..),0x(..),0x(..)\]")


def disassemble(llvm: Llvm, words: set[str]) -> dict[str, str]:
    """Little-endian instruction words (hex as in memory) -> assembly text; undecodable words become nop."""
    ordered = sorted(words)
    text = "\n".join(" ".join(f"0x{w[i:i + 2]}" for i in range(0, 8, 2)) for w in ordered)
    result = llvm.run("llvm-mc", "--disassemble", "-triple=aarch64", "-show-encoding",
                      "-mattr=+v8.4a,+dotprod,+fullfp16,+rcpc,+aes,+sha2,+crc,+lse", stdin=text)
    assembly = {}
    for line in result.stdout.splitlines():
        match = WORD.match(line)
        if match:
            assembly["".join(match.groups()[1:])] = match.group(1)
    return {w: assembly.get(w, "nop") for w in ordered}


REGION = re.compile(r"\[\d+\] Code Region - b(\d+)\s+Iterations:\s+(\d+)\s+Instructions:\s+\d+\s+Total Cycles:\s+(\d+)")
UNSUPPORTED = re.compile(r":(\d+):\d+: error")


def block_cycles(llvm: Llvm, board: Board, blocks: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Instruction bytes (hex) -> llvm-mca cycles per iteration of that block on the board's core,
    and instruction word -> its assembly."""
    words = {b[i:i + 8] for b in blocks for i in range(0, len(b), 8)}
    assembly = disassemble(llvm, words)
    lines: list[str] = []
    for n, block in enumerate(blocks):
        lines.append(f"# LLVM-MCA-BEGIN b{n}")
        lines += [assembly[block[i:i + 8]] for i in range(0, len(block), 8)]
        lines.append(f"# LLVM-MCA-END b{n}")
    args = ["-mtriple=aarch64", f"-mcpu={board.mca_cpu}", f"-iterations={MCA_ITERATIONS}", "-instruction-info=0",
            "-resource-pressure=0", "-skip-unsupported-instructions=any"]
    if board.mca_attr:
        args.append(f"-mattr={board.mca_attr}")
    for _ in range(50):  # an instruction the core's model rejects becomes a nop, then mca runs again
        with tempfile.NamedTemporaryFile("w", suffix=".s") as source:
            source.write("\n".join(lines) + "\n")
            source.flush()
            result = llvm.run("llvm-mca", *args, source.name)
        bad = {int(n) - 1 for n in UNSUPPORTED.findall(result.stderr)}
        if result.returncode == 0 or not bad:
            break
        for n in bad:
            lines[n] = "nop"
    if result.returncode != 0:
        raise RuntimeError(f"llvm-mca failed: {result.stderr.strip().splitlines()[-1:]}")
    cycles = {}
    for match in REGION.finditer(result.stdout):
        cycles[blocks[int(match.group(1))]] = int(match.group(3)) / int(match.group(2))
    missing = len(blocks) - len(cycles)
    if missing:
        raise RuntimeError(f"llvm-mca reported no cycles for {missing} of {len(blocks)} blocks")
    return cycles, assembly


# --- naming: block -> symbol of the library it lies in ------------------------------------------

class Symbols:
    """Names code by the library's symbol table; in a stripped library (ONNX Runtime's), by the
    function ranges of its unwind table (`fn@ADDRESS`) or, for code without unwind entries such as
    hand-written assembly kernels, by the gap between two such ranges (`asm@ADDRESS`)."""

    def __init__(self, llvm: Llvm) -> None:
        self.llvm = llvm
        self.tables: dict[str, tuple] = {}

    def _symbols(self, path: str, dynamic: bool) -> dict[int, tuple[int, str]]:
        symbols = {}
        out = self.llvm.run("llvm-nm", *(["-D"] if dynamic else []), "--defined-only", "-C", "-S", "--format=posix", path).stdout
        for line in out.splitlines():
            parts = line.rsplit(maxsplit=3)
            if len(parts) == 4 and parts[1] in ("t", "T", "w", "W"):
                symbols.setdefault(int(parts[2], 16), (int(parts[3], 16), parts[0].split("@")[0]))
        return symbols

    def _load(self, path: str):
        if path in self.tables:
            return self.tables[path]
        segments = []
        for line in self.llvm.run("llvm-readelf", "-lW", path).stdout.splitlines():
            parts = line.split()
            if parts[:1] == ["LOAD"]:
                segments.append((int(parts[1], 16), int(parts[2], 16), int(parts[4], 16)))
        symbols = self._symbols(path, dynamic=False)
        stripped = not symbols
        symbols.update({a: s for a, s in self._symbols(path, dynamic=True).items() if a not in symbols})
        functions = []
        if stripped:
            out = self.llvm.run("llvm-dwarfdump", "--eh-frame", path).stdout
            functions = sorted({(int(a, 16), int(b, 16)) for a, b in re.findall(r"FDE cie=\w+ pc=(\w+)\.\.\.(\w+)", out)})
        addresses = sorted(symbols)
        table = (segments, addresses, [symbols[a] for a in addresses], stripped, functions)
        self.tables[path] = table
        return table

    def name(self, path: str, offset: int) -> str:
        if not path:
            return "[anonymous memory]"
        library = os.path.basename(path)
        segments, addresses, entries, stripped, functions = self._load(path)
        vaddr = next((offset - o + v for o, v, size in segments if o <= offset < o + size), offset)
        i = bisect.bisect_right(addresses, vaddr) - 1
        if i >= 0:
            size, symbol = entries[i]
            if vaddr < addresses[i] + size:
                return f"{library}:{symbol[:110]}"
            if not stripped:  # code the compiler left unnamed (e.g. TVM's parallel lambdas) follows its parent
                return f"{library}:{symbol[:110]} (+ unnamed code after it)"
        j = bisect.bisect_right(functions, (vaddr, float("inf"))) - 1
        if j >= 0 and vaddr < functions[j][1]:
            return f"{library}:fn@{functions[j][0]:#x} (stripped)"
        gap = functions[j][1] if j >= 0 else 0
        return f"{library}:asm@{gap:#x} (stripped, no unwind info)"


# --- the whole measurement ----------------------------------------------------------------------

# Waiting is not work: code a thread runs while it waits for others is left out of every count.
# Recognised by symbol: the C library's blocking and yielding calls, TVM's thread-pool queue and
# join, pthreadpool's worker loop and the caller's wait in pthreadpool_parallelize (XNNPACK: both
# spin with `yield`, then sleep on a futex), and any function that executes a spin-wait hint
# (yield, wfe, isb: how ONNX Runtime's stripped thread pool and other spin loops pause).
WAIT_SYMBOLS = re.compile(r"futex|sched_yield|pthread_cond_(timed)?wait|lll_lock_wait|nanosleep|__pthread_clockjoin"
                          r"|SpscTaskQueue|WaitForJobs|ThreadPool::RunWorker|ParallelLauncher::WaitForJobs"
                          r"|:thread_main$|:pthreadpool_parallelize$"
                          r"|libgomp[^:]*:(GOMP_barrier|gomp_(team_)?barrier_wait|gomp_sem_wait|gomp_mutex_lock_slow|do_spin|do_wait)")
SPIN_HINTS = {"yield", "wfe", "isb"}


@dataclass
class Cost:
    """One inference of one model by one runtime on one board with `threads` threads.

    compute_cycles + memory_cycles = cycles, the estimated wall cycles: the work before the first
    parallel region, then per region its slowest thread's (compute and memory split as that
    thread's). A runtime without a known launch entry (ONNX Runtime) is one region, so its cycles
    are its slowest thread's whole work, a lower bound; slowest_thread_cycles gives that bound for
    every runtime, to compare like with like. instructions and the misses are all threads' work."""
    model: str
    board: str
    runtime: str
    threads: int
    version: str
    instructions: int
    compute_cycles: int
    memory_cycles: int
    cycles: int
    estimated_ms: float
    work_cycles_all_threads: int
    slowest_thread_cycles: int  # one thread's work over the whole inference: a lower bound of `cycles`
    parallel_regions: int  # 0: the runtime names no launch entry, so `cycles` = slowest_thread_cycles
    wait_instructions_excluded: int
    load_misses: dict[str, int]  # loads that missed L1, L2, L3 (the last one: served by DRAM)
    prefetched_share: float  # of the loads that missed L1, those a prefetched stream served
    ratio_vs_ort_int8: float | None = None
    ratio_vs_ort_fp32: float | None = None
    fp32_cosine: float | None = None  # peers: mean logit cosine similarity with FP32 on their check images
    fp32_top1_agreement: float | None = None  # peers: top-1 agreement with FP32 on the same images
    top_kernels: list[dict] = field(default_factory=list)


def top_instructions(mix: Counter, count: int = 4) -> str:
    """The most executed mnemonics of a kernel with their share: tells a stripped kernel's kind (sdot, fmla...)."""
    total = sum(mix.values())
    ranked = sorted(mix.items(), key=lambda item: (-item[1], item[0]))[:count]  # ties by name: same text every run
    return ", ".join(f"{name} {n / total:.0%}" for name, n in ranked) if total > 0 else ""


def misses_by_level(board: Board, served: list[int]) -> dict[str, int]:
    """Loads served by L2, L3, DRAM -> loads that missed L1, L2 (and L3 where the board has one)."""
    l2, l3, dram = served
    misses = {"l1": l2 + l3 + dram, "l2": l3 + dram}
    if len(board.caches) > 2:
        misses["l3"] = dram
    return misses


def runtime_version(runtime: str) -> str:
    from edgeresnet.targets.tvm.emulation import TVM_VERSION
    from emulated_arm import ORT_AARCH64

    if runtime in peer_ncnn.RUNTIMES:
        return peer_ncnn.VERSION
    return f"apache-tvm {TVM_VERSION}" if runtime == "tvm-int8" else ORT_AARCH64.replace("==", " ")


def cost_of(model: str, board: Board, runtime: str, threads: int, counts: list[Count], symbols: "Symbols",
            cycles_of: dict[str, float], assembly: dict[str, str]) -> Cost:
    per_load = [cycles * (1 - HIDDEN_FRACTION) for cycles in board.stall_cycles()]
    names = {c.block: symbols.name(c.block[0], c.block[1]) for c in counts}
    words = {code: [assembly[code[i:i + 8]].split()[0] for i in range(0, len(code), 8)] for code in {c.block[2] for c in counts}}
    spinning = {names[c.block] for c in counts if SPIN_HINTS & set(words[c.block[2]])}
    waiting = {name for name in set(names.values()) if name in spinning or WAIT_SYMBOLS.search(name)}
    # per (region, thread): [compute, memory]; a fixed order so that float sums repeat exactly
    work: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    kernels: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0, 0])  # cycles, loads served by L2, L3, DRAM
    mixes: dict[str, Counter] = defaultdict(Counter)
    instructions = waited = 0
    served, prefetched = [0, 0, 0], 0
    for c in sorted(counts, key=lambda c: (c.region, c.thread, c.block)):
        length = len(c.block[2]) // 8
        name = names[c.block]
        if name in waiting:
            waited += c.executions * length
            continue
        instructions += c.executions * length
        compute = c.executions * cycles_of[c.block[2]]
        memory = sum(n * cycles for n, cycles in zip(c.served, per_load))
        slot = work[(c.region, c.thread)]
        slot[0] += compute
        slot[1] += memory
        kernel = kernels[name]
        kernel[0] += compute + memory
        for level in range(3):
            kernel[1 + level] += c.served[level] + c.prefetched[level]
            served[level] += c.served[level] + c.prefetched[level]
        prefetched += sum(c.prefetched)
        for mnemonic in words[c.block[2]]:
            mixes[name][mnemonic] += c.executions
    # Whole cycles per thread and region, so that every sum below (cycles, all threads, per thread) adds exactly.
    whole = {key: (round(w[0]), round(w[1])) for key, w in work.items()}
    compute = memory = 0
    regions = sorted({region for region, _ in whole})
    for region in regions:
        slowest = max((sum(w), thread) for (r, thread), w in whole.items() if r == region)
        compute += whole[(region, slowest[1])][0]
        memory += whole[(region, slowest[1])][1]
    total = compute + memory
    all_threads = sum(sum(w) for w in whole.values())
    per_thread: dict[int, int] = defaultdict(int)
    for (region, thread), w in sorted(whole.items()):
        per_thread[thread] += sum(w)
    top = sorted(kernels.items(), key=lambda item: (-item[1][0], item[0]))[:TOP_KERNELS]
    return Cost(model, board.name, runtime, threads, runtime_version(runtime), round(instructions), round(compute),
                round(memory), round(total), round(total / (board.clock_ghz * 1e6), 2), round(all_threads),
                round(max(per_thread.values(), default=0.0)),
                max(len(regions) - 1, 0), waited, misses_by_level(board, served),
                round(prefetched / max(sum(served), 1), 4),
                top_kernels=[{"kernel": k, "cycles": round(v[0]), "share": round(v[0] / max(all_threads, 1), 4),
                              "load_misses": misses_by_level(board, [int(x) for x in v[1:4]]),
                              "top_instructions": top_instructions(mixes[k])} for k, v in top])


def measure(models: list[str], boards: list[str], runtimes: list[str], thread_counts: list[int] | None):
    """Yields the costs of each model and board as soon as they are counted."""
    from edgeresnet.targets import get_target
    from edgeresnet.targets.tvm.emulation import build_runtime
    from emulated_arm import ort_aarch64_site

    cache = cache_folder()
    plugin = build_plugin(cache)
    llvm = Llvm(cache)
    runtime_folder = build_runtime(log=log)
    # Each runtime's guest sees its own wheel only: a longer PYTHONPATH moves the guest's stack, and counts with it.
    peer_sites = {"ort-int8": [ort_aarch64_site(runtime_folder.parent)]}
    peer_sites["ort-fp32"] = peer_sites["ort-int8"]
    guest_args: dict[str, tuple[str, ...]] = {}
    if "xnnpack-int8" in runtimes:
        peer_sites["xnnpack-int8"] = [litert_peer.litert_aarch64_site(runtime_folder.parent)]
        guest_args["xnnpack-int8"] = (str(litert_peer.launch_offset(llvm, peer_sites["xnnpack-int8"][0])),)
    for runtime in set(runtimes) & set(peer_ncnn.RUNTIMES):
        peer_sites[runtime] = [peer_ncnn.aarch64_site(runtime_folder.parent)]
    symbols = Symbols(llvm)
    work = cache / "work"
    for model_name in models:
        files = prepare_model(model_name, boards, runtimes, work)
        for board_name in boards:
            board, target = BOARDS[board_name], get_target(board_name)
            counted: dict[tuple[str, int], list[Count]] = {}
            sysroots = {}
            if "xnnpack-int8" in runtimes:
                sysroots["xnnpack-int8"] = litert_peer.guest_sysroot(runtime_folder, board_name, board.cores)
            agreements = {}
            for runtime in runtimes:
                model_file = {"tvm-int8": files.tvm_int8.get(board_name), "ort-int8": files.ort_int8,
                              "ort-fp32": files.ort_fp32,
                              "xnnpack-int8": files.xnnpack_int8 and files.xnnpack_int8.path}.get(runtime)
                if runtime in files.ncnn:
                    model_file = files.ncnn[runtime].param
                    log(f"{model_name} / {board_name} / {runtime}: checking the conversion against FP32")
                    agreements[runtime] = files.check_ncnn(files.ncnn[runtime], target.details.qemu_cpu,
                                                           peer_sites[runtime][0], runtime_folder,
                                                           work / model_name / board_name)
                for threads in thread_counts or [target.details.threads]:
                    log(f"{model_name} / {board_name} / {runtime} / {threads} thread(s): counting under qemu "
                        f"-cpu {target.details.qemu_cpu}")
                    # A fixed folder, not a random temporary one: the guest's argv (and so its stack
                    # addresses) must be the same from one invocation to the next.
                    scratch = work / model_name / board_name / runtime / str(threads)
                    scratch.mkdir(parents=True, exist_ok=True)
                    counted[(runtime, threads)] = count_inference(plugin, runtime_folder, peer_sites.get(runtime, peer_sites["ort-int8"]), board,
                                                                  target.details.qemu_cpu, runtime, model_file,
                                                                  files.shape, threads, scratch, guest_args.get(runtime, ()),
                                                                  sysroots.get(runtime))
            unique = sorted({c.block[2] for counts in counted.values() for c in counts})
            log(f"{model_name} / {board_name}: llvm-mca ({board.mca_cpu}) on {len(unique)} blocks")
            cycles_of, assembly = block_cycles(llvm, board, unique)
            group = [cost_of(model_name, board, runtime, threads, counts, symbols, cycles_of, assembly)
                     for (runtime, threads), counts in counted.items()]
            for cost in group:
                if cost.runtime == "xnnpack-int8":
                    cost.version = files.xnnpack_int8.version
                    cost.fp32_cosine = files.xnnpack_int8.fp32_cosine
                    cost.fp32_top1_agreement = files.xnnpack_int8.fp32_top1_agreement
                if cost.runtime in agreements:
                    cost.fp32_cosine = agreements[cost.runtime].fp32_cosine
                    cost.fp32_top1_agreement = agreements[cost.runtime].fp32_top1_agreement
                cost.ratio_vs_ort_int8, cost.ratio_vs_ort_fp32 = ort_ratios(
                    cost.cycles, {c.runtime: c.cycles for c in group if c.threads == cost.threads})
            yield from group


def merge_rows(path: Path, fresh: list[dict], key: tuple[str, ...], order: tuple[str, ...],
               finish: Callable[[list[dict]], None] | None = None) -> None:
    """Adds rows to a JSON list file, replacing any row with the same values of `key`, sorted by `order`;
    `finish` may then update the merged rows in place."""
    rows = json.loads(path.read_text()) if path.is_file() else []
    taken = {tuple(r[k] for k in key) for r in fresh}
    rows = [r for r in rows if tuple(r[k] for k in key) not in taken] + fresh
    rows.sort(key=lambda r: tuple(r[k] for k in order))
    if finish is not None:
        finish(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(rows, indent=1) + "\n")
    os.replace(staging, path)


def ort_ratios(cycles: int, beside: dict[str, int]) -> tuple[float | None, float | None]:
    """`cycles` against ONNX Runtime INT8's and FP32's (`beside`: runtime -> cycles of the same model,
    board and threads); None where that runtime was not counted."""
    int8, fp32 = (round(cycles / beside[peer], 3) if beside.get(peer) else None for peer in ("ort-int8", "ort-fp32"))
    return int8, fp32


def set_ratios(rows: list[dict]) -> None:
    """Each row's ratios to the ONNX Runtime rows of the same model, board and threads in the same file,
    so that a row counted alone (one runtime re-counted) is compared with the peers it is shown beside."""
    beside: dict[tuple, dict[str, int]] = defaultdict(dict)
    for r in rows:
        beside[(r["model"], r["board"], r["threads"])][r["runtime"]] = r["cycles"]
    for row in rows:
        row["ratio_vs_ort_int8"], row["ratio_vs_ort_fp32"] = ort_ratios(
            row["cycles"], beside[(row["model"], row["board"], row["threads"])])


def merge_results(path: Path, costs: list[Cost]) -> None:
    """Adds rows to the results file, replacing any row of the same model, board, runtime and threads."""
    merge_rows(path, [asdict(c) for c in costs], ("model", "board", "runtime", "threads"),
               ("model", "board", "threads", "runtime"), set_ratios)


def print_table(path: Path, render: Callable[[list[dict]], str], what: str) -> None:
    """Prints a results file through `render`; exit 2 when it is not such a file."""
    try:
        print(render(json.loads(path.read_text())))
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"error: {path} is not a {what}: {error}", file=sys.stderr)
        sys.exit(2)


def markdown_table(rows: list[dict]) -> str:
    """The results file as the table docs/benchmarks.md shows: one line per model, board, threads and runtime."""
    lines = ["| model | board | threads | runtime | compute M | memory M | cycles M (~ms) | L1 / L2 / L3 load misses (k) "
             "| x ORT INT8 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        misses = " / ".join(f"{r['load_misses'][level] / 1e3:.0f}" for level in ("l1", "l2", "l3") if level in r["load_misses"])
        bound = " (bound)" if r["threads"] > 1 and not r["parallel_regions"] else ""
        ratio = f"{r['ratio_vs_ort_int8']:.2f}" if r.get("ratio_vs_ort_int8") else ""
        lines.append(f"| {r['model']} | {r['board']} | {r['threads']} | {r['runtime']} | {r['compute_cycles'] / 1e6:.2f} "
                     f"| {r['memory_cycles'] / 1e6:.2f} | {r['cycles'] / 1e6:.2f}{bound} (~{r['estimated_ms']:.1f}) "
                     f"| {misses} | {ratio} |")
    return "\n".join(lines)


INT8_PEERS = ("ort-int8", "ncnn-int8", "xnnpack-int8")


def peers_table(rows: list[dict], models: list[str] | None = None) -> str:
    """Our library against the fastest INT8 peer counted for the same model, board and threads (README's table).
    ONNX Runtime's multi-thread rows are lower bounds, so a ratio against one is marked."""
    lines = ["| model | board | threads | tvm-int8 cycles M | fastest INT8 peer | its cycles M | ratio |",
             "|---|---|---|---|---|---|---|"]
    ours = {(r["model"], r["board"], r["threads"]): r for r in rows
            if r["runtime"] == "tvm-int8" and (models is None or r["model"] in models)}
    for key, tvm in sorted(ours.items()):
        peers = [r for r in rows if (r["model"], r["board"], r["threads"]) == key and r["runtime"] in INT8_PEERS]
        if not peers:
            continue
        fastest = min(peers, key=lambda r: r["cycles"])
        bound = " (a bound)" if fastest["threads"] > 1 and not fastest["parallel_regions"] else ""
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {tvm['cycles'] / 1e6:.2f} | {fastest['runtime']}{bound} "
                     f"| {fastest['cycles'] / 1e6:.2f} | {tvm['cycles'] / fastest['cycles']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--boards", default="rpi5,rpi4")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--threads", default=None, help="comma-separated thread counts (default: the board's cores)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--table", type=Path, default=None, help="print a results file as a markdown table and exit")
    parser.add_argument("--peers-table", type=Path, default=None,
                        help="print a results file's tvm-int8 rows of --models against the fastest INT8 peer and exit")
    parser.add_argument("--results", type=Path, default=None,
                        help="also merge the rows into this JSON file (e.g. benchmarks/results/arm_cost.json) as each "
                             "model and board is counted")
    args = parser.parse_args()
    renderers = ((args.table, markdown_table), (args.peers_table, partial(peers_table, models=args.models.split(","))))
    for path, render in renderers:
        if path is not None:
            print_table(path, render, "results file")
            return
    models, boards, runtimes = (value.split(",") for value in (args.models, args.boards, args.runtimes))
    for value, allowed, what in ((boards, BOARDS, "board"), (runtimes, RUNTIMES, "runtime")):
        unknown = [v for v in value if v not in allowed]
        if unknown:
            print(f"error: unknown {what} {unknown[0]!r}; choose from {', '.join(allowed)}", file=sys.stderr)
            sys.exit(2)
    thread_counts = None
    if args.threads is not None:
        try:
            thread_counts = [int(v) for v in args.threads.split(",")]
        except ValueError:
            thread_counts = [0]
        if min(thread_counts) < 1:
            print(f"error: --threads wants positive whole numbers, got {args.threads!r}", file=sys.stderr)
            sys.exit(2)
    from edgeresnet.errors import EdgeResnetError
    from edgeresnet.models import get_entry

    try:
        for model in models:  # before any of the minutes of counting
            get_entry(model)
        costs = []
        for cost in measure(models, boards, runtimes, thread_counts):
            costs.append(cost)
            if args.results:
                merge_results(args.results, [cost])
    except EdgeResnetError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    if args.json:
        print(json.dumps({"costs": [asdict(c) for c in costs], "mca_iterations": MCA_ITERATIONS,
                          "hidden_fraction": HIDDEN_FRACTION,
                          "boards": {b: asdict(BOARDS[b]) for b in boards}, "not_measured": [NOT_MEASURED],
                          "note": "cycles = llvm-mca's core model + a simulated data-cache hierarchy; wall cycles "
                                  "over threads as serial work + per parallel region its slowest thread: ranks "
                                  "runtimes, not a board latency"}, indent=2))
        return
    print("one inference, batch 1; cycles = llvm-mca model of the core + simulated data caches (branch misses, "
          "bandwidth and TLBs ignored); over threads: serial + slowest thread per parallel region; "
          "ms = cycles at the board's clock, an estimate, not a measurement")
    for c in costs:
        ratios = "  ".join(f"x {name} {value:.2f}" for name, value in (("ORT INT8", c.ratio_vs_ort_int8),
                                                                      ("ORT FP32", c.ratio_vs_ort_fp32)) if value)
        print(f"\n{c.model:16s} {c.board:16s} {c.runtime:9s} {c.threads}T {c.instructions / 1e6:9.1f} M instr  "
              f"{c.compute_cycles / 1e6:8.1f} + {c.memory_cycles / 1e6:7.1f} = {c.cycles / 1e6:8.1f} M cycles  "
              f"~{c.estimated_ms:8.2f} ms  {ratios}")
        for k in c.top_kernels:
            print(f"    {k['share'] * 100:5.1f}%  {k['cycles'] / 1e6:9.2f} M  {k['kernel']}  [{k['top_instructions']}]  "
                  f"misses {k['load_misses']}")
    print(f"\nnot measured: {NOT_MEASURED}")


if __name__ == "__main__":
    main()
