"""Target profiles: one registry entry per device family, each naming its backend.

A profile says what the device is (CPU, features, GPU, TensorRT versions) and
which quantization profile its backend consumes. The backends themselves live
beside this file, one module each, and are imported only when a build needs them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeresnet.errors import InputError


@dataclass(frozen=True)
class TargetProfile:
    name: str
    backend: str  # "onnxruntime", "tensorrt" or "tvm" (see BACKEND_MODULES)
    quant_profile: str  # the quantization profile its backend consumes
    description: str
    arch: str  # machine architecture of the device, as `uname -m` prints it ("any" for portable)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# backend name -> the module beside this file that builds it
BACKEND_MODULES = {"onnxruntime": "ort_cpu", "tensorrt": "jetson", "tvm": "tvm_cpu"}

_REGISTRY: dict[str, TargetProfile] = {}
_ALIASES: dict[str, str] = {}


def register(profile: TargetProfile, aliases: tuple[str, ...] = ()) -> TargetProfile:
    if profile.name in _REGISTRY:
        raise ValueError(f"target {profile.name!r} is registered twice")
    _REGISTRY[profile.name] = profile
    for alias in aliases:
        _ALIASES[alias] = profile.name
    return profile


def get_target(name: str) -> TargetProfile:
    name = _ALIASES.get(name, name)
    try:
        return _REGISTRY[name]
    except KeyError:
        known = sorted(_REGISTRY) + sorted(f"{a} (= {t})" for a, t in _ALIASES.items())
        raise InputError(f"unknown target {name!r}; known targets: {', '.join(known)}") from None


def all_targets() -> list[TargetProfile]:
    return list(_REGISTRY.values())


def aliases() -> dict[str, str]:
    return dict(_ALIASES)


register(TargetProfile(
    name="ort-cpu",
    backend="onnxruntime",
    quant_profile="onnxruntime",
    description="portable INT8 Q/DQ ONNX model for ONNX Runtime on any CPU",
    arch="any",
    details={"runtime": "onnxruntime >= 1.17", "execution_provider": "CPUExecutionProvider"},
))


# Each backend module registers its own profiles when imported.
from . import jetson, tvm_cpu  # noqa: E402,F401
