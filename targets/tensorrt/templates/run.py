#!/usr/bin/env python3
"""Run this bundle's TensorRT engine on images or a .npy array, with the model's own preprocessing.

    python3 run.py --images DIR | --npy FILE [--dla N] [--warmup 10] [--json] [--device-dir DIR]
    python3 run.py --check [--images LABELLED_DIR] [--dla N] [--report FILE] [--device-dir DIR]

--check runs the golden vectors in golden/ on the engine, compares with the host's
logits (device_check.py), writes device-report.json into the device folder
(<bundle>.device beside the bundle, or --device-dir; --report names another file)
and exits 1 when the engine drifts past the budget. The engine's build record
(beside it) says which DLA core it was built for; the runtime is set to that core
before the engine is deserialized, and the device report states it.

A folder with one sub-folder per class (named as the model's classes, the
name made folder-safe like T-shirt_top, or the class index) also gives top-1
accuracy. latency_ms is end to end (host copies and Python included);
engine_latency_ms is the engine alone (CUDA events around the enqueue). The
engine is built first when missing, and rebuilt when the cached one cannot be
deserialized (another TensorRT or device).
Needs: tensorrt (JetPack), numpy, Pillow for images. CUDA is reached through libcudart with ctypes.
Exit codes: 0 ok, 1 drifted past the budget, 2 bad input, 3 missing TensorRT, numpy or CUDA.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ in the artifact: `edgeresnet verify` refuses unlisted files
EXIT_MISSING = 3

try:
    import numpy as np

    import build_engine
    from device_check import REPORT_FILE, add_check_arguments, require_inputs, run_check
    from device_io import add_device_dir_argument, add_input_arguments, load_inputs, report_destination, run_and_report
    from preprocessing import Preprocessing
except ImportError as exc:
    sys.stderr.write(f"run.py: the {exc.name} Python package is missing (JetPack: apt install python3-numpy)\n")
    sys.exit(EXIT_MISSING)

_H2D, _D2H = 1, 2


# JetPack keeps libcudart outside the loader's default path: /usr/local/cuda/lib64 is a link to
# /usr/local/cuda/targets/aarch64-linux/lib in the CUDA toolkit layout; look in both.
CUDA_LIBRARY_DIRS = ("", "/usr/local/cuda/lib64/", "/usr/local/cuda/targets/aarch64-linux/lib/")
CUDART_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")


class _Cuda:
    def __init__(self):
        for path in (folder + name for folder in CUDA_LIBRARY_DIRS for name in CUDART_NAMES):
            try:
                self.lib = ctypes.CDLL(path)
                break
            except OSError:
                continue
        else:
            sys.stderr.write("run.py: libcudart not found (looked in the loader path, /usr/local/cuda/lib64 and "
                             "/usr/local/cuda/targets/aarch64-linux/lib); is CUDA (JetPack) installed?\n")
            raise SystemExit(EXIT_MISSING)
        self.stream = ctypes.c_void_p()
        status = self.lib.cudaStreamCreate(ctypes.byref(self.stream))
        if status != 0:  # e.g. 35, cudaErrorInsufficientDriver: a CUDA runtime without a GPU and driver under it
            sys.stderr.write(f"run.py: CUDA has no usable GPU here (cudaStreamCreate failed with CUDA error {status})\n")
            raise SystemExit(EXIT_MISSING)
        self.lib.cudaEventElapsedTime.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_void_p]

    def event(self) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        self._check(self.lib.cudaEventCreate(ctypes.byref(handle)), "cudaEventCreate")
        return handle

    def record(self, event: ctypes.c_void_p) -> None:
        self._check(self.lib.cudaEventRecord(event, self.stream), "cudaEventRecord")

    def elapsed_ms(self, start: ctypes.c_void_p, stop: ctypes.c_void_p) -> float:
        milliseconds = ctypes.c_float()
        self._check(self.lib.cudaEventElapsedTime(ctypes.byref(milliseconds), start, stop), "cudaEventElapsedTime")
        return milliseconds.value

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed with CUDA error {status}")

    def malloc(self, nbytes: int) -> int:
        pointer = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(nbytes)), "cudaMalloc")
        if not pointer.value:
            raise RuntimeError("cudaMalloc returned a null pointer")
        return pointer.value

    def copy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        self._check(self.lib.cudaMemcpy(ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes), kind), "cudaMemcpy")

    def synchronize(self) -> None:
        self._check(self.lib.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")


class Engine:
    """A deserialized engine with its device buffers; the tensor-name API of TensorRT 8.5 and newer."""

    def __init__(self, path: Path, record: dict):
        import tensorrt as trt

        self.trt, self.path, self.record = trt, path, record
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        if record.get("dla_core") is not None:
            # IRuntime's DLA core defaults to -1: set it before deserializing, or a DLA engine may run on another core.
            self.runtime.DLA_core = record["dla_core"]
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ValueError(f"{path} cannot be deserialized by TensorRT {trt.__version__} on this device")
        self.context = self.engine.create_execution_context()
        self.cuda = _Cuda()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.buffers: dict[str, tuple[int, int]] = {}

    @property
    def dla_core(self) -> int | None:
        """The DLA core the runtime runs the engine on (None: the GPU)."""
        return self.runtime.DLA_core if self.record.get("dla_core") is not None else None

    @property
    def label(self) -> str:
        where = f"DLA core {self.dla_core}" if self.dla_core is not None else "GPU"
        return f"tensorrt {self.trt.__version__} {where} ({self.record['precision']})"

    def facts(self) -> dict:
        """The runtime facts a device report records (device_check.device_facts adds the board's)."""
        return {"tensorrt": self.trt.__version__, "precision": self.record["precision"], "route": self.record["route"],
                "dla_core": self.dla_core, "engine": self.path.name, "build_record": build_engine.build_record_path(self.path).name,
                "l4t": build_engine.l4t_version(), "module": build_engine.jetson_model()}

    def _buffer(self, name: str, nbytes: int) -> int:
        if name not in self.buffers or self.buffers[name][1] < nbytes:
            self.buffers[name] = (self.cuda.malloc(nbytes), nbytes)
        return self.buffers[name][0]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.context.set_input_shape(self.input, batch.shape)
        out_shape = tuple(self.context.get_tensor_shape(self.output))
        logits = np.empty(out_shape, np.float32)
        d_in, d_out = self._buffer(self.input, batch.nbytes), self._buffer(self.output, logits.nbytes)
        self.cuda.copy(d_in, batch.ctypes.data, batch.nbytes, _H2D)
        self.context.set_tensor_address(self.input, d_in)
        self.context.set_tensor_address(self.output, d_out)
        # Engine time alone: CUDA events on the stream around the enqueue, without host copies or Python.
        if not hasattr(self, "_events"):
            self._events, self.engine_ms = (self.cuda.event(), self.cuda.event()), []
        self.cuda.record(self._events[0])
        if not self.context.execute_async_v3(self.cuda.stream.value or 0):
            raise RuntimeError("TensorRT execution failed")
        self.cuda.record(self._events[1])
        self.cuda.synchronize()
        self.engine_ms.append(self.cuda.elapsed_ms(*self._events))
        self.cuda.copy(logits.ctypes.data, d_out, logits.nbytes, _D2H)
        return logits

    def engine_latency(self, skip: int = 0) -> dict:
        """Percentiles of the engine-only time (CUDA events), after the first `skip` (warm-up) runs."""
        times = np.array(self.engine_ms[skip:])
        return {"engine_latency_ms": {p: float(np.percentile(times, int(p[1:]))) for p in ("p50", "p90", "p99")}} if times.size else {}


def load_engine(dla_core: int | None = None, device_dir: str | Path | None = None) -> Engine:
    """The cached engine with its build record, built first when either is missing, rebuilt when it cannot be loaded."""
    try:
        import tensorrt as trt
    except ImportError:
        sys.stderr.write("run.py: the tensorrt Python package is missing (JetPack: apt install python3-libnvinfer)\n")
        raise SystemExit(EXIT_MISSING) from None

    config = build_engine.load_config()
    path = build_engine.engine_path(trt.__version__, config, dla_core, device_dir=device_dir)
    record = build_engine.read_build_record(path)
    if not path.is_file() or record is None:
        path = build_engine.build(dla_core, force=True, device_dir=device_dir)
        record = build_engine.read_build_record(path)
    try:
        return Engine(path, record)
    except ValueError as exc:
        print(f"run.py: {exc}; rebuilding", file=sys.stderr)
        path = build_engine.build(dla_core, force=True, device_dir=device_dir)
        return Engine(path, build_engine.read_build_record(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_input_arguments(parser, required=False)
    parser.add_argument("--dla", type=int, default=None, help="run the engine built for this DLA core")
    add_device_dir_argument(parser)
    add_check_arguments(parser, HERE / "golden")
    args = parser.parse_args()
    require_inputs(parser, args)

    config = build_engine.load_config()
    engine = load_engine(args.dla, args.device_dir)
    pre, batch = Preprocessing.from_dict(config["preprocessing"]), config["input_shape"][0]
    if args.check:
        args.report = str(report_destination(args, HERE, REPORT_FILE))
        sys.exit(run_check(args, engine.infer, batch, engine.facts(), engine.label, lambda folder: load_inputs(folder, None, pre)))
    run_and_report(args, engine.infer, batch, pre, extra=lambda: engine.engine_latency(skip=args.warmup))


if __name__ == "__main__":
    main()
