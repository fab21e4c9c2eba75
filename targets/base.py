"""The small core every backend implements, and the typed data that crosses it.

A backend (ONNX Runtime, TensorRT, TVM, a plug-in, ...) is one package with one
`Backend` subclass, found through the "edgeresnet.backends" entry point group. It
declares its targets (typed `Target` profiles), the quantization scheme it consumes,
whether it takes a dynamic batch and its own options (a `BackendOptions` dataclass
whose fields become command-line options); it checks its toolchain (`preflight`),
quantizes (`quantize`, by default ONNX Runtime's Q/DQ in its scheme, or in its own framework with the
`QuantizesItself` capability), builds an
artifact (`build`), opens a finished artifact (`open_artifact`) and reports its
toolchain versions for the manifest. What only some backends can do (tuning, a device
farm, emulation, model checks) is a capability in `capabilities`: the pipeline asks
whether a backend has one and never names a backend.

Kept light: listing targets or verifying an artifact imports neither torch nor tvm.
"""

from __future__ import annotations

import platform
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from edgeresnet.schema import Manifest
from edgeresnet.errors import InputError
from edgeresnet.quant_scheme import QuantScheme

if TYPE_CHECKING:
    import onnx

    import numpy as np

    from edgeresnet.calibration import Dataset
    from edgeresnet.models import LoadedModel
    from edgeresnet.quantize import Quantization, QuantizeConfig
    from edgeresnet.runners import Runner


@dataclass(frozen=True)
class TargetDetails:
    """What a backend knows of a device, beyond the common fields: one dataclass per backend."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """A device family that `compile --target` accepts, served by one backend."""

    name: str
    backend: str  # the `Backend.name` that builds it
    description: str
    arch: str  # machine architecture of the device, as `uname -m` prints it ("any" for portable)
    details: TargetDetails = field(default_factory=TargetDetails)
    aliases: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class BackendOptions:
    """A backend's own options: subclass it with one typed field (and a default) per option.

    Each field becomes `--<backend>-<field>` on `compile` (underscores as dashes), or the
    field's `flag` metadata, its help the field's `help` metadata; the pipeline hands the
    filled instance to the backend untouched, as `BuildContext.options`. Bad values raise
    InputError in `__post_init__`.
    """


@dataclass
class BuildContext:
    target: Target
    model: LoadedModel
    int8_model: onnx.ModelProto
    folder: Path  # the staging folder of the artifact; write only here
    batch: int  # the static batch, or the optimal one when `dynamic_batch` is set
    dynamic_batch: DynamicBatch | None = None
    records: Path | None = None  # tuning records, already accepted by the backend's `check_records`
    options: BackendOptions = field(default_factory=BackendOptions)  # the backend's own, of its `options` class


class GoldenTool(Protocol):
    """A device tool that reads the golden vectors in its own format (e.g. Polygraphy's JSON): returned by
    `build`, written beside golden/'s own files, described in golden.json under `name`."""

    name: str

    def write(self, folder: Path, inputs: np.ndarray, logits: np.ndarray) -> tuple[dict[str, Any], list[str]]:
        """Write into `folder` (golden/) from the inputs and the host's INT8 logits; return what golden.json says
        of it and the names of the files written."""
        ...


@dataclass(frozen=True)
class QuantizeRequest:
    """The exported float model and the calibration data, for the backend's `quantize`."""

    model: LoadedModel
    fp32: onnx.ModelProto
    calibration: Dataset
    config: QuantizeConfig  # the backend's scheme and the calibration method chosen
    progress: bool


@dataclass
class TargetBuild:
    files: list[str]  # paths relative to the artifact folder
    runner: Runner  # runs the files that ship, for validation on this machine
    details: dict[str, Any] = field(default_factory=dict)  # backend facts for the report
    not_measured: list[str] = field(default_factory=list)  # plain statements of what could not be run here
    # `runner` evaluates this many evaluation images (a deterministic sample) when set, e.g. under emulation.
    sample_limit: int | None = None
    # Other runners measured on the whole evaluation set, reported beside the main measurement.
    reference_runners: list[Runner] = field(default_factory=list)
    # One of `reference_runners` that runs the same program as `runner`, built for this host. When its logits
    # equal `runner`'s bit for bit on every sampled image, its whole-set figure is the headline (a sample of
    # 1,000 images has a standard error of ~0.3 pts on a drop; the whole set's is ~3x smaller).
    host_twin: Runner | None = None
    # Build inputs beyond model and data that the manifest must name (e.g. tuning records).
    provenance: dict[str, Any] = field(default_factory=dict)
    # Device tools that read the golden vectors in their own formats.
    golden_tools: list[GoldenTool] = field(default_factory=list)


class Backend(ABC):
    """What every backend provides; optional abilities are the mixins of `capabilities`."""

    name: ClassVar[str]
    quant_scheme: ClassVar[QuantScheme]  # the Q/DQ graph its builds consume
    dynamic_batch: ClassVar[bool] = False  # whether its artifacts take a dynamic batch dimension
    # The JSON its device runner reads (target, input_shape, preprocessing): verify holds it to the manifest.
    device_config: ClassVar[str | None] = None
    options: ClassVar[type[BackendOptions]] = BackendOptions

    @abstractmethod
    def targets(self) -> list[Target]:
        """The device profiles this backend serves (registered with it)."""

    def preflight(self, target: Target) -> None:
        """Fail before any work when the toolchain is missing (MissingDependency)."""

    def quantize(self, request: QuantizeRequest) -> Quantization:
        """The INT8 model its `build` takes as `BuildContext.int8_model`: ONNX Runtime's Q/DQ placement in the
        backend's `quant_scheme` unless it places them otherwise. A backend that quantizes in PyTorch instead
        (a runtime that takes a PyTorch-quantized program) has the `capabilities.QuantizesItself` capability."""
        from edgeresnet.quantize import calibrate_and_quantize

        return calibrate_and_quantize(request.fp32, request.calibration, request.config, request.progress)

    @abstractmethod
    def build(self, context: BuildContext) -> TargetBuild:
        """Write the artifact's files into `context.folder`; return them and a runner for validation here."""

    @abstractmethod
    def open_artifact(self, target: Target, folder: Path, manifest: Manifest) -> Runner:
        """A runner for a finished artifact's own files, or an InputError when this machine cannot run them."""

    def host_reference(self, target: Target, folder: Path, manifest: Manifest) -> Runner:
        """The artifact's INT8 model as this host computes it: the reference a device is compared with."""
        return self.open_artifact(target, folder, manifest)

    def toolchain(self, target: Target) -> dict[str, str]:
        """Versions of the backend's own tools and packages, for the manifest."""
        return {}


def cannot_run_here(target: Target, folder: Path, hint: str = "") -> InputError:
    return InputError(f"artifact {folder} is built for target {target.name} ({target.arch}, {target.backend}); "
                      f"this machine ({platform.machine()}) cannot run it{hint}")


# Shipped beside every device runner: edgeresnet's own preprocessing (so the device
# preprocesses exactly as we calibrated and evaluated), the shared input/timing code, and
# the on-device accuracy check against the golden vectors (run.py --check) with edgeresnet's
# own metrics (so the device's figures are computed as the host's).
SHIPPED_MODULES = ("preprocessing.py", "metrics.py")
DEVICE_SUPPORT_FILES = (*SHIPPED_MODULES, "device_io.py", "device_check.py")


def copy_templates(folder: Path, package: str, names: tuple[str, ...]) -> None:
    """Copy <package>/templates/<name> into the artifact; scripts become executable."""
    templates = resources.files(package) / "templates"
    for name in names:
        target = folder / name
        target.write_text(templates.joinpath(name).read_text())
        if name.endswith((".sh", ".py")):
            target.chmod(0o755)


def copy_device_support(folder: Path) -> None:
    for name in SHIPPED_MODULES:
        (folder / name).write_text(resources.files("edgeresnet").joinpath(name).read_text())
    copy_templates(folder, __package__, ("device_io.py", "device_check.py"))
