"""One runner interface per backend, in the spirit of Polygraphy's runners.

A runner turns a batch of preprocessed inputs into logits and says what produced
them (runtime, version, machine architecture), so every number in a report can
name its source. Accuracy checks are written once, in `edgeresnet.evaluate`,
and run against any runner.
"""

from __future__ import annotations

import platform
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

import numpy as np


def dynamic_batch_copy(model):
    """A copy of an ONNX model whose batch dimension is symbolic, shapes inferred again; None when the
    graph fixes its batch elsewhere (e.g. a Reshape to a constant shape), so only the model's own batch runs.

    Calibration and evaluation run on such a copy in batches whatever batch the shipped model has:
    every image is computed by the same graph, only more of them per call.
    """
    import onnx

    copy = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {init.name for init in copy.graph.initializer}
    ends = [v for v in (*copy.graph.input, *copy.graph.output) if v.name not in initializers]
    for value in ends:
        dims = value.type.tensor_type.shape.dim
        if not dims:
            return None
        dims[0].dim_param = "batch"
    del copy.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(copy, strict_mode=True)
    except Exception:  # onnx raises its own inference errors
        return None
    for output in inferred.graph.output:
        dims = output.type.tensor_type.shape.dim
        if not dims or dims[0].HasField("dim_value"):
            return None
    return inferred


class Runner(ABC):
    #: a fixed batch size the model was built for, or None when any batch works
    static_batch: int | None = None
    #: images per `batches` call that pay off (a runner that starts a process per call wants many)
    images_per_call: int | None = None

    @property
    @abstractmethod
    def runtime(self) -> str:
        """What computes the logits, e.g. 'onnxruntime 1.32.0 (CPUExecutionProvider)'."""

    @property
    def arch(self) -> str:
        return platform.machine()

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for one batch of float32 NCHW inputs (of `static_batch` rows when that is set)."""

    def batches(self, images: np.ndarray, batch_size: int = 256) -> Iterator[tuple[int, np.ndarray]]:
        """(rows, logits) per chunk; the last chunk of a static-batch model is padded, then trimmed."""
        size = self.static_batch or batch_size
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            rows = len(chunk)
            if self.static_batch and rows < size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - rows, axis=0)])
            yield rows, self.infer(np.ascontiguousarray(chunk))[:rows]

    def describe(self) -> dict:
        return {"runtime": self.runtime, "arch": self.arch}


class TorchRunner(Runner):
    """The FP32 reference: the PyTorch module itself, before any export."""

    def __init__(self, module, threads: int | None = None):
        import torch

        self._torch = torch
        self.module = module.eval()
        if threads:
            torch.set_num_threads(threads)

    @property
    def runtime(self) -> str:
        return f"pytorch {self._torch.__version__} (FP32, eager)"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            return self.module(self._torch.from_numpy(batch)).numpy()


def session_options(optimize: bool = True, threads: int | None = None, spinning: bool = False, fuse_qdq: bool = True):
    """ONNX Runtime session options for every session edgeresnet runs (runners and calibration).

    `optimize`: full optimization fuses Q/DQ into integer kernels (what users run); disabled, ORT executes
    the Q/DQ graph op by op, the exact reference numerics.

    `spinning`: ORT's default keeps its intra-op threads busy-waiting after each run, which pays only
    when the same session runs back to back (latency benchmarks). Evaluation alternates runtimes
    (FP32 and INT8 on each chunk) and calibration reduces activations between runs; there the
    spinning threads take the cores from the next step: ResNet-18 FP32 + INT8 at 224x224 on 2 cores
    took 66 ms/image with spinning and 36 without.

    `fuse_qdq=False` (with `optimize`): ORT's graph optimizations and fast float kernels, but Q/DQ pairs
    stay as they are (`session.disable_quant_qdq`): the exact fake-quant arithmetic of the graph, ~2x
    faster than op by op; on the reference model and ResNet-18 the same logit SQNR to 0.01 dB.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if not fuse_qdq:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # ORT's arena keeps a run's largest activations for the session's life: a ResNet-50 FP32 session that
    # has run 32 images at 224x224 held 0.43 GB more without this, and ran no faster. (Calibration, where
    # every tensor is an output, would keep the largest batch's activations after the pass.)
    options.enable_cpu_mem_arena = False
    return options


class OnnxRuntimeRunner(Runner):
    """An ONNX model (FP32 or Q/DQ INT8) in ONNX Runtime's CPU execution provider."""

    def __init__(self, model: str | Path | bytes, optimize: bool = True, threads: int | None = None, label: str = "",
                 any_batch: bool = False, spinning: bool = False, fuse_qdq: bool = True):
        """`any_batch`: run a copy of the model with a symbolic batch (`dynamic_batch_copy`), so evaluation
        runs in batches whatever the file's own batch; the runtime label says so. The other options are
        `session_options`'."""
        import onnxruntime as ort

        self._ort = ort
        options = session_options(optimize, threads, spinning, fuse_qdq)
        options.log_severity_level = 3
        source = model if isinstance(model, bytes) else str(model)
        self.batched_copy = False
        if any_batch:
            import onnx

            proto = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)
            dims = proto.graph.input[0].type.tensor_type.shape.dim
            if dims and dims[0].HasField("dim_value"):
                copy = dynamic_batch_copy(proto)
                if copy is not None:
                    source, self.batched_copy = copy.SerializeToString(), True
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        batch = self.session.get_inputs()[0].shape[0]
        self.static_batch = batch if isinstance(batch, int) and batch > 0 else None
        self.optimize = optimize
        self.fuse_qdq = fuse_qdq
        self.label = label

    @property
    def runtime(self) -> str:
        mode = "graph optimizations on" if self.optimize else "graph optimizations off"
        if self.optimize and not self.fuse_qdq:
            mode += ", Q/DQ unfused"
        if self.batched_copy:
            mode += ", batched on a dynamic-batch copy"
        label = f"{self.label}, " if self.label else ""
        return f"onnxruntime {self._ort.__version__} (CPUExecutionProvider, {label}{mode})"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]
