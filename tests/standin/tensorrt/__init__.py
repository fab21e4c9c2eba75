"""A stand-in for TensorRT's Python API: what the bundle's scripts call, recorded (see tests/standin/README.md)."""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

__version__ = os.environ.get("STANDIN_TRT_VERSION", "10.3.0")


def _record(call: str, **details) -> None:
    log = os.environ.get("STANDIN_TRT_LOG")
    if log:
        with open(log, "a") as out:
            out.write(json.dumps({"call": call, **details}) + "\n")


class _Enum:
    def __init__(self, name: str):
        self.name = name

    def __int__(self) -> int:
        return sum(map(ord, self.name)) % 30

    def __repr__(self) -> str:
        return self.name


def _enum(*names: str):
    return type("Enum", (), {name: _Enum(name) for name in names})


BuilderFlag = _enum("FP16", "INT8", "GPU_FALLBACK", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS")
NetworkDefinitionCreationFlag = _enum("EXPLICIT_BATCH", "STRONGLY_TYPED")
DeviceType = _enum("GPU", "DLA")
DataType = _enum("FLOAT", "HALF", "INT8")
ProfilingVerbosity = _enum("DETAILED")
LayerInformationFormat = _enum("JSON")
TensorIOMode = _enum("INPUT", "OUTPUT")


class Logger:
    WARNING = "WARNING"

    def __init__(self, severity=None):
        self.severity = severity


class IInt8EntropyCalibrator2:
    def __init__(self):
        pass


class _Layer:
    def __init__(self, name: str):
        self.name, self.precision = name, None


class _Network:
    def __init__(self, flags: int):
        self.flags, self.model, self.layers = flags, None, []

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> _Layer:
        return self.layers[index]


class OnnxParser:
    num_errors = 0

    def __init__(self, network: _Network, logger):
        self.network = network

    def parse_from_file(self, path: str) -> bool:
        import onnx

        self.network.model = path
        self.network.layers = [_Layer(node.name) for node in onnx.load(path).graph.node]
        return True

    def get_error(self, index: int):
        return ""


class _TimingCache:
    def serialize(self) -> bytes:
        return b"stand-in timing cache"


class _BuilderConfig:
    def __init__(self):
        self.flags, self.default_device_type, self.DLA_core, self.int8_calibrator = [], None, -1, None
        self.profiling_verbosity, self.profiles = None, []

    def set_flag(self, flag) -> None:
        self.flags.append(flag.name)

    def add_optimization_profile(self, profile) -> None:
        self.profiles.append(profile)

    def set_calibration_profile(self, profile) -> None:
        pass

    def create_timing_cache(self, data: bytes) -> _TimingCache:
        return _TimingCache()

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        return True

    def get_timing_cache(self) -> _TimingCache:
        return _TimingCache()


class _Profile:
    def set_shape(self, name, low, opt, high) -> None:
        self.shapes = (name, low, opt, high)


class Builder:
    def __init__(self, logger):
        _record("Builder")

    @property
    def num_DLA_cores(self) -> int:
        return int(os.environ.get("STANDIN_DLA_CORES", "2"))

    def create_network(self, flags: int = 0) -> _Network:
        return _Network(flags)

    def create_builder_config(self) -> _BuilderConfig:
        return _BuilderConfig()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _BuilderConfig) -> bytes:
        calibration = config.int8_calibrator.read_calibration_cache().decode() if config.int8_calibrator else None
        pinned = {layer.name: layer.precision.name for layer in network.layers if layer.precision is not None}
        built = {"model": network.model, "flags": config.flags, "device": getattr(config.default_device_type, "name", "GPU"),
                 "dla_core": config.DLA_core, "calibration_header": calibration.splitlines()[0] if calibration else None,
                 "pinned": pinned, "network_flags": network.flags}
        _record("build_serialized_network", **built)
        return json.dumps(built).encode()


class _Context:
    def __init__(self, engine: "_Engine"):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name: str, shape) -> None:
        self.shapes[name] = tuple(shape)

    def get_tensor_shape(self, name: str):
        batch = self.shapes[self.engine.input][0]
        return (batch, self.engine.classes)

    def set_tensor_address(self, name: str, address: int) -> None:
        self.addresses[name] = address

    def execute_async_v3(self, stream: int) -> bool:
        import numpy as np

        shape = self.shapes[self.engine.input]
        size = int(np.prod(shape))
        inputs = np.ctypeslib.as_array((ctypes.c_float * size).from_address(self.addresses[self.engine.input])).reshape(shape)
        logits = self.engine.session.run(None, {self.engine.input: inputs.copy()})[0].astype(np.float32)
        ctypes.memmove(self.addresses[self.engine.output], logits.ctypes.data, logits.nbytes)
        return True


class _Inspector:
    def get_engine_information(self, fmt) -> str:
        path = os.environ.get("STANDIN_LAYER_INFO")
        return Path(path).read_text() if path else json.dumps({"Layers": []})


class _Engine:
    def __init__(self, built: dict):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(built["model"], providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        self.classes = self.session.get_outputs()[0].shape[-1]

    num_io_tensors = 2

    def get_tensor_name(self, index: int) -> str:
        return (self.input, self.output)[index]

    def get_tensor_mode(self, name: str):
        return TensorIOMode.INPUT if name == self.input else TensorIOMode.OUTPUT

    def create_execution_context(self) -> _Context:
        return _Context(self)

    def create_engine_inspector(self) -> _Inspector:
        return _Inspector()


class Runtime:
    def __init__(self, logger):
        self._dla_core = -1  # IRuntime's default: no DLA core chosen

    @property
    def DLA_core(self) -> int:
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, core: int) -> None:
        _record("Runtime.DLA_core", value=core)
        self._dla_core = core

    def deserialize_cuda_engine(self, data: bytes):
        built = json.loads(data)
        _record("deserialize_cuda_engine", runtime_dla_core=self._dla_core, engine_dla_core=built["dla_core"])
        return _Engine(built)
