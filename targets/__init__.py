"""Targets: the devices edgeresnet builds for, each served by one backend.

One registry holds the backends and the target profiles they declare; the command
line reads its choices from here. Backends are found through the "edgeresnet.backends"
entry point group (`[project.entry-points."edgeresnet.backends"]` in a pyproject.toml,
name = "package.module:BackendClass"): the built-in ones (`onnxruntime/`, `tensorrt/`,
`tvm/` beside this file) are declared there like any plug-in, so a plug-in package
needs no edit here. `register_backend` adds one at run time.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from edgeresnet.errors import InputError
from edgeresnet.quant_scheme import QuantScheme

from .base import Backend, Target

ENTRY_POINT_GROUP = "edgeresnet.backends"

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
    return backend_of_scheme(name).quant_scheme


def backend_of_scheme(name: str) -> Backend:
    """The backend whose builds consume the scheme: its `quantize` makes models in it."""
    for backend in _BACKENDS.values():
        if backend.quant_scheme.name == name:
            return backend
    raise InputError(f"unknown quantization scheme {name!r}; choose {', '.join(quant_schemes())}")


def describe(target: Target) -> dict[str, Any]:
    """A target as the manifest, the report and `targets --json` show it."""
    return {"name": target.name, "backend": target.backend, "quant_profile": backend_of(target).quant_scheme.name,
            "description": target.description, "arch": target.arch, "details": target.details.to_dict()}


def backends() -> list[Backend]:
    return list(_BACKENDS.values())


def _register_installed_backends() -> None:
    """Every backend an installed package declares, in name order (so the registry's order is stable)."""
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        backend_class = entry.load()
        if not (isinstance(backend_class, type) and issubclass(backend_class, Backend)):
            raise TypeError(f"entry point {entry.name} = {entry.value} ({ENTRY_POINT_GROUP}) is not a Backend subclass")
        if backend_class.name != entry.name:
            raise ValueError(f"entry point {entry.name} = {entry.value} names a backend called {backend_class.name!r}")
        register_backend(backend_class())


_register_installed_backends()
