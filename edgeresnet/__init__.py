"""edgeresnet: ResNet (PyTorch) -> ONNX -> INT8 -> per-target edge artifact, with measured accuracy drift.

The Python API does all the work; the `edgeresnet` command line is a thin layer
over it. Heavy modules (torch, onnxruntime, tvm) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

DEFAULT_MODEL = "resnet20-fmnist"

# public name -> (module, attribute)
_API = {
    # Not "export": that is the submodule edgeresnet.export, whose import rebinds the name.
    "export_onnx": ("edgeresnet.export", "export"),
    "train": ("edgeresnet.training", "train_on_fashion_mnist"),
    "TrainConfig": ("edgeresnet.training", "TrainConfig"),
    "load_model": ("edgeresnet.models", "load_model"),
    "describe_models": ("edgeresnet.models", "describe_models"),
    "get_target": ("edgeresnet.targets", "get_target"),
    "register_backend": ("edgeresnet.targets", "register_backend"),
    "compile": ("edgeresnet.pipeline.compile", "compile_artifact"),
    "CompileOptions": ("edgeresnet.pipeline.compile", "CompileOptions"),
    "DynamicBatch": ("edgeresnet.targets.base", "DynamicBatch"),
    "tune": ("edgeresnet.pipeline.tune", "tune"),
    "TuneOptions": ("edgeresnet.pipeline.tune", "TuneOptions"),
    "quantize_model": ("edgeresnet.pipeline.quantize", "quantize_model"),
    "evaluate_onnx": ("edgeresnet.pipeline.evaluate", "evaluate_onnx"),
    "verify": ("edgeresnet.pipeline.artifacts", "verify"),
    "run_artifact": ("edgeresnet.pipeline.artifacts", "run_artifact"),
    "bench_artifact": ("edgeresnet.pipeline.artifacts", "bench_artifact"),
    # A backend's model check by the command it offers (`inspect`: TensorRT's ONNX parser rules).
    "check_model": ("edgeresnet.pipeline.backends", "check_model"),
}


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attribute = _API[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'edgeresnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["DEFAULT_MODEL", "__version__", *_API]
