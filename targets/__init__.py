"""Targets: the devices edgeresnet builds for, each served by one backend.

One registry holds the backends (one package each beside this file: `onnxruntime/`,
`tensorrt/`, `tvm/`) and the target profiles they declare; the command line reads
its choices from here. A new backend is one `base.Backend` subclass and one
`register_backend` call.
"""

from __future__ import annotations

from typing import Any

from edgeresnet.errors import InputError
from edgeresnet.quant_scheme import QuantScheme

from .base import Backend, Target

_BACKENDS: dict[str, Backend] = {}
_TARGETS: dict[str, Target] = {}
_ALIASES: dict[str, str] = {}


def register_backend(backend: Backend) -> Backend:
    """Add a backend and its targets; names and aliases must be new."""
    targets = list(backend.targets())
    taken = set(_TARGETS) | set(_ALIASES)
    for target in targets:
        if target.backend != backend.name:
            raise ValueError(f"target {target.name!r} names backend {target.backend!r}, registered by {backend.name!r}")
        clash = ({target.name, *target.aliases} & taken)
        if clash:
            raise ValueError(f"target name {sorted(clash)[0]!r} is registered twice")
        taken |= {target.name, *target.aliases}
    if backend.name in _BACKENDS:
        raise ValueError(f"backend {backend.name!r} is registered twice")
    _BACKENDS[backend.name] = backend
    for target in targets:
        _TARGETS[target.name] = target
        _ALIASES.update({alias: target.name for alias in target.aliases})
    return backend


def unregister_backend(name: str) -> None:
    """Remove a backend and its targets (for plug-ins and tests that register their own)."""
    _BACKENDS.pop(name)
    for target in [t for t in _TARGETS.values() if t.backend == name]:
        del _TARGETS[target.name]
        for alias in target.aliases:
            _ALIASES.pop(alias, None)


def get_target(name: str) -> Target:
    try:
        return _TARGETS[_ALIASES.get(name, name)]
    except KeyError:
        known = sorted(_TARGETS) + sorted(f"{a} (= {t})" for a, t in _ALIASES.items())
        raise InputError(f"unknown target {name!r}; known targets: {', '.join(known)}") from None


def backend_of(target: Target) -> Backend:
    return _BACKENDS[target.backend]


def all_targets() -> list[Target]:
    return list(_TARGETS.values())


def target_names() -> list[str]:
    """Every name `--target` accepts: profiles, then aliases."""
    return [*_TARGETS, *_ALIASES]


def aliases() -> dict[str, str]:
    return dict(_ALIASES)


def quant_schemes() -> dict[str, QuantScheme]:
    """The Q/DQ schemes of the registered backends, by name (what `quantize --scheme` offers)."""
    return {backend.quant_scheme.name: backend.quant_scheme for backend in _BACKENDS.values()}


def get_quant_scheme(name: str) -> QuantScheme:
    schemes = quant_schemes()
    try:
        return schemes[name]
    except KeyError:
        raise InputError(f"unknown quantization scheme {name!r}; choose {', '.join(schemes)}") from None


def describe(target: Target) -> dict[str, Any]:
    """A target as the manifest, the report and `targets --json` show it."""
    return {"name": target.name, "backend": target.backend, "quant_profile": backend_of(target).quant_scheme.name,
            "description": target.description, "arch": target.arch, "details": target.details.to_dict()}


def _register_builtin_backends() -> None:
    from .onnxruntime import OnnxRuntimeBackend
    from .tensorrt import TensorRTBackend
    from .tvm import TvmBackend

    for backend in (OnnxRuntimeBackend(), TensorRTBackend(), TvmBackend()):
        register_backend(backend)


_register_builtin_backends()
