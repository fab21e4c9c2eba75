"""Calibrators: activation ranges for INT8 from batches of activations, behind one interface.

`create_calibrator(options)` picks the calibrator from its typed options, as ONNX
Runtime's `create_calibrator` picks one by name (`edgeresnet.quant_scheme`:
`MinMaxOptions`, `PercentileOptions`, `EntropyOptions`). `calibrate` runs the
model with every tensor to calibrate as an output, one batch at a time, and hands
each batch to the calibrator, which reduces it at once: memory holds one batch of
activations and the statistics (extremes, histograms), never the whole data set.
Histogram calibrators see the data twice: extremes first, then histograms with
fixed bin edges.

Why not ONNX Runtime's calibrators through `quantize_static`: it forwards neither
`num_bins` nor `num_quantized_bins`, so its entropy calibrator ran with 128/128 bins
and returned the min-max range (see the field notes). The min-max and percentile
calibrators here reproduce ONNX Runtime's numbers exactly (same tensors, same
reductions, the same `np.histogram` of |x| on the same edges), so the profiles whose
default is one of them ship the same bytes as before.

Every calibrator keeps the statistics of the first half of the batches apart; the
largest relative change of an activation scale between the first half and all
samples says whether the sample was large enough (`ScaleStability`).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
import onnx

from edgeresnet.errors import InputError
from edgeresnet.quant_scheme import CalibrationMethod, CalibrationOptions, EntropyOptions, MinMaxOptions, PercentileOptions
from edgeresnet.runners import session_options
from edgeresnet.schema import Stability, to_json

Range = tuple[np.float32, np.float32]

# A scale that moves by more than this between the first half of the calibration
# samples and all of them was still being decided by which images were drawn:
# calibrate on more. 10% moves every int8 code above 5 of that tensor by at least
# half a step. Measured on the reference model (resnet20-fmnist, onnxruntime scheme,
# largest change over 53 activations, at 16/32/64/128/256/512 samples): percentile
# 16/15/15/12/8.4/7.2% (settles below 10% from 256 on), entropy 31/31/16/16/10/14%,
# min-max 19/11/22/25/17/19% (15% at 1024: the maximum of a tail follows single images
# and does not settle; the warning says so).
STABILITY_THRESHOLD = 0.10
# Min-max's range is the most extreme value seen, which moves by 11-25% between half and
# all of the sample at any size measured: only a larger move says the sample is too small.
MINMAX_STABILITY_THRESHOLD = 0.30


@dataclass(frozen=True)
class _Extremes:
    lowest: np.float32
    highest: np.float32
    least_magnitude: np.float32  # min |x|: the first edge of ONNX Runtime's percentile histogram

    @classmethod
    def of(cls, values: np.ndarray) -> "_Extremes":
        magnitude = np.abs(values)
        return cls(np.nanmin(values), np.nanmax(values), np.nanmin(magnitude))

    def merge(self, other: "_Extremes | None") -> "_Extremes":
        if other is None:
            return self
        return _Extremes(min(self.lowest, other.lowest), max(self.highest, other.highest),
                         min(self.least_magnitude, other.least_magnitude))

    @property
    def magnitude(self) -> np.float32:
        return max(abs(self.lowest), abs(self.highest))


class Calibrator(ABC):
    """Ranges of activations from batches seen one at a time; the first half's statistics kept apart."""

    histogram_passes: ClassVar[int] = 0  # extra passes over the data after the extremes

    def __init__(self, options: CalibrationOptions):
        self.options = options
        self.extremes: dict[str, _Extremes] = {}
        self.half_extremes: dict[str, _Extremes] = {}

    def observe(self, activations: dict[str, np.ndarray], first_half: bool) -> None:
        """First pass over the data."""
        for name, seen in _per_tensor(lambda _, values: _Extremes.of(values), activations):
            self.extremes[name] = seen.merge(self.extremes.get(name))
            if first_half:
                self.half_extremes[name] = seen.merge(self.half_extremes.get(name))

    def observe_again(self, activations: dict[str, np.ndarray], first_half: bool) -> None:
        """Later passes, for calibrators that need the extremes of all data first."""

    @abstractmethod
    def ranges(self, first_half: bool = False) -> dict[str, Range]:
        """(lowest, highest) per tensor, from all batches or from the first half only."""


def _per_tensor(reduce: Callable[[str, np.ndarray], Any], activations: dict[str, np.ndarray]) -> list[tuple[str, Any]]:
    """`reduce` of every tensor, (name, result) in the given order, on all cores: numpy's reductions release
    the GIL, and the histograms of the percentile and entropy calibrators took 2/3 of a ResNet-18 calibration."""
    names = list(activations)
    with ThreadPoolExecutor(min(len(names), os.cpu_count() or 1) or 1) as pool:
        results = pool.map(lambda name: reduce(name, activations[name]), names)
        return list(zip(names, results))


class MinMaxCalibrator(Calibrator):
    def ranges(self, first_half: bool = False) -> dict[str, Range]:
        return {name: (e.lowest, e.highest) for name, e in (self.half_extremes if first_half else self.extremes).items()}


class _HistogramCalibrator(Calibrator):
    """A histogram of |x| per tensor on fixed edges: one over all batches, one over the first half."""

    histogram_passes = 1

    def __init__(self, options: CalibrationOptions):
        super().__init__(options)
        self.edges: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.half_counts: dict[str, np.ndarray] = {}

    @abstractmethod
    def histogram_range(self, extremes: _Extremes) -> tuple[np.float32, np.float32]:
        ...

    def observe_again(self, activations: dict[str, np.ndarray], first_half: bool) -> None:
        def histogram(name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # Summing per-batch histograms on the same edges gives exactly the histogram of all values.
            return np.histogram(np.abs(values), bins=self.options.num_bins, range=self.histogram_range(self.extremes[name]))

        for name, (counts, edges) in _per_tensor(histogram, activations):
            if name not in self.counts:
                self.edges[name] = edges
                self.counts[name] = np.zeros_like(counts)
                self.half_counts[name] = np.zeros_like(counts)
            self.counts[name] += counts
            if first_half:
                self.half_counts[name] += counts

    def ranges(self, first_half: bool = False) -> dict[str, Range]:
        extremes = self.half_extremes if first_half else self.extremes
        counts = self.half_counts if first_half else self.counts
        result = {}
        for name, seen in extremes.items():
            threshold = self.threshold(counts[name], self.edges[name])
            result[name] = (max(-threshold, seen.lowest), min(threshold, seen.highest))
        return result

    @abstractmethod
    def threshold(self, counts: np.ndarray, edges: np.ndarray) -> np.float32:
        """The clipping magnitude, a bin edge."""


class PercentileCalibrator(_HistogramCalibrator):
    """ONNX Runtime's symmetric percentile calibrator, batch by batch: `np.histogram` of |x| between
    min |x| and max |x|, the edge where the cumulative share reaches the percentile."""

    options: PercentileOptions

    def histogram_range(self, extremes: _Extremes) -> tuple[np.float32, np.float32]:
        return extremes.least_magnitude, extremes.magnitude

    def threshold(self, counts: np.ndarray, edges: np.ndarray) -> np.float32:
        cumulative = np.cumsum(counts / counts.sum())
        return edges[np.searchsorted(cumulative, self.options.percentile / 100.0)]


class EntropyCalibrator(_HistogramCalibrator):
    """TensorRT's entropy calibration (EntropyCalibration2; see `EntropyOptions` for the source of the numbers)."""

    options: EntropyOptions

    def histogram_range(self, extremes: _Extremes) -> tuple[np.float32, np.float32]:
        return np.float32(0), extremes.magnitude

    def threshold(self, counts: np.ndarray, edges: np.ndarray) -> np.float32:
        if edges[-1] <= 0:
            return edges[-1]
        return edges[kl_optimal_bin(counts, self.options.num_quantized_bins)]


def kl_optimal_bin(counts: np.ndarray, quantized_bins: int) -> int:
    """The number of histogram bins to keep (the threshold is that bin's upper edge) that minimizes
    KL(P || Q), P the histogram clipped there (clipped values added to its last bin), Q the kept bins
    merged into `quantized_bins` levels and spread back evenly over their non-empty bins.

    As in pytorch-quantization: the bin of zeros takes its neighbour's count (a ReLU's spike of exact
    zeros would otherwise drive the choice), ties go to the largest threshold, and kept bin j falls in
    level floor(j * quantized_bins / kept). All candidates at once, from prefix sums: with b the counts,
    T their total, C_i the mass of the first i bins, R_i the mass beyond them, and S_k / W_k the mass and
    the non-empty bins of level k,
        T * KL_i = sum_j p_j log p_j - T log T + T log C_i - sum_k S_k log(S_k / W_k) - R_i log(S_last / W_last)
    where p is b with R_i added to bin i-1 (infinite when that bin is empty and R_i > 0: Q has no mass there).
    """
    bins = counts.astype(np.float64)
    bins[0] = bins[1]
    total = bins.sum()
    mass = np.concatenate([[0.0], np.cumsum(bins)])  # mass[i]: bins 0..i-1
    occupied = np.concatenate([[0], np.cumsum(bins > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        xlogx = np.where(bins > 0, bins * np.log(bins), 0.0)
        self_information = np.concatenate([[0.0], np.cumsum(xlogx)])
        kept = np.arange(quantized_bins, len(bins) + 1)
        starts = (np.arange(quantized_bins + 1)[None, :] * kept[:, None] + quantized_bins - 1) // quantized_bins
        level_mass = mass[starts[:, 1:]] - mass[starts[:, :-1]]
        level_width = occupied[starts[:, 1:]] - occupied[starts[:, :-1]]
        level_term = np.where(level_mass > 0, level_mass * np.log(level_mass / np.maximum(level_width, 1)), 0.0)
        last = bins[kept - 1]
        beyond = total - mass[kept]
        clipped_last = last + beyond
        divergence = (self_information[kept - 1] + np.where(clipped_last > 0, clipped_last * np.log(clipped_last), 0.0)
                      - total * np.log(total) + total * np.log(mass[kept]) - level_term.sum(axis=1)
                      - np.where(beyond > 0, beyond * np.log(level_mass[:, -1] / np.maximum(level_width[:, -1], 1)), 0.0))
    divergence[(mass[kept] == 0) | ((last == 0) & (beyond > 0))] = np.inf
    return int(kept[len(kept) - 1 - np.argmin(divergence[::-1])])


_CALIBRATORS: dict[type, type[Calibrator]] = {
    MinMaxOptions: MinMaxCalibrator, PercentileOptions: PercentileCalibrator, EntropyOptions: EntropyCalibrator,
}


def create_calibrator(options: CalibrationOptions) -> Calibrator:
    try:
        return _CALIBRATORS[type(options)](options)
    except KeyError:
        raise InputError(f"no calibrator for {options!r}") from None


# --- running the model --------------------------------------------------------


def tensors_to_calibrate(model: onnx.ModelProto, op_types: tuple[str, ...]) -> list[str]:
    """Float inputs and outputs (not initializers) of the nodes of `op_types`: the tensors ONNX Runtime's
    calibrators select (CalibraterBase.select_tensors_to_calibrate). `model` must carry inferred shapes."""
    typed = {vi.name: vi for vi in itertools.chain(model.graph.value_info, model.graph.output, model.graph.input)}
    initializers = {init.name for init in model.graph.initializer}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    selected = set()
    for node in model.graph.node:
        if op_types and node.op_type not in op_types:
            continue
        for name in itertools.chain(node.input, node.output):
            info = typed.get(name)
            if (info is not None and name not in initializers and info.type.HasField("tensor_type")
                    and info.type.tensor_type.elem_type in floats):
                selected.add(name)
    return sorted(selected)


@dataclass(frozen=True)
class CalibrationRun:
    ranges: dict[str, Range]  # from all samples
    half_ranges: dict[str, Range] | None  # from the first half of the batches, None when there is one batch
    samples: int
    half_samples: int


# Calibration runs this many images per call on a dynamic-batch copy of the model, fewer when the
# activations it returns (every calibrated tensor, as float32) would pass the byte budget.
CALIBRATION_BATCH = 32
ACTIVATION_BUDGET = 384 << 20


def activation_bytes(model: onnx.ModelProto, tensors: list[str]) -> int | None:
    """Bytes of the calibrated tensors for one image (batch dimension left out), from inferred shapes."""
    typed = {vi.name: vi for vi in itertools.chain(model.graph.value_info, model.graph.output, model.graph.input)}
    total = 0
    for name in tensors:
        dims = typed[name].type.tensor_type.shape.dim if name in typed else None
        if not dims or any(not d.HasField("dim_value") for d in dims[1:]):
            return None
        total += 4 * int(np.prod([d.dim_value for d in dims[1:]], dtype=np.int64))
    return total


def calibration_batch(model: onnx.ModelProto, tensors: list[str]) -> int:
    per_image = activation_bytes(model, tensors)
    if not per_image:
        return CALIBRATION_BATCH
    return int(max(1, min(CALIBRATION_BATCH, ACTIVATION_BUDGET // per_image)))


def _static_batch(model: onnx.ModelProto) -> int | None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


def batches(images, batch: int, pad_to: int | None = None) -> Iterator[np.ndarray]:
    """Float32 batches of `batch` images from an array or a streamed `Dataset`; with `pad_to` (a static-batch
    model, which takes only full batches), a short last one is topped up from the start."""
    from edgeresnet.calibration import Dataset

    data = images if isinstance(images, Dataset) else Dataset(np.asarray(images), None, "array")
    head = None
    for chunk in data.batches(batch):
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if head is None:
            head = chunk
        if pad_to and len(chunk) != pad_to:
            fill = np.concatenate([head] * -(-(pad_to - len(chunk)) // len(head)))[: pad_to - len(chunk)]
            chunk = np.concatenate([chunk, fill])
        yield chunk


def calibrate(model: onnx.ModelProto, tensors: list[str], images, batch: int | None, calibrator: Calibrator,
              on_batch: Callable[[int], None] | None = None) -> CalibrationRun:
    """Run `model` (shape-inferred) over `images` (an array or a streamed `Dataset`) and let `calibrator`
    reduce each batch of `tensors`.

    The model runs `batch` images per call: a static-batch model only at its own batch (the last batch
    topped up from the start), a dynamic-batch one at any (None: `calibration_batch`, by the size of its
    activations). Graph optimizations are off, as in ONNX Runtime's calibrators, so that the activations
    are those of the graph as written. Memory: one batch of images and activations, never the data set.
    """
    import onnxruntime as ort

    if len(images) == 0:
        raise InputError("no calibration samples")
    static = _static_batch(model)
    if static:
        batch = static
    elif batch is None:
        batch = calibration_batch(model, tensors)
    augmented = onnx.ModelProto.FromString(model.SerializeToString())
    typed = {vi.name: vi for vi in itertools.chain(augmented.graph.value_info, augmented.graph.input)}
    outputs = {o.name for o in augmented.graph.output}
    augmented.graph.output.extend(typed[name] for name in tensors if name not in outputs)
    session = ort.InferenceSession(augmented.SerializeToString(), session_options(optimize=False),
                                   providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    count = -(-len(images) // batch)
    if static:  # whole batches: the first half of them
        half_samples = (count // 2) * batch if count > 1 else 0
    else:  # any batch: the first half of the samples, a batch that straddles it split in two
        half_samples = len(images) // 2 if len(images) > 1 else 0

    def activations() -> Iterator[tuple[dict[str, np.ndarray], bool]]:
        start = 0
        for chunk in batches(images, batch, pad_to=static):
            values = dict(zip(tensors, session.run(tensors, {input_name: chunk})))
            if on_batch:
                on_batch(len(chunk))
            split = half_samples - start
            if 0 < split < len(chunk) and all(v.shape[:1] == (len(chunk),) for v in values.values()):
                yield {name: v[:split] for name, v in values.items()}, True
                yield {name: v[split:] for name, v in values.items()}, False
            else:
                yield values, start < half_samples
            start += len(chunk)
            del values

    for values, first_half in activations():
        calibrator.observe(values, first_half)
    for _ in range(calibrator.histogram_passes):
        for values, first_half in activations():
            calibrator.observe_again(values, first_half)
    return CalibrationRun(calibrator.ranges(), calibrator.ranges(first_half=True) if half_samples else None,
                          len(images), min(half_samples, len(images)))


@dataclass(frozen=True)
class ScaleStability:
    """How much the activation scales still moved between the first half of the samples and all of them."""

    half_samples: int
    max_relative_change: float | None  # None: one batch only, nothing to compare
    tensor: str | None  # the activation whose scale moved most
    threshold: float = STABILITY_THRESHOLD

    @property
    def trusted(self) -> bool:
        return self.max_relative_change is not None and self.max_relative_change <= self.threshold

    def warning(self, samples: int) -> str | None:
        if self.max_relative_change is None:
            return f"calibration on {samples} samples in one batch: scale stability not measurable; calibrate on more samples"
        if not self.trusted:
            return (f"calibration on {samples} samples is too small to trust: the scale of {self.tensor} changes by "
                    f"{self.max_relative_change:.1%} between the first {self.half_samples} samples and all "
                    f"(threshold {self.threshold:.0%}); calibrate on more samples")
        return None

    def summary(self) -> Stability:
        change = None if self.max_relative_change is None else round(self.max_relative_change, 6)
        return Stability(self.half_samples, change, self.tensor, self.threshold, self.trusted)

    def to_dict(self) -> dict:
        return to_json(self.summary())


def stability_threshold(method: CalibrationMethod) -> float:
    return MINMAX_STABILITY_THRESHOLD if method is CalibrationMethod.MINMAX else STABILITY_THRESHOLD


def scale_stability(run: CalibrationRun, symmetric: bool, threshold: float = STABILITY_THRESHOLD) -> ScaleStability:
    """The largest relative change of any activation scale, first half against all samples.

    The scale of an int8 range is proportional to max(|lo|, |hi|) (symmetric) or to
    max(hi, 0) - min(lo, 0) (asymmetric: the range always holds zero), whatever the integer type.
    """
    if run.half_ranges is None:
        return ScaleStability(run.half_samples, None, None, threshold)

    def extent(lo: np.float32, hi: np.float32) -> float:
        return float(max(abs(lo), abs(hi))) if symmetric else float(max(hi, 0) - min(lo, 0))

    changes = {}
    for name, (lo, hi) in run.ranges.items():
        full = extent(lo, hi)
        if full > 0:
            changes[name] = abs(extent(*run.half_ranges[name]) - full) / full
    if not changes:
        return ScaleStability(run.half_samples, 0.0, None, threshold)
    tensor = max(sorted(changes), key=changes.__getitem__)
    return ScaleStability(run.half_samples, changes[tensor], tensor, threshold)
