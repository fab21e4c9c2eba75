"""The one interface every backend implements, and the typed data that crosses it.

A backend (ONNX Runtime, TensorRT, TVM, ...) is one package beside this file with
one `Backend` subclass. It declares its targets (typed `Target` profiles), the
quantization scheme it consumes and whether it takes a dynamic batch; it checks its
toolchain (`preflight`), builds an artifact (`build`), opens a finished artifact for
`run`/`bench` (`open_artifact`), reports its toolchain versions for the manifest,
and, if it can be tuned, checks and makes tuning records. The pipeline
(`edgeresnet.pipeline`) calls these hooks and nothing else of a backend.

Kept light: listing targets or verifying an artifact imports neither torch nor tvm.
"""

from __future__ import annotations

import platform
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgeresnet.schema import Manifest
from edgeresnet.errors import InputError
from edgeresnet.quant_scheme import QuantScheme

if TYPE_CHECKING:
    import onnx

    from edgeresnet.models import LoadedModel
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
class RpcDevice:
    """A board registered with a TVM RPC tracker under `key` (the device farm of docs/tuning.md)."""

    key: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "RpcDevice":
        key, at, address = text.partition("@")
        host, colon, port = address.rpartition(":")
        if not (key and at and host and colon and port.isdigit() and 0 < int(port) < 65536):
            raise InputError(f"--rpc takes KEY@TRACKER_HOST:PORT (e.g. rpi5@192.168.1.10:9190), not {text!r}")
        return cls(key, host, int(port))

    def __str__(self) -> str:
        return f"{self.key}@{self.host}:{self.port}"


@dataclass
class BuildContext:
    target: Target
    model: LoadedModel
    int8_model: onnx.ModelProto
    folder: Path  # the staging folder of the artifact; write only here
    batch: int  # the static batch, or the optimal one when `dynamic_batch` is set
    dynamic_batch: DynamicBatch | None = None
    emulated_samples: int | None = None  # evaluation images run under emulation (aarch64 artifacts); None: by input size
    records: Path | None = None  # tuning records, already accepted by the backend's `check_records`


@dataclass(frozen=True)
class PolygraphyNames:
    """An ONNX model in the artifact that `polygraphy run` can check against the golden vectors on the
    device; Polygraphy's feed dicts and outputs are keyed by the model's input and output names."""

    model_file: str
    input_name: str
    output_name: str
    batch: int
    dynamic: bool = False  # a dynamic batch dimension: Polygraphy is told the golden batch's shape


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
    # Set when the artifact's device tools include Polygraphy: golden/ then also holds its JSON files.
    polygraphy: PolygraphyNames | None = None


@dataclass
class RemoteRun:
    """Logits computed on the boards of a device farm, in input order, and the boards' own timings."""

    logits: Any  # np.ndarray
    latencies_ms: list[float]
    boards: int
    servers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TuneRequest:
    """One tuning run of a backend's kernels for `target`, on the quantized model that compile would build."""

    target: Target
    int8_model: Any  # onnx.ModelProto
    input_shape: list[int]
    model_name: str
    records: Path
    trials: int
    rpc: RpcDevice | None
    all_kernels: bool
    max_kernels: int | None
    seed: int
    progress: bool


@dataclass
class KernelTuning:
    kernel: str
    calls: int
    rules_ms: float | None  # the rule schedule, measured
    best_ms: float | None = None  # the fastest record after the search
    source: str = "rules"  # "rules" or "metaschedule"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TuneResult:
    records: str
    target: str
    model: str
    trials_per_kernel: int
    kernels: list[KernelTuning]
    seconds: float
    seed: int
    measured_on: str

    @property
    def metaschedule_wins(self) -> int:
        return sum(1 for k in self.kernels if k.source == "metaschedule")

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "model": self.model, "trials_per_kernel": self.trials_per_kernel,
                "kernels": [k.to_dict() for k in self.kernels], "seconds": self.seconds, "seed": self.seed,
                "target": self.target, "measured_on": self.measured_on, "tuned_kernels": len(self.kernels),
                "metaschedule_wins": self.metaschedule_wins}


class Backend(ABC):
    """Everything the pipeline and the commands need from one backend."""

    name: ClassVar[str]
    quant_scheme: ClassVar[QuantScheme]  # the Q/DQ graph its builds consume
    dynamic_batch: ClassVar[bool] = False  # whether its artifacts take a dynamic batch dimension
    # The JSON its device runner reads (target, input_shape, preprocessing): verify holds it to the manifest.
    device_config: ClassVar[str | None] = None

    @abstractmethod
    def targets(self) -> list[Target]:
        """The device profiles this backend serves (registered with it)."""

    def preflight(self, target: Target) -> None:
        """Fail before any work when the toolchain is missing (MissingDependency)."""

    @abstractmethod
    def build(self, context: BuildContext) -> TargetBuild:
        """Write the artifact's files into `context.folder`; return them and a runner for validation here."""

    @abstractmethod
    def open_artifact(self, target: Target, folder: Path, manifest: Manifest, emulate: bool = False) -> Runner:
        """A runner for a finished artifact's own files, or an InputError when this machine cannot run them."""

    def host_reference(self, target: Target, folder: Path, manifest: Manifest) -> Runner:
        """The artifact's INT8 model as this host computes it: the reference a device is compared with."""
        return self.open_artifact(target, folder, manifest)

    # A device farm (`validate --rpc`): a backend whose artifacts run on remote boards overrides both.
    def check_device_farm(self, target: Target) -> None:
        raise InputError(f"validate --rpc runs an artifact on the boards of a TVM RPC tracker; {target.name} is a "
                         f"{self.name} artifact (run its own run.py --check on the device)")

    def run_on_device_farm(self, target: Target, folder: Path, manifest: Manifest, device: RpcDevice,
                           inputs: Any) -> RemoteRun:
        """The artifact run on the boards registered under `device`, logits in input order."""
        self.check_device_farm(target)
        raise NotImplementedError(f"{self.name} checks a device farm but cannot run on one")

    def toolchain(self, target: Target) -> dict[str, str]:
        """Versions of the backend's own tools and packages, for the manifest."""
        return {}

    # Tuning: a backend that can be tuned overrides the three hooks below.
    @property
    def tunable(self) -> bool:
        return type(self).tune is not Backend.tune

    def check_records(self, target: Target, records: Path) -> None:
        """Accept tuning records made for `target` (compile --records), or raise InputError."""
        raise InputError(f"--records are tuning records; {target.name} builds with {self.name}, which is not tuned")

    def check_tuning(self, target: Target, rpc: RpcDevice | None, records: Path) -> None:
        """The checks that fail fast, before the model is quantized for `tune`."""
        raise InputError(f"tune is for the tunable targets; {target.name} builds with {self.name}, which is not tuned")

    def tune(self, request: TuneRequest) -> TuneResult:
        raise InputError(f"tune is for the tunable targets; {request.target.name} builds with {self.name}, which is not tuned")


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
