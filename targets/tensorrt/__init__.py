"""Jetson GPUs through TensorRT: a build-on-device bundle around an explicit-quantization ONNX model."""

from .backend import TensorRTBackend

__all__ = ["TensorRTBackend"]
