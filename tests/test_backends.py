"""The backends as the pipeline and the command line reach them (edgeresnet/pipeline/backends.py,
targets/capabilities.py, the `quantize` hook of targets/base.py): options generated from a backend's
dataclass and handed to it untouched, capabilities asked for, never a backend named."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import edgeresnet
from edgeresnet.errors import InputError
from edgeresnet.schema import to_json
from edgeresnet.pipeline.backends import backend_options, check_model, model_check_commands, options_for
from edgeresnet.targets import backends, register_backend, unregister_backend
from edgeresnet.targets.base import BackendOptions, BuildContext, QuantizeRequest, Target, TargetBuild
from edgeresnet.targets.capabilities import DeviceFarm, Emulation, ModelChecks, Tunable
from toy_backend import OnnxReferenceBackend, ReferenceDetails


@dataclass(frozen=True)
class GreetingOptions(BackendOptions):
    greeting: str = field(default="hello", metadata={"help": "What the build writes."})
    repeat: int | None = None
    shout: bool = False


class OptionedBackend(OnnxReferenceBackend):
    """A toy backend with options of its own, and a quantizer of its own that keeps what it was asked."""

    name = "optioned"
    options = GreetingOptions

    def __init__(self):
        self.requests: list[QuantizeRequest] = []
        self.built: list[BuildContext] = []

    def targets(self) -> list[Target]:
        return [Target("optioned-cpu", self.name, "a toy with options", "any", ReferenceDetails(optimizations="off"))]

    def quantize(self, request: QuantizeRequest):
        self.requests.append(request)
        return super().quantize(request)

    def build(self, context: BuildContext) -> TargetBuild:
        self.built.append(context)
        built = super().build(context)
        built.details["greeting"] = context.options.greeting
        return built


@pytest.fixture
def optioned():
    backend = register_backend(OptionedBackend())
    yield backend
    unregister_backend(backend.name)


def test_a_backends_fields_become_its_options(optioned):
    offered = {option.flag: option for option in backend_options() if option.backend == "optioned"}
    assert sorted(offered) == ["--optioned-greeting", "--optioned-repeat", "--optioned-shout"]
    assert offered["--optioned-greeting"].help == "What the build writes." and offered["--optioned-greeting"].default == "hello"
    assert offered["--optioned-repeat"].type is int and offered["--optioned-shout"].type is bool
    assert len({option.key for option in backend_options()}) == len(backend_options())
    # A field may keep a flag of its own: TVM's emulated sample size is `--emulated-samples`.
    assert {"--emulated-samples": "tvm"}.items() <= {o.flag: o.backend for o in backend_options()}.items()


def test_two_backends_cannot_declare_one_flag(optioned):
    @dataclass(frozen=True)
    class Clashing(BackendOptions):
        samples: int = field(default=1, metadata={"flag": "--emulated-samples"})

    optioned.options = Clashing
    with pytest.raises(TypeError, match="--emulated-samples is declared by two backends"):
        backend_options()


def test_options_reach_only_their_own_backend(optioned):
    keys = {option.flag: option.key for option in backend_options()}
    assert options_for("optioned-cpu", {keys["--optioned-greeting"]: "hi"}) == GreetingOptions(greeting="hi")
    assert options_for("optioned-cpu", {keys["--optioned-greeting"]: "hello"}) is None  # defaults only: nothing given
    with pytest.raises(InputError, match="--optioned-shout is an option of another backend; ort-cpu builds with onnxruntime"):
        options_for("ort-cpu", {keys["--optioned-shout"]: True})


def test_an_option_of_an_unsupported_type_is_refused(optioned):
    @dataclass(frozen=True)
    class ListOptions(BackendOptions):
        layers: list[str] = field(default_factory=list)

    optioned.options = ListOptions
    with pytest.raises(TypeError, match="needs a default|one of bool, int, float, str"):
        backend_options()


def test_compile_hands_the_options_to_the_build_and_quantizes_through_the_backend(optioned, small_data, tmp_path):
    result = edgeresnet.compile(edgeresnet.CompileOptions(
        target="optioned-cpu", model="resnet20", calib=str(small_data["calib"]), eval=str(small_data["eval"]),
        out=str(tmp_path / "a"), progress=False, backend_options=GreetingOptions(greeting="hi")))
    assert to_json(result.report)["target_details"]["greeting"] == "hi"
    (request,) = optioned.requests
    assert request.config.scheme is optioned.quant_scheme and len(request.calibration) == 32
    (context,) = optioned.built
    assert context.options == GreetingOptions(greeting="hi")
    # The model built is the hook's: the same Q/DQ graph ONNX Runtime's path makes for this scheme.
    assert [n.op_type for n in context.int8_model.graph.node].count("QuantizeLinear") > 0


def test_options_of_another_backend_are_refused_before_any_work(optioned, tmp_path):
    with pytest.raises(InputError, match="GreetingOptions are not options of onnxruntime"):
        edgeresnet.compile(edgeresnet.CompileOptions(target="ort-cpu", out=str(tmp_path / "b"),
                                                     backend_options=GreetingOptions()))
    assert not (tmp_path / "b").exists()


def test_capabilities_are_asked_for_not_names():
    has = {backend.name: {c.__name__ for c in (Tunable, DeviceFarm, Emulation, ModelChecks) if isinstance(backend, c)}
           for backend in backends()}
    assert has["onnxruntime"] == set()
    assert has["tensorrt"] == {"ModelChecks"} and has["tvm"] == {"Tunable", "DeviceFarm", "Emulation"}


def test_a_model_check_is_offered_as_its_own_command(tmp_path):
    (command,) = model_check_commands()
    assert command.name == "inspect" and [o.flag for o in command.options] == ["--trt-version"]
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(InputError, match="not a readable ONNX model"):
        check_model("inspect", tmp_path / "bad.onnx", trt_versions=("10.3",))
    with pytest.raises(InputError, match="no backend offers the model check 'lint'"):
        check_model("lint", tmp_path / "bad.onnx")
