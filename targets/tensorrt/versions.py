"""Which TensorRT each JetPack ships, per Jetson module."""

from __future__ import annotations

# JetPack -> TensorRT, as NVIDIA ships them.
JETPACK_TENSORRT = {"5.1": "8.5.2", "6.0": "8.6.2", "6.1": "10.3.0", "6.2": "10.3.0", "7.0": "10.13.0", "7.1": "11.0.0"}
ORIN_JETPACKS = ("5.1", "6.0", "6.1", "6.2", "7.0", "7.1")
XAVIER_JETPACKS = ("5.1",)  # JetPack 6 dropped Xavier


def tensorrt_versions(jetpack_tensorrt: dict[str, str]) -> list[str]:
    """The distinct TensorRT versions of a JetPack -> TensorRT map, oldest first."""
    return sorted(set(jetpack_tensorrt.values()), key=lambda v: tuple(map(int, v.split("."))))
