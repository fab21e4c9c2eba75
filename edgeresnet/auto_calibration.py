"""`--method auto`: every calibration method from the same passes over the data, the best on held-out data shipped.

Calibration methods fail in ways their statistics do not show: on the reference model
entropy clips the spike of Fashion-MNIST's constant background and loses ~15 points,
while min-max follows a single outlying image. So each candidate is judged by what
matters, the logits: the calibration data is split, the candidates are calibrated on
the first part and scored on the rest (the held-out part, never the evaluation set) by
the logits' SQNR against FP32, and the best ships exactly as scored.

Cost: the candidates share one extremes pass and one histogram pass (entropy and mse
read the same histogram of |x| from 0; percentile keeps ONNX Runtime's own from min |x|),
as many model runs as one histogram method; then Q/DQ placement and one short run on
the held-out images per candidate (`benchmarks/calibration_methods.py --auto-cost`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from edgeresnet.calibration import Dataset
from edgeresnet.calibrators import Calibrator, CalibrationRun, Range, _HistogramCalibrator, create_calibrator
from edgeresnet.errors import InputError
from edgeresnet.evaluate import collect_logits, compare, samples_within
from edgeresnet.quant_scheme import AutoOptions, CalibrationMethod, calibration_options
from edgeresnet.runners import OnnxRuntimeRunner
from edgeresnet.schema import CandidateRecord as CandidateScore

# Held-out input values at most (as for per-layer sensitivity): a 28x28 model keeps its share of the
# calibration data (128 of the 512 default images), a 224x224 one 32 images, so scoring stays in seconds.
HELD_OUT_INPUT_BUDGET = 32 * 3 * 224 * 224
MIN_HELD_OUT = 8
IDENTICAL_SCORE = 1e9  # dB standing for logits identical to FP32's (no noise: an unbounded SQNR)


class AllMethodsCalibrator(Calibrator):
    """Every candidate method's statistics from the same batches; calibrators that bin alike share their bins."""

    histogram_passes = 1  # the default candidates include histogram methods

    def __init__(self, options: AutoOptions):
        super().__init__(options)
        self.members: dict[CalibrationMethod, Calibrator] = {}
        histogram_owners: dict[tuple, _HistogramCalibrator] = {}
        for method in options.candidates:
            member = create_calibrator(calibration_options(method))
            member.extremes, member.half_extremes = self.extremes, self.half_extremes
            if isinstance(member, _HistogramCalibrator):
                owner = histogram_owners.setdefault(member.histogram_key, member)
                member.edges, member.counts, member.half_counts = owner.edges, owner.counts, owner.half_counts
            self.members[method] = member
        self.histogram_owners = list(histogram_owners.values())
        self.candidates = options.candidates

    def observe_again(self, activations: dict[str, np.ndarray], first_half: bool) -> None:
        for owner in self.histogram_owners:
            owner.observe_again(activations, first_half)

    def ranges(self, first_half: bool = False) -> dict[str, Range]:
        """The first candidate's ranges; `runs` gives every candidate's."""
        return self.members[self.candidates[0]].ranges(first_half)

    def run_of(self, method: CalibrationMethod, run: CalibrationRun) -> CalibrationRun:
        """One candidate's ranges from the passes that made `run`."""
        member = self.members[method]
        return CalibrationRun(member.ranges(), member.ranges(first_half=True) if run.half_ranges else None,
                              run.samples, run.half_samples)


@dataclass(frozen=True)
class AutoSelection:
    """Which candidate shipped, why, and every candidate's score."""

    candidates: tuple[CandidateScore, ...]  # in the order tried
    winner: CalibrationMethod
    held_out_samples: int
    requested: str = CalibrationMethod.AUTO.value
    score_meaning: str = "logit SQNR against FP32 on held-out calibration images, dB"

    @property
    def reason(self) -> str:
        ranked = sorted(self.candidates, key=lambda c: -c.score)
        best = ranked[0]
        reason = (f"{best.method}: highest logit SQNR against FP32 on {self.held_out_samples} held-out calibration "
                  f"images, {best.score:.2f} dB (top-1 agreement {best.agreement:.2%})")
        if len(ranked) > 1:
            reason += "; then " + ", ".join(f"{c.method} {c.score:.2f} dB" for c in ranked[1:])
        return reason


def split_for_scoring(calibration, input_shape: tuple[int, ...], share: float) -> tuple[object, np.ndarray]:
    """(the images to calibrate on, the held-out images): the last `share` of the calibration data, at most
    `HELD_OUT_INPUT_BUDGET` input values and at least one image, the rest calibrates."""
    total = len(calibration)
    if total < 2:
        raise InputError(f"--method auto holds out part of the calibration data to score the methods on: "
                         f"{total} calibration image(s) is too few; pass more or name a method")
    budget = samples_within(HELD_OUT_INPUT_BUDGET, input_shape, MIN_HELD_OUT)
    held = int(min(max(1, round(total * share)), budget, total - 1))
    fit, scored = np.arange(total - held), np.arange(total - held, total)
    if isinstance(calibration, Dataset):
        return calibration.subset(fit), calibration.take(scored)
    images = np.asarray(calibration)
    return images[: total - held], np.ascontiguousarray(images[total - held :], np.float32)


def score_candidates(prepared: onnx.ModelProto, models: dict[CalibrationMethod, onnx.ModelProto],
                     held_out: np.ndarray) -> AutoSelection:
    """Each candidate's Q/DQ model against `prepared` (FP32) on the held-out images, by logit SQNR."""
    fp32_logits = collect_logits(OnnxRuntimeRunner(prepared.SerializeToString(), any_batch=True), held_out, progress=False)
    scores = []
    for method, model in models.items():
        runner = OnnxRuntimeRunner(model.SerializeToString(), any_batch=True, fuse_qdq=False)
        drift = compare(fp32_logits, collect_logits(runner, held_out, progress=False))
        score = round(float(drift.sqnr_db), 3) if drift.sqnr_db is not None else IDENTICAL_SCORE
        scores.append(CandidateScore(method.value, score, score, drift.agreement, drift.cosine))
    # Ties go to the earlier candidate (min-max first: the range that clips nothing).
    winner = CalibrationMethod(max(scores, key=lambda c: (c.score, -scores.index(c))).method)
    return AutoSelection(tuple(scores), winner, len(held_out))
