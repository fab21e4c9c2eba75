"""What only some backends can do, each an abstract mixin a backend's class inherits.

The pipeline asks `isinstance(backend, Tunable)` (or `DeviceFarm`, `Emulation`,
`ModelChecks`, `QuantizesItself`) and calls the capability's methods; it never names a
backend. A backend without a capability is refused in one line that says which targets
have it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from .base import BackendOptions, BuildContext, QuantizeRequest, Target, TargetBuild

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from edgeresnet.models import LoadedModel
    from edgeresnet.quantize import CalibrationRecord
    from edgeresnet.runners import Runner
    from edgeresnet.schema import Manifest


# --- tuning ---------------------------------------------------------------------


@dataclass(frozen=True)
class TuneRequest:
    """One tuning run of a backend's kernels for `target`, on the quantized model that compile would build."""

    target: Target
    int8_model: onnx.ModelProto
    input_shape: list[int]
    model_name: str
    records: Path
    trials: int
    device: str | None  # where to measure, in the backend's own address form (None: this machine)
    all_kernels: bool
    max_kernels: int | None
    seed: int
    progress: bool


class TuneSummary(Protocol):
    """What a tuning run reports: `--json` prints `to_dict()`, the terminal a table and a line."""

    def to_dict(self) -> dict[str, Any]: ...

    def table(self) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """Rows, and (key, title) columns."""
        ...

    def summary(self) -> str: ...


class Tunable(ABC):
    """A backend whose kernels `edgeresnet tune` can tune, and whose builds take the records (`compile --records`)."""

    tuner: ClassVar[str]  # how it tunes, for `tune --help` (e.g. "MetaSchedule, from the rule schedules")
    tuning_devices: ClassVar[str]  # where it measures, for `tune --target`'s help

    @abstractmethod
    def check_records(self, target: Target, records: Path) -> None:
        """Accept tuning records made for `target`, or raise InputError."""

    @abstractmethod
    def check_tuning(self, target: Target, device: str | None, records: Path) -> None:
        """The checks that fail fast, before the model is quantized for `tune`."""

    @abstractmethod
    def tune(self, request: TuneRequest) -> TuneSummary: ...


# --- a device farm -----------------------------------------------------------------


@dataclass
class RemoteRun:
    """Logits computed on the boards of a device farm, in input order, and the boards' own timings."""

    logits: np.ndarray
    latencies_ms: list[float]
    boards: int
    servers: list[str] = field(default_factory=list)
    address: str = ""  # the farm, as the backend names it
    runtime: dict[str, str] = field(default_factory=dict)  # what ran the artifact there, for the device report


class DeviceFarm(ABC):
    """A backend whose artifacts run on remote boards (`validate --rpc ADDRESS`, in the backend's address form)."""

    farm_address: ClassVar[str]  # the address form, as a metavar (e.g. "KEY@HOST:PORT")
    farm_help: ClassVar[str]  # what the address names, for `--rpc`'s help

    @abstractmethod
    def check_farm_address(self, text: str) -> None:
        """Refuse a malformed address (InputError) before anything is read."""

    @abstractmethod
    def run_on_device_farm(self, target: Target, folder: Path, manifest: Manifest, address: str,
                           inputs: np.ndarray) -> RemoteRun:
        """The artifact run on the boards at `address`, logits in input order."""


# --- emulation ---------------------------------------------------------------------


class Emulation(ABC):
    """A backend that can run artifacts for another machine on this one, emulated (`run --emulate`)."""

    emulation_help: ClassVar[str]  # what runs under which emulator, for `run --emulate`'s help

    @abstractmethod
    def open_emulated(self, target: Target, folder: Path, manifest: Manifest) -> Runner:
        """A runner of the artifact's own files under emulation, or InputError when it cannot be emulated."""


# --- checks of a model against the backend's own rules -------------------------------------


class ModelCheckReport(Protocol):
    passed: bool

    def to_dict(self) -> dict[str, Any]: ...

    def lines(self) -> list[str]:
        """The findings, for the terminal."""
        ...


@dataclass(frozen=True)
class ModelCheckOption:
    """One option of a backend's model check, as the command line offers it."""

    name: str  # the keyword `check_model_file` takes
    flag: str
    help: str
    default: tuple[str, ...]
    multiple: bool = True


class ModelChecks(ABC):
    """A backend that can check a model file against its toolchain's rules without the toolchain itself
    (e.g. TensorRT's ONNX parser rules), offered as its own command."""

    check_command: str  # the command's name
    check_help: str
    check_options: tuple[ModelCheckOption, ...] = ()

    @abstractmethod
    def check_model_file(self, path: Path, **options: Any) -> list[ModelCheckReport]:
        """One report per checked configuration (e.g. per toolchain version)."""


# --- quantization in the backend's own framework -------------------------------------


class QdqStep(Enum):
    """The pipeline's steps that read or rewrite ONNX Runtime's Q/DQ graph: only backends that build from
    that graph offer them."""

    SENSITIVITY = "layer sensitivity"
    FALLBACK = "fallback of sensitive layers to float"
    LAYER_DRIFT = "per-layer drift"


Program = TypeVar("Program")


@dataclass(frozen=True)
class ProgramQuantization(Generic[Program]):
    """A backend's own quantized model and how it was calibrated."""

    program: Program  # handed back to `build_program` untouched
    calibration: CalibrationRecord


@dataclass
class ProgramBuildContext(Generic[Program]):
    target: Target
    model: LoadedModel
    program: Program
    folder: Path  # the staging folder of the artifact; write only here
    batch: int
    options: BackendOptions


class QuantizesItself(ABC, Generic[Program]):
    """A backend that quantizes the PyTorch model in its own framework (as torch.ao's PT2E flow does for
    ExecuTorch's XNNPACK delegate) and builds from that program, not from ONNX Runtime's Q/DQ graph.

    Export of the FP32 model (the reference and model.fp32.onnx), evaluation of the built artifact against
    it, golden vectors and the device check run as for any backend; no `QdqStep` runs, the report lists
    the ones skipped (`skipped_steps`), and `--bias-correction` (a shift of a Q/DQ graph's biases) is refused.
    Inherit it before `Backend`: its `build` stands in for the Q/DQ one, which the pipeline never calls.
    """

    @abstractmethod
    def quantize_program(self, request: QuantizeRequest) -> ProgramQuantization[Program]:
        """Calibrate on `request.calibration` and quantize `request.model` (`request.fp32` is the FP32 export)."""

    @abstractmethod
    def build_program(self, context: ProgramBuildContext[Program]) -> TargetBuild:
        """Write the artifact's files into `context.folder`; return them and a runner of the files that ship."""

    def build(self, context: BuildContext) -> TargetBuild:
        raise TypeError(f"{type(self).__name__} builds from its own quantized program (build_program), "
                        f"not from a Q/DQ graph")
