"""The clipping thresholds that histogram calibrators search for: TensorRT's KL divergence, pytorch-quantization's MSE.

Pure numpy on one histogram of |x|; `edgeresnet.calibrators` collects the histograms.
"""

from __future__ import annotations

import numpy as np


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


_MSE_CANDIDATES_PER_STEP = 256  # thresholds tried at once: 256 x 2048 float32 errors = 2 MB


def mse_optimal_threshold(counts: np.ndarray, edges: np.ndarray, start_bin: int, levels: int = 127) -> float:
    """The bin centre c_i (i >= start_bin) minimizing sum_j counts_j (q_i(c_j) - c_j)^2, q_i the int8
    fake quantization at threshold c_i (scale levels / c_i, rounded half to even as torch.round, clamped
    at `levels`); the first minimum, as np.argmin in pytorch-quantization's `_compute_amax_mse`."""
    edges = edges.astype(np.float32)  # float32 throughout, as pytorch-quantization computes it
    all_centers = (edges[1:] + edges[:-1]) / np.float32(2)
    occupied = counts > 0  # empty bins add no error: left out
    centers, weights = all_centers[occupied], counts[occupied].astype(np.float32)
    best, best_error = start_bin, np.inf
    for first in range(start_bin, len(all_centers), _MSE_CANDIDATES_PER_STEP):
        thresholds = all_centers[first : first + _MSE_CANDIDATES_PER_STEP, None]
        scale = np.float32(levels) / thresholds
        quantized = np.minimum(np.round(centers[None, :] * scale), levels) / scale
        errors = ((quantized - centers[None, :]) ** 2 * weights).sum(axis=1)
        step_best = int(np.argmin(errors))
        if errors[step_best] < best_error:
            best, best_error = first + step_best, errors[step_best]
    return float(all_centers[min(best, len(all_centers) - 1)])
