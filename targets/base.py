"""What a target backend receives and returns: one interface for ONNX Runtime, TensorRT and TVM."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import onnx

from edgeresnet.errors import InputError
from edgeresnet.models import LoadedModel
from edgeresnet.runners import Runner

from . import TargetProfile


@dataclass(frozen=True)
class DynamicBatch:
    """A dynamic batch dimension with TensorRT-style optimization-profile bounds."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise InputError(f"dynamic batch needs 1 <= min <= opt <= max, not {self.min},{self.opt},{self.max}")

    @classmethod
    def parse(cls, text: str) -> "DynamicBatch":
        try:
            low, opt, high = (int(v) for v in text.split(","))
        except ValueError:
            raise InputError(f"--dynamic-batch takes MIN,OPT,MAX (e.g. 1,8,32), not {text!r}") from None
        return cls(low, opt, high)

    def shapes(self, sample_shape: tuple[int, ...]) -> dict[str, list[int]]:
        return {name: [size, *sample_shape] for name, size in (("min", self.min), ("opt", self.opt), ("max", self.max))}


@dataclass
class BuildContext:
    profile: TargetProfile
    model: LoadedModel
    int8_model: onnx.ModelProto
    folder: Path  # the staging folder of the artifact; write only here
    batch: int  # the static batch, or the optimal one when `dynamic_batch` is set
    dynamic_batch: DynamicBatch | None = None
    emulated_samples: int = 1000  # evaluation images run under emulation (TVM aarch64 targets)
    records: Path | None = None  # tuning records of `edgeresnet tune` (TVM targets; checked by check_records)


@dataclass
class TargetBuild:
    files: list[str]  # paths relative to the artifact folder
    runner: Runner  # runs the files that ship, for validation on this machine
    details: dict[str, Any] = field(default_factory=dict)  # backend facts for the report and manifest
    not_measured: list[str] = field(default_factory=list)  # plain statements of what could not be run here
    # `runner` evaluates this many evaluation images (a deterministic sample) when set, e.g. under emulation.
    sample_limit: int | None = None
    # Other runners measured on the whole evaluation set, reported beside the main measurement.
    reference_runners: list[Runner] = field(default_factory=list)


class Backend(Protocol):
    def build(self, context: BuildContext) -> TargetBuild: ...


# Shipped beside every device runner: edgeresnet's own preprocessing (so the device
# preprocesses exactly as we calibrated and evaluated) and the shared input/timing code.
DEVICE_SUPPORT_FILES = ("preprocessing.py", "device_io.py")


def copy_templates(folder: Path, kind: str, names: tuple[str, ...]) -> None:
    """Copy targets/templates/<kind>/<name> into the artifact; scripts become executable."""
    templates = resources.files("edgeresnet.targets") / "templates" / kind
    for name in names:
        target = folder / name
        target.write_text(templates.joinpath(name).read_text())
        if name.endswith((".sh", ".py")):
            target.chmod(0o755)


def copy_device_support(folder: Path) -> None:
    (folder / "preprocessing.py").write_text(resources.files("edgeresnet").joinpath("preprocessing.py").read_text())
    copy_templates(folder, "common", ("device_io.py",))
