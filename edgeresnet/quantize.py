"""INT8 post-training quantization: edgeresnet's calibrators, then ONNX Runtime's Q/DQ quantizer, configured per backend.

Backends accept different Q/DQ graphs, so each declares a typed `QuantScheme`
(`edgeresnet.quant_scheme`); it is translated into ORT's string-keyed options in
exactly one place (`QuantScheme.ort_options`). The calibration method and its
options are typed too (`edgeresnet.calibrators`). Two graph edits that ORT does not offer follow:
residual-aware placement on Adds (TensorRT), and removing a layer's Q/DQ to keep
it in float (fallback, for any backend).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from tqdm import tqdm


from edgeresnet.auto_calibration import AllMethodsCalibrator, AutoSelection, score_candidates, split_for_scoring
from edgeresnet.calibrators import (CalibrationRun, Calibrator, ClippedSpike, ScaleStability, calibrate,
                                    create_calibrator, scale_stability, stability_threshold, tensors_to_calibrate)
from edgeresnet.errors import InputError
from edgeresnet.processes import temporary_folder
from edgeresnet.quant_scheme import (AutoOptions, CalibrationMethod, CalibrationOptions, EntropyOptions, MinMaxOptions,
                                     MseOptions, PercentileOptions, QuantScheme, calibration_options)
from edgeresnet.runners import dynamic_batch_copy
from edgeresnet.schema import CalibrationSummary, DataSummary

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


@dataclass(frozen=True)
class QuantizeConfig:
    scheme: QuantScheme  # the Q/DQ graph the consuming backend wants
    # Typed options, or a method by name (its default options); None: the scheme's own method.
    calibration: CalibrationOptions | CalibrationMethod | str | None = None
    per_channel: bool = True
    float_nodes: tuple[str, ...] = ()  # nodes kept in float from the start

    def __post_init__(self) -> None:
        if not isinstance(self.calibration, (MinMaxOptions, PercentileOptions, EntropyOptions, MseOptions, AutoOptions)):
            object.__setattr__(self, "calibration", calibration_options(self.calibration or self.scheme.calibration))

    @property
    def options(self) -> CalibrationOptions:
        """The typed calibration options (`__post_init__` resolved a name or None to them)."""
        assert isinstance(self.calibration, (MinMaxOptions, PercentileOptions, EntropyOptions, MseOptions, AutoOptions))
        return self.calibration

    @property
    def method(self) -> CalibrationMethod:
        return self.options.method


@dataclass(frozen=True)
class CalibrationRecord:
    """What calibration ran, for report.json and manifest.json."""

    options: CalibrationOptions  # of the method that shipped
    samples: int  # calibrated on (with auto, the held-out images are not among them)
    stability: ScaleStability
    inferences: int = 0  # images run through a model to calibrate (and, with auto, to score): the cost, counted
    spikes: tuple[ClippedSpike, ...] = ()  # histogram spikes the shipped ranges clip
    selection: AutoSelection | None = None  # with auto: every candidate's score and why the winner won

    @property
    def warnings(self) -> list[str]:
        warnings = []
        stability = self.stability.warning(self.samples)
        if stability and self.stability.max_relative_change is not None and self.options.method is CalibrationMethod.MINMAX:
            stability += " or a method that clips (percentile): min-max follows the most extreme image"
        if stability:
            warnings.append(stability)
        return warnings + [spike.warning() for spike in self.spikes]

    @property
    def warning(self) -> str | None:
        return "; ".join(self.warnings) or None

    def summary(self, data: DataSummary) -> CalibrationSummary:
        """report.json's calibration: `data` (the calibration data set), the method shipped and its options,
        stability, warnings; with auto, what was requested and every candidate's score."""
        options = self.options.to_dict()
        method = options.pop("method")
        chosen = self.selection
        return CalibrationSummary(
            data.source, self.samples, data.sha256, data.labelled, method, options, self.stability.summary(), self.warning,
            requested=chosen.requested if chosen else None, inferences=self.inferences,
            clipped_spikes=[spike.record() for spike in self.spikes] or None,
            candidates=list(chosen.candidates) if chosen else None,
            held_out_samples=chosen.held_out_samples if chosen else None,
            selection_score=chosen.score_meaning if chosen else None, why=chosen.reason if chosen else None)


@dataclass(frozen=True)
class Quantization:
    model: onnx.ModelProto
    calibration: CalibrationRecord


@contextlib.contextmanager
def _quiet_onnxruntime():
    """ORT's quantizer warns through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantize(model: onnx.ModelProto, calibration, config: QuantizeConfig, progress: bool = True) -> onnx.ModelProto:
    """A Q/DQ INT8 model of `model`, calibrated on `calibration` (float32 NCHW, preprocessed: an array or a
    streamed `edgeresnet.calibration.Dataset`)."""
    return calibrate_and_quantize(model, calibration, config, progress).model


def calibrate_and_quantize(model: onnx.ModelProto, calibration, config: QuantizeConfig,
                           progress: bool = True) -> Quantization:
    """Calibrate with edgeresnet's calibrators, then place Q/DQ with ONNX Runtime's QDQQuantizer.

    These are the steps of ORT's `quantize_static` (same model preparation, same
    quantizer and arguments), with the calibration step replaced: `quantize_static`
    cannot pass the entropy calibrator its bin counts. Calibration streams the data and
    runs batched (up to `CALIBRATION_BATCH` images per call) on a dynamic-batch copy of
    the model whatever its own batch; the quantizer places Q/DQ on the model as given.
    With `auto`, every method is calibrated in the same passes and the best on held-out
    calibration images ships (`edgeresnet.auto_calibration`).
    """
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    if len(calibration) == 0:
        raise InputError("no calibration samples")
    with temporary_folder(prefix="edgeresnet-prepare-") as tmp, _quiet_onnxruntime():
        source = Path(tmp, "fp32.onnx")
        onnx.save(onnx.shape_inference.infer_shapes(model), source)
        # quantize_static's preparation of a model given by path (ORT 1.20-1.32); for int8 at
        # opset >= 13 (export uses 17) ORT 1.32's update_opset_version leaves the model as it is.
        prepared = load_model_with_shape_infer(source)
    options = config.options
    if isinstance(options, AutoOptions):
        return calibrate_automatically(model, prepared, calibration, config, options, progress)
    tensors = tensors_to_calibrate(prepared, config.scheme.op_types)
    calibrator = create_calibrator(options)
    run = calibrate_with_progress(prepared, tensors, calibration, calibrator, config.method.value, progress)
    quantized = place_qdq(model, prepared, run.ranges, config, config.method)
    record = CalibrationRecord(options, run.samples,
                               scale_stability(run, config.scheme.activation_symmetric, stability_threshold(config.method)),
                               run.samples * (1 + calibrator.histogram_passes), tuple(calibrator.clipped_spikes()))
    return Quantization(quantized, record)


def calibrate_automatically(model: onnx.ModelProto, prepared: onnx.ModelProto, calibration, config: QuantizeConfig,
                            options: AutoOptions, progress: bool) -> Quantization:
    """`--method auto`: every candidate calibrated at once on the fitting part, each one's Q/DQ placed and
    scored on the held-out part (`edgeresnet.auto_calibration`), the best returned with every score."""
    fit, held_out = split_for_scoring(calibration, tuple(calibration.shape[1:]), options.held_out_share)
    calibrator = AllMethodsCalibrator(options)
    tensors = tensors_to_calibrate(prepared, config.scheme.op_types)
    run = calibrate_with_progress(prepared, tensors, fit, calibrator, "auto: " + ", ".join(m.value for m in options.candidates),
                                  progress)
    models = {method: place_qdq(model, prepared, member.ranges(), config, method)
              for method, member in calibrator.members.items()}
    selection = score_candidates(prepared, models, held_out)
    winner = calibrator.members[selection.winner]
    stability = scale_stability(calibrator.run_of(selection.winner, run), config.scheme.activation_symmetric,
                                stability_threshold(selection.winner))
    inferences = run.samples * (1 + calibrator.histogram_passes) + len(held_out) * (1 + len(models))
    record = CalibrationRecord(winner.options, run.samples, stability, inferences, tuple(winner.clipped_spikes()), selection)
    return Quantization(models[selection.winner], record)


def calibrate_with_progress(prepared: onnx.ModelProto, tensors: list[str], calibration, calibrator: Calibrator,
                            label: str, progress: bool) -> CalibrationRun:
    """`calibrate` on a dynamic-batch copy of `prepared` (same tensor names; any batch runs), with a progress bar."""
    passes = 1 + calibrator.histogram_passes
    bar = tqdm(total=passes * len(calibration), desc=f"calibrating ({label})",
               unit="img", disable=None if progress else True, leave=False)
    with bar, _quiet_onnxruntime():
        batched = dynamic_batch_copy(prepared) or prepared
        started = time.perf_counter()
        run = calibrate(batched, tensors, calibration, None, calibrator, on_batch=lambda rows: bar.update(min(rows, bar.total - bar.n)))
    if progress and len(calibration) >= 256:
        seconds = time.perf_counter() - started
        print(f"calibration: {passes} pass(es) over {len(calibration)} images in {seconds:.1f} s "
              f"({passes * len(calibration) / max(seconds, 1e-9):.1f} img/s)", file=sys.stderr)
    return run


def place_qdq(model: onnx.ModelProto, prepared: onnx.ModelProto, ranges: dict, config: QuantizeConfig,
              method: CalibrationMethod) -> onnx.ModelProto:
    """The Q/DQ model of `prepared` (left unchanged) with activation `ranges`, in the scheme's placement;
    `model`'s metadata carried over, `method` recorded in it."""
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    scheme = config.scheme
    activation_type = QuantType.QInt8 if scheme.activation_signed else QuantType.QUInt8
    with temporary_folder(prefix="edgeresnet-quant-") as tmp, _quiet_onnxruntime():
        target = Path(tmp, "int8.onnx")
        # ORT's quantizers read the ranges only, never which of its calibrators made them.
        tensors = TensorsData(OrtMethod.MinMax, {name: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                                           for name, (lo, hi) in ranges.items()})
        quantizer = QDQQuantizer(onnx.ModelProto.FromString(prepared.SerializeToString()), config.per_channel, False,
                                 QuantType.QInt8, activation_type, tensors, [], list(config.float_nodes),
                                 list(scheme.op_types), scheme.ort_options())
        quantizer.quantize_model()
        quantizer.model.save_model_to_file(str(target))
        quantized = onnx.load(target)
    if scheme.residual_aware:
        quantized = place_residual_qdq(quantized)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    metadata.update({"edgeresnet.quant_profile": scheme.name, "edgeresnet.calibration_method": method.value})
    onnx.helper.set_model_props(quantized, metadata)
    onnx.checker.check_model(quantized)
    return quantized


# --- graph edits --------------------------------------------------------------


class _Graph:
    """Producer/consumer indexes over an ONNX graph, rebuilt after each edit."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = model.graph
        self._index()

    def _index(self) -> None:
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.initializers = {init.name: init for init in self.graph.initializer}

    def qdq_source(self, tensor: str) -> str | None:
        """For a tensor made by DequantizeLinear(QuantizeLinear(x)), return x."""
        dq = self.producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = self.producer.get(dq.input[0])
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None

    def depth(self) -> dict[str, int]:
        """Longest path, counted in non-Q/DQ nodes, from the graph inputs to each tensor."""
        depth = {i.name: 0 for i in self.graph.input}
        depth.update({name: 0 for name in self.initializers})
        for node in self.graph.node:  # ONNX graphs are topologically sorted
            step = 0 if node.op_type in ("QuantizeLinear", "DequantizeLinear") else 1
            d = max((depth.get(i, 0) for i in node.input if i), default=0) + step
            for out in node.output:
                depth[out] = d
        return depth

    def prune(self) -> None:
        """Drop nodes whose outputs nobody uses, and initializers nobody reads."""
        outputs = {o.name for o in self.graph.output}
        while True:
            used = {i for node in self.graph.node for i in node.input} | outputs
            dead = [n for n in self.graph.node if not any(o in used for o in n.output)]
            if not dead:
                break
            for node in dead:
                self.graph.node.remove(node)
        used = {i for node in self.graph.node for i in node.input}
        for init in [i for i in self.graph.initializer if i.name not in used]:
            self.graph.initializer.remove(init)
        self._index()


def place_residual_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """On each residual Add, keep Q/DQ on the shortcut input only (the shallower one).

    TensorRT fuses Conv + Add + ReLU into one INT8 kernel when the convolution
    branch reaches the Add unquantized and the shortcut arrives quantized
    (TensorRT developer guide, Q/DQ placement for residual networks).
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = _Graph(model)
    depth = g.depth()
    for node in list(g.graph.node):
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        first, second = (g.qdq_source(i) for i in node.input)
        if first is None or second is None:
            continue
        sources = (first, second)
        branch = max((0, 1), key=lambda i: depth.get(sources[i], 0))
        node.input[branch] = sources[branch]
    g.prune()
    return model


def keep_in_float(model: onnx.ModelProto, node_names: list[str] | tuple[str, ...]) -> onnx.ModelProto:
    """Remove the Q/DQ feeding the named nodes, so they compute in float (works for every backend).

    A quantized activation input is re-wired to the float tensor before its
    QuantizeLinear; a dequantized initializer (int8 weight, int32 bias) is replaced by
    its float value. Other consumers of shared Q/DQ nodes keep theirs. With
    asymmetric activations ORT deletes ReLUs and lets the zero point clamp instead;
    a QuantizeLinear whose zero point is the bottom of its range is such a clamp, so
    the float path gets an explicit ReLU in its place.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = _Graph(model)
    by_name = {node.name: node for node in g.graph.node}
    missing = [n for n in node_names if n not in by_name]
    if missing:
        raise InputError(f"no node named {', '.join(missing)} in the model")
    clamps: dict[str, str] = {}  # float tensor -> its ReLU'd copy
    for name in node_names:
        node = by_name[name]
        for index, tensor in enumerate(node.input):
            source = g.qdq_source(tensor)
            if source is not None:
                node.input[index] = _float_path(g, g.producer[g.producer[tensor].input[0]], source, clamps)
                continue
            dq = g.producer.get(tensor)
            if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in g.initializers:
                value = dequantize_initializer(g, dq)
                float_name = f"{dq.input[0]}_float"
                if float_name not in g.initializers:
                    g.graph.initializer.append(numpy_helper.from_array(value, float_name))
                    g.initializers[float_name] = g.graph.initializer[-1]
                node.input[index] = float_name
    _sort_topologically(g.graph)
    g.prune()
    return model


def _float_path(g: _Graph, quantize_node: onnx.NodeProto, source: str, clamps: dict[str, str]) -> str:
    """The float tensor that replaces QuantizeLinear->DequantizeLinear: `source`, or ReLU(source) where Q clamped at 0."""
    zero = g.initializers.get(quantize_node.input[2]) if len(quantize_node.input) > 2 else None
    if zero is None:
        return source
    zero_value = numpy_helper.to_array(zero)
    bottom = np.iinfo(zero_value.dtype).min
    if zero_value.size != 1 or int(zero_value.reshape(-1)[0]) != bottom:
        return source
    if source not in clamps:
        clamps[source] = f"{source}_float_relu"
        g.graph.node.append(onnx.helper.make_node("Relu", [source], [clamps[source]], name=f"{quantize_node.name}_float_relu"))
    return clamps[source]


def _sort_topologically(graph: onnx.GraphProto) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("graph has a cycle or an undefined input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def dequantize_initializer(g: _Graph, dq: onnx.NodeProto) -> np.ndarray:
    q = numpy_helper.to_array(g.initializers[dq.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(g.initializers[dq.input[1]]).astype(np.float32)
    zero = numpy_helper.to_array(g.initializers[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 and dq.input[2] else np.float32(0)
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if np.ndim(zero) else zero
    return ((q - zero) * scale).astype(np.float32)


def quantized_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes (other than Q/DQ) that read at least one dequantized input: each can stay in float."""
    g = _Graph(model)
    return [
        node.name for node in g.graph.node
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and any((p := g.producer.get(i)) is not None and p.op_type == "DequantizeLinear" for i in node.input)
    ]
