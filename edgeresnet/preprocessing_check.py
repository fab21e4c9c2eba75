"""Does the described preprocessing fit the model? Checked in seconds, before calibration, with or without labels.

Two measurements on a small sample of the user's own images:

* **First BatchNorm statistics** (no labels needed). The BatchNorm right after the stem
  convolution kept the mean and variance of that convolution's output over the training
  data (`running_mean`, `running_var`): what the model learned about its input. The same
  convolution on the user's sample, preprocessed as described, gives per-channel means and
  variances; the distance is the median over channels of
  ``sqrt(((mean - running_mean) / running_std)^2 + ln(var / running_var)^2)``. Inputs
  preprocessed as in training land near 0 (a different data set of the same kind: well
  under 1); pixels on the wrong scale or normalized twice land at 2 and above.
* **FP32 top-1 of the alternatives** (labelled data). The common preprocessings (RGB/BGR,
  [0, 1] or 0..255 pixels, ImageNet, Caffe, [-1, 1] or no normalization; for image files
  also the resize filter and center crop vs straight resize) are ranked by their statistics
  distance and the three closest are scored on up to 64 images, the leader against the
  description on up to 256.

The description is judged clearly worse when an alternative scores above the near-chance gate,
is right on at least 3% more of the same images and the difference is significant (McNemar's
test, z >= 2), or, without labels, when its statistics distance is above 1.5 and an
alternative's is under a third of
it. Near chance with no better alternative, the model or the labels are the likely cause.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgeresnet.calibration import Dataset, sample_indices
from edgeresnet.evaluate import samples_within
from edgeresnet.preprocessing import Preprocessing

STATS_SAMPLES = 64
SCORED_SAMPLES = 64
CONFIRM_SAMPLES = 256
SCORED_BUDGET = 64 * 3 * 96 * 96  # input values scored per candidate
SCORED_CANDIDATES = 3  # alternatives scored on labels, closest statistics first
BETTER_SHARE = 0.03  # an alternative right on this share more of the images ...
BETTER_Z = 2.0  # ... and significantly so (McNemar)
FAR_DISTANCE = 1.5  # statistics this far off without labels ...
CLOSER_FACTOR = 3.0  # ... while an alternative is this many times closer

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # on 0..255 BGR pixels, std 1 (Caffe's ResNet, Detectron's)

# name, pixel scale, mean and std in RGB order
NORMALIZATIONS = (
    ("ImageNet mean/std on [0,1]", 1.0, IMAGENET_MEAN, IMAGENET_STD),
    ("Caffe mean on 0..255", 255.0, CAFFE_MEAN_BGR[::-1], (1.0, 1.0, 1.0)),
    ("plain [0,1] pixels", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    ("plain 0..255 pixels", 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    ("[-1,1] pixels", 1.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
)


@dataclass
class Candidate:
    name: str
    preprocessing: Preprocessing
    distance: float = math.nan  # first-BatchNorm statistics distance
    correct: np.ndarray | None = field(default=None, repr=False)  # per scored image: right or not

    @property
    def top1(self) -> float | None:
        return None if self.correct is None else float(self.correct.mean() * 100)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bn_distance": round(self.distance, 4), "top1": self.top1,
                "samples": None if self.correct is None else len(self.correct)}


@dataclass
class PreprocessingCheck:
    """What the check measured and concluded: `verdict` ok | mismatch | model_or_labels | unchecked."""

    verdict: str
    described: Candidate | None
    best: Candidate | None
    candidates: list[Candidate]
    source: str
    labelled: bool
    seconds: float
    message: str | None = None
    options: str | None = None  # the options that select the better preprocessing

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "labelled": self.labelled, "source": self.source, "seconds": round(self.seconds, 2),
                "described": self.described.to_dict() if self.described else None,
                "best": self.best.to_dict() if self.best else None, "options": self.options, "message": self.message,
                "candidates": [c.to_dict() for c in self.candidates]}


def options_for(chosen: Preprocessing, described: Preprocessing) -> str:
    """The command-line options that turn `described` into `chosen`."""
    def numbers(values: tuple[float, ...]) -> str:
        return ",".join(f"{v:g}" for v in values)

    parts = []
    if chosen.channel_order != described.channel_order and chosen.channels == 3:
        parts.append(f"--channel-order {chosen.channel_order}")
    if (chosen.pixel_scale, chosen.mean, chosen.std) != (described.pixel_scale, described.mean, described.std):
        parts.append(f"--pixel-scale {chosen.pixel_scale:g} --mean {numbers(chosen.mean)} --std {numbers(chosen.std)}")
    if chosen.resize != described.resize:
        parts.append(f"--resize {chosen.resize or 0}")
    if chosen.interpolation != described.interpolation:
        parts.append(f"--interpolation {chosen.interpolation}")
    return " ".join(parts)


def candidates_for(described: Preprocessing, geometry: bool) -> list[Candidate]:
    """The description first, then the common alternatives (each once)."""
    found = [Candidate("as described", described)]
    seen = {_key(described)}
    orders = ("RGB", "BGR") if described.channels == 3 else (described.channel_order,)
    for order in orders:
        for name, scale, mean, std in NORMALIZATIONS:
            if order == "BGR":
                mean, std = mean[::-1], std[::-1]
            if described.channels == 1:
                mean, std = (sum(mean) / 3,), (sum(std) / 3,)
            option = replace(described, channel_order=order, pixel_scale=scale, mean=tuple(mean), std=tuple(std))
            label = f"{name}, {order}" if described.channels == 3 else name
            if _key(option) not in seen:
                seen.add(_key(option))
                found.append(Candidate(label, option))
        if described.channels == 3 and order != described.channel_order:
            option = replace(described, channel_order=order)
            if _key(option) not in seen:
                seen.add(_key(option))
                found.append(Candidate(f"as described, {order}", option))
    if geometry:
        found.extend(geometry_variants(described, seen))
    return found


def geometry_variants(base: Preprocessing, seen: set | None = None) -> list[Candidate]:
    """The other resize filter, the other of center crop and straight resize, then both: cheapest changes first."""
    seen = seen if seen is not None else {_key(base)}
    height, width = base.input_size
    other_filter = "bicubic" if base.interpolation == "bilinear" else "bilinear"
    other_resize = None if base.resize else round(min(height, width) * 256 / 224)
    variants = []
    for resize, interpolation in ((base.resize, other_filter), (other_resize, base.interpolation), (other_resize, other_filter)):
        option = replace(base, resize=resize, interpolation=interpolation)
        if _key(option) not in seen:
            seen.add(_key(option))
            geometry = f"resize {resize} + center crop" if resize else "straight resize"
            variants.append(Candidate(f"{geometry}, {interpolation}", option))
    return variants


def _key(p: Preprocessing) -> tuple:
    return (p.channel_order, p.pixel_scale, tuple(round(v, 6) for v in p.mean), tuple(round(v, 6) for v in p.std),
            p.resize, p.interpolation, p.antialias)


class _Sample:
    """The sample's unnormalized pixels, decoded once per geometry."""

    def __init__(self, data: Dataset, index: np.ndarray):
        self.data, self.index, self._pixels = data, index, {}

    def tensors(self, p: Preprocessing, count: int) -> np.ndarray | None:
        key = (p.resize, p.interpolation, p.antialias)
        have = self._pixels.get(key)
        if have is None or len(have) < count:
            have = self.data.unit_pixels(self.index[:count], p)
            if have is None:
                return None
            self._pixels[key] = have
        return p.normalize_unit(have[:count])


def bn_distance(module, x: np.ndarray) -> float:
    """Median over channels of how far the stem convolution's output statistics are from the first BatchNorm's."""
    import torch

    with torch.no_grad():
        y = module.conv1(torch.from_numpy(x)).double()
    mean = y.mean(dim=(0, 2, 3)).numpy()
    var = y.var(dim=(0, 2, 3)).numpy()
    running_mean = module.bn1.running_mean.double().numpy()
    running_var = module.bn1.running_var.double().numpy()
    live = running_var > 1e-8 * max(float(running_var.max()), 1e-30)
    shift = (mean - running_mean)[live] / np.sqrt(running_var[live])
    spread = np.log(np.maximum(var[live], 1e-30) / running_var[live])
    return float(np.median(np.sqrt(shift ** 2 + spread ** 2)))


def _correct(module, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        logits = torch.cat([module(torch.from_numpy(x[i:i + 32])) for i in range(0, len(x), 32)])
    return logits.argmax(1).numpy() == labels


def _better(best: np.ndarray, described: np.ndarray) -> bool:
    """Right on BETTER_SHARE more of the same images, significantly (McNemar's z on the discordant pairs)."""
    gained, lost = int(np.sum(best & ~described)), int(np.sum(described & ~best))
    if gained + lost == 0:
        return False
    return (gained - lost) >= BETTER_SHARE * len(best) and (gained - lost) / math.sqrt(gained + lost) >= BETTER_Z


def check_preprocessing(module, preprocessing: Preprocessing, data: Dataset, num_classes: int, chance_gate: float,
                        sources: str, seed: int = 0) -> PreprocessingCheck:
    """Score the description and the common alternatives on a sample of `data` (see the module's docstring)."""
    import torch

    threads = torch.get_num_threads()
    # Small batches on one thread: a busy machine's cores make PyTorch's thread pool wait far longer than it computes.
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            return _check(module, preprocessing, data, num_classes, chance_gate, sources, seed)
    finally:
        torch.set_num_threads(threads)


def _check(module, preprocessing: Preprocessing, data: Dataset, num_classes: int, chance_gate: float,
           sources: str, seed: int) -> PreprocessingCheck:
    started = time.perf_counter()
    # Fewer images as they grow: 64 scored (256 to confirm) up to 96x96 RGB, at least 16 (32) at 224x224.
    scored_samples = min(SCORED_SAMPLES, samples_within(SCORED_BUDGET, preprocessing.input_shape, 16))
    confirm_samples = min(CONFIRM_SAMPLES, samples_within(4 * SCORED_BUDGET, preprocessing.input_shape, 32))
    index = sample_indices(len(data), confirm_samples, seed)
    sample = _Sample(data, index)
    labelled = data.labels is not None
    geometry = data.files is not None
    described_x = sample.tensors(preprocessing, STATS_SAMPLES)
    if described_x is None or not hasattr(module, "bn1"):
        return PreprocessingCheck("unchecked", None, None, [], data.source, labelled, time.perf_counter() - started,
                                  "the data holds preprocessed tensors: nothing to compare")
    candidates = candidates_for(preprocessing, geometry)
    for candidate in candidates:
        candidate.distance = bn_distance(module, sample.tensors(candidate.preprocessing, STATS_SAMPLES))
    described, alternatives = candidates[0], sorted(candidates[1:], key=lambda c: c.distance)

    def verdict(kind: str, best: Candidate | None, message: str | None, options: str | None = None) -> PreprocessingCheck:
        return PreprocessingCheck(kind, described, best, candidates, data.source, labelled,
                                  time.perf_counter() - started, message, options)

    where = f"{len(index) if labelled else STATS_SAMPLES} images from {data.source}"
    if not labelled:
        best = alternatives[0] if alternatives else None
        if best and described.distance > FAR_DISTANCE and best.distance * CLOSER_FACTOR < described.distance:
            options = options_for(best.preprocessing, preprocessing)
            return verdict("mismatch", best, (
                f"the model's first BatchNorm statistics (what it learned about its input) are far from those of "
                f"the described preprocessing ({sources}) on {where}: distance {described.distance:.2f}, against "
                f"{best.distance:.2f} for {best.name} (`{options}`); no labels to score them, so check how the model "
                f"was trained"), options)
        return verdict("ok", best, None)

    labels = data.labels[index]
    count = min(scored_samples, len(index))
    scored = [described, *alternatives[:SCORED_CANDIDATES]]
    for candidate in scored:
        candidate.correct = _correct(module, sample.tensors(candidate.preprocessing, count), labels[:count])
    leader = max(scored[1:], key=lambda c: (c.correct.mean(), -c.distance), default=None)
    if leader is not None and geometry and leader.correct.mean() > described.correct.mean():
        # The leading normalization, also with the other resize filter, and with the other of crop and straight resize.
        for variant in geometry_variants(leader.preprocessing)[:2]:
            variant.name = f"{leader.name}, {variant.name}"
            variant.distance = bn_distance(module, sample.tensors(variant.preprocessing, STATS_SAMPLES))
            variant.correct = _correct(module, sample.tensors(variant.preprocessing, count), labels[:count])
            candidates.append(variant)
            if variant.correct.mean() > leader.correct.mean():
                leader = variant
    if leader is not None and len(index) > count and leader.correct.mean() > described.correct.mean():
        for candidate in (described, leader):  # confirmed on the whole sample
            rest = sample.tensors(candidate.preprocessing, len(index))[count:]
            candidate.correct = np.concatenate([candidate.correct, _correct(module, rest, labels[count:])])
    if (leader is not None and len(leader.correct) == len(described.correct) and leader.top1 >= chance_gate
            and _better(leader.correct, described.correct)):
        options = options_for(leader.preprocessing, preprocessing)
        return verdict("mismatch", leader, (
            f"the described preprocessing ({sources}) scores FP32 top-1 {described.top1:.1f}% on {len(described.correct)} "
            f"labelled images from {data.source}; {leader.name} scores {leader.top1:.1f}% with `{options}`"), options)
    if described.top1 < chance_gate and (leader is None or leader.top1 < chance_gate):
        return verdict("model_or_labels", leader, (
            f"FP32 top-1 {described.top1:.1f}% on {len(described.correct)} labelled images from {data.source} is near "
            f"chance ({100 / num_classes:.1f}% for {num_classes} classes), and none of {len(candidates) - 1} common "
            f"preprocessings does clearly better: the model or the labels are the likely cause"))
    return verdict("ok", leader, None)
