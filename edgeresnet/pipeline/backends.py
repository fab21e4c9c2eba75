"""The backends as the command line sees them, without naming one: target and scheme names, each
backend's own options (its `options` dataclass, offered as generated flags), and the model checks
backends offer as commands. Light: imports neither torch nor tvm.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeresnet.errors import InputError
from edgeresnet.targets import aliases, all_targets, backend_of, backends, describe, get_quant_scheme, get_target
from edgeresnet.targets import quant_schemes, target_names
from edgeresnet.targets.base import BackendOptions
from edgeresnet.targets.capabilities import DeviceFarm, Emulation, ModelCheckOption, ModelCheckReport, ModelChecks, Tunable

# The registry's lookups the command line's choices use, with what is defined below.
__all__ = ["BackendOption", "CapabilityOffer", "ModelCheckCommand", "backend_options", "check_model", "dynamic_batch_offers",
           "emulation_offers", "farm_offers", "backend_defaults", "get_quant_scheme", "get_target", "model_check_commands", "options_for",
           "scheme_names", "target_names", "target_rows", "tuning_offers"]

# The types a backend option may have; None is allowed as a default of an optional field.
OPTION_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class BackendOption:
    """One field of a backend's `options` class, as a command-line option (`--<backend>-<field>`, or the
    field's own `flag`)."""

    backend: str
    field: str
    type: type  # one of OPTION_TYPES
    default: Any
    help: str
    own_flag: str | None = None

    @property
    def flag(self) -> str:
        return self.own_flag or f"--{self.backend}-{self.field}".replace("_", "-")

    @property
    def key(self) -> str:
        """A Python identifier for the option's value (what click passes the command)."""
        return "backend_option_" + re.sub(r"\W", "_", f"{self.backend}__{self.field}")


def _option_type(hint: Any, where: str) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if len(args) == 1 else hint
    if base not in OPTION_TYPES:
        raise TypeError(f"{where}: a backend option is one of {', '.join(t.__name__ for t in OPTION_TYPES)} "
                        f"(or Optional of one), not {hint!r}")
    return base


def backend_options() -> list[BackendOption]:
    """Every registered backend's own options, in registry order."""
    found = []
    for backend in backends():
        hints = typing.get_type_hints(backend.options)
        for field in dataclasses.fields(backend.options):
            if field.default is dataclasses.MISSING:
                raise TypeError(f"{backend.options.__name__}.{field.name}: a backend option needs a default")
            found.append(BackendOption(backend.name, field.name, _option_type(hints[field.name], field.name), field.default,
                                       field.metadata.get("help", ""), field.metadata.get("flag")))
    flags = [option.flag for option in found]
    clash = sorted({flag for flag in flags if flags.count(flag) > 1})
    if clash:
        raise TypeError(f"backend option {clash[0]} is declared by two backends")
    return found


def options_for(target_name: str, values: dict[str, Any]) -> BackendOptions | None:
    """The target's backend's options from the command line's `values` (by `BackendOption.key`); None when
    no backend option was given. An option of another backend is bad input."""
    target = get_target(target_name)
    backend = backend_of(target)
    given = {option: values[option.key] for option in backend_options()
             if option.key in values and values[option.key] != option.default}
    foreign = [option.flag for option in given if option.backend != backend.name]
    if foreign:
        raise InputError(f"{foreign[0]} is an option of another backend; {target.name} builds with {backend.name}")
    if not given:
        return None
    return backend.options(**{option.field: value for option, value in given.items()})


def target_rows() -> list[dict[str, Any]]:
    """Every target as `targets --json` lists it: its description and its aliases."""
    alias_of: dict[str, list[str]] = {}
    for alias, name in aliases().items():
        alias_of.setdefault(name, []).append(alias)
    return [{**describe(t), "aliases": alias_of.get(t.name, [])} for t in all_targets()]


def scheme_names() -> list[str]:
    return list(quant_schemes())


@dataclass(frozen=True)
class ModelCheckCommand:
    """A backend's model check, as a command of its own."""

    backend: str
    name: str
    help: str
    options: tuple[ModelCheckOption, ...]


def model_check_commands() -> list[ModelCheckCommand]:
    return [ModelCheckCommand(backend.name, backend.check_command, backend.check_help, backend.check_options)
            for backend in backends() if isinstance(backend, ModelChecks)]


def check_model(command: str, path: str | Path, **options: Any) -> list[ModelCheckReport]:
    """Run the model check offered as `command` on a model file."""
    for backend in backends():
        if isinstance(backend, ModelChecks) and backend.check_command == command:
            return backend.check_model_file(Path(path), **options)
    raise InputError(f"no backend offers the model check {command!r}")


@dataclass(frozen=True)
class CapabilityOffer:
    """One backend's offer of a capability, as the help of the command that uses it names it."""

    backend: str
    targets: tuple[str, ...]
    help: str
    address: str = ""  # a device farm's address form

    @property
    def offerer(self) -> str:
        return f"{self.backend} ({', '.join(self.targets)})"

    def line(self) -> str:
        return f"{self.offerer}: {self.help}"


def _targets_of(backend_name: str) -> tuple[str, ...]:
    return tuple(t.name for t in all_targets() if t.backend == backend_name)


def tuning_offers() -> list[CapabilityOffer]:
    """Backends whose kernels `tune` tunes: how, and where it measures."""
    return [CapabilityOffer(b.name, _targets_of(b.name), f"{b.tuner}; {b.tuning_devices}")
            for b in backends() if isinstance(b, Tunable)]


def farm_offers() -> list[CapabilityOffer]:
    """Backends whose artifacts run on the boards of a device farm (`validate --rpc`, `tune --rpc`)."""
    return [CapabilityOffer(b.name, _targets_of(b.name), b.farm_help, b.farm_address)
            for b in backends() if isinstance(b, DeviceFarm)]


def emulation_offers() -> list[CapabilityOffer]:
    """Backends that run artifacts for another machine here, emulated (`run --emulate`)."""
    return [CapabilityOffer(b.name, _targets_of(b.name), b.emulation_help) for b in backends() if isinstance(b, Emulation)]


def dynamic_batch_offers() -> list[CapabilityOffer]:
    """Backends whose artifacts take a dynamic batch dimension (`compile --dynamic-batch`)."""
    return [CapabilityOffer(b.name, _targets_of(b.name), "") for b in backends() if b.dynamic_batch]


def backend_defaults() -> list[tuple[str, str]]:
    """(backend, its quantization scheme's default calibration method), for `--method`'s help."""
    return [(b.name, b.quant_scheme.calibration.value) for b in backends()]
