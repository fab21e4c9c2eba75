"""Calibrators: activation ranges for INT8 from batches of activations, behind one interface.

`create_calibrator(options)` picks the calibrator from its typed options, as ONNX
Runtime's `create_calibrator` picks one by name (`edgeresnet.quant_scheme`:
`MinMaxOptions`, `PercentileOptions`, `EntropyOptions`, `MseOptions`; `auto`, which runs
them all at once, is `edgeresnet.auto_calibration.AllMethodsCalibrator`). `calibrate` runs the
model with every tensor to calibrate as an output, one batch at a time, and hands
each batch to the calibrator, which reduces it at once: memory holds one batch of
activations and the statistics (extremes, histograms), never the whole data set.
Histogram calibrators see the data twice: extremes first, then histograms with
fixed bin edges.

Why not ONNX Runtime's calibrators through `quantize_static`: it forwards neither
`num_bins` nor `num_quantized_bins`, so its entropy calibrator ran with 128/128 bins
and returned the min-max range. The min-max and percentile
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
from edgeresnet.histogram_search import kl_optimal_bin, mse_optimal_threshold
from edgeresnet.quant_scheme import (CalibrationMethod, CalibrationOptions, EntropyOptions, MinMaxOptions,
                                     MseOptions, PercentileOptions)
from edgeresnet.runners import session_options
from edgeresnet.schema import ClippedSpikeRecord, Stability, to_json

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
# A share of a tensor's values at one level that makes a spike. Entropy calibration on the reference
# model put the input's threshold on the spike of Fashion-MNIST's constant background (50% of the
# values, one 1/2048 bin), leaving the 27% brighter pixels beyond it, all saturated to one int8 code;
# percentile and mse leave at most 0.8% of any tensor beyond their thresholds there.
SPIKE_SHARE = 0.01


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

    def clipped_spikes(self) -> list[ClippedSpike]:
        return []  # a range from the extremes clips nothing


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
    histogram_from_zero: ClassVar[bool] = True  # bins of |x| from 0 (else from min |x|): calibrators alike share them
    options: PercentileOptions | EntropyOptions | MseOptions

    @property
    def histogram_key(self) -> tuple[bool, int]:
        """Calibrators with the same key bin alike, so they can share one histogram."""
        return self.histogram_from_zero, self.options.num_bins

    def __init__(self, options: CalibrationOptions):
        super().__init__(options)
        self.edges: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.half_counts: dict[str, np.ndarray] = {}
        self._thresholds: dict[tuple, np.float32] = {}

    def histogram_range(self, extremes: _Extremes) -> tuple[np.float32, np.float32]:
        return (np.float32(0) if self.histogram_from_zero else extremes.least_magnitude), extremes.magnitude

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
        result = {}
        for name, seen in extremes.items():
            threshold = self._threshold(name, first_half)
            result[name] = (max(-threshold, seen.lowest), min(threshold, seen.highest))
        return result

    def _threshold(self, name: str, first_half: bool) -> np.float32:
        """`threshold` of one tensor's histogram, computed once (searches take up to ~10 ms a tensor)."""
        counts = (self.half_counts if first_half else self.counts)[name]
        key = (name, first_half, int(counts.sum()))  # counts grow while batches arrive
        if key not in self._thresholds:
            self._thresholds[key] = self.threshold(counts, self.edges[name])
        return self._thresholds[key]

    @abstractmethod
    def threshold(self, counts: np.ndarray, edges: np.ndarray) -> np.float32:
        """The clipping magnitude (a bin edge, or a bin centre for mse)."""

    def clipped_spikes(self) -> list[ClippedSpike]:
        """Tensors whose threshold leaves at least `SPIKE_SHARE` of their values beyond it, saturated at one
        int8 code, and whether the threshold sits at a histogram spike (the bin just below it that full)."""
        spikes = []
        for name in sorted(self.counts):
            counts, edges = self.counts[name], self.edges[name]
            total = counts.sum()
            threshold = self._threshold(name, first_half=False)
            beyond = edges[:-1] >= threshold  # bins wholly beyond the threshold
            clipped = counts[beyond].sum() / total if total else 0.0
            if clipped < SPIKE_SHARE:
                continue
            at = max(0, int(np.searchsorted(edges, threshold, side="left")) - 1)  # the bin the threshold closes
            spike = counts[at] / total >= SPIKE_SHARE and edges[at] > 0
            spikes.append(ClippedSpike(name, self.options.method, float(threshold), float(clipped),
                                       float((edges[at] + edges[at + 1]) / 2) if spike else None,
                                       float(counts[at] / total) if spike else None))
        return spikes


@dataclass(frozen=True)
class ClippedSpike:
    """Values beyond a method's threshold, all saturated at one int8 code: a spike the method made, often at one
    it found (a constant background's level, which the threshold was placed on)."""

    tensor: str
    method: CalibrationMethod
    threshold: float
    clipped_share: float  # of the tensor's values beyond the threshold
    spike_magnitude: float | None  # |x| of the histogram spike the threshold sits at, if it does
    spike_share: float | None

    def warning(self) -> str:
        instead = "minmax" if self.method is CalibrationMethod.PERCENTILE else "percentile"
        at = (f" at a histogram spike ({self.spike_share:.1%} of its values at |x| = {self.spike_magnitude:.4g})"
              if self.spike_share else "")
        return (f"{self.method.value} calibration clips {self.tensor} at {self.threshold:.4g}{at}: {self.clipped_share:.1%} "
                f"of its values lie beyond and saturate to one int8 code; --method {instead} keeps them in range")

    def record(self) -> ClippedSpikeRecord:
        return ClippedSpikeRecord(self.tensor, self.method.value, round(self.threshold, 6), round(self.clipped_share, 6),
                                  self.spike_magnitude, None if self.spike_share is None else round(self.spike_share, 6))


class PercentileCalibrator(_HistogramCalibrator):
    """ONNX Runtime's symmetric percentile calibrator, batch by batch: `np.histogram` of |x| between
    min |x| and max |x|, the edge where the cumulative share reaches the percentile."""

    options: PercentileOptions
    histogram_from_zero = False

    def threshold(self, counts: np.ndarray, edges: np.ndarray) -> np.float32:
        cumulative = np.cumsum(counts / counts.sum())
        return edges[np.searchsorted(cumulative, self.options.percentile / 100.0)]


class EntropyCalibrator(_HistogramCalibrator):
    """TensorRT's entropy calibration (EntropyCalibration2; see `EntropyOptions` for the source of the numbers)."""

    options: EntropyOptions

    def threshold(self, counts: np.ndarray, edges: np.ndarray) -> np.float32:
        if edges[-1] <= 0:
            return edges[-1]
        return edges[kl_optimal_bin(counts, self.options.num_quantized_bins)]


class MseCalibrator(_HistogramCalibrator):
    """pytorch-quantization's mse calibration (see `MseOptions` for the source of the numbers)."""

    options: MseOptions

    def threshold(self, counts: np.ndarray, edges: np.ndarray) -> np.float32:
        if edges[-1] <= 0:
            return edges[-1]
        return np.float32(mse_optimal_threshold(counts, edges, self.options.start_bin))


_CALIBRATORS: dict[type, type[Calibrator]] = {
    MinMaxOptions: MinMaxCalibrator, PercentileOptions: PercentileCalibrator, EntropyOptions: EntropyCalibrator,
    MseOptions: MseCalibrator,
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
