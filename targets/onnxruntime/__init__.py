"""ONNX Runtime on any CPU: the portable Q/DQ INT8 ONNX model."""

from .backend import OnnxRuntimeBackend

__all__ = ["OnnxRuntimeBackend"]
