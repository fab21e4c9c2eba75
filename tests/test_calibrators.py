"""The calibrators: entropy clips outliers, the three methods differ on the reference model, min-max and
percentile give exactly ONNX Runtime's ranges, the KL search matches its definition, stability is measured."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeresnet.calibrators import (STABILITY_THRESHOLD, EntropyCalibrator, MinMaxCalibrator, PercentileCalibrator,
                                    calibrate, create_calibrator, kl_optimal_bin, scale_stability, stability_threshold,
                                    tensors_to_calibrate)
from edgeresnet.errors import InputError
from edgeresnet.quant_scheme import CalibrationMethod, EntropyOptions, MinMaxOptions, PercentileOptions, calibration_options
from edgeresnet.quantize import QuantizeConfig, calibrate_and_quantize
from edgeresnet.schema import DataSummary, to_json
from edgeresnet.targets import get_quant_scheme


def _feed(calibrator, batches):
    half = len(batches) // 2
    for index, batch in enumerate(batches):
        calibrator.observe({"x": batch}, index < half)
    for _ in range(calibrator.histogram_passes):
        for index, batch in enumerate(batches):
            calibrator.observe_again({"x": batch}, index < half)
    return calibrator


def _relu_with_outliers(seed=0, batches=8, outlier=12.0):
    """ReLU-like activations (half exact zeros, the rest below ~2.4) with three far outliers per batch."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        values = np.maximum(rng.standard_normal((1, 16, 28, 28)).astype(np.float32), 0) * 0.5
        values.flat[rng.integers(0, values.size, 3)] = rng.uniform(6, outlier, 3)
        out.append(values)
    return out


def test_entropy_clips_outliers_that_minmax_keeps():
    data = _relu_with_outliers()
    minmax = _feed(MinMaxCalibrator(MinMaxOptions()), data).ranges()["x"]
    entropy = _feed(EntropyCalibrator(EntropyOptions()), data).ranges()["x"]
    assert minmax[0] == 0 and entropy[0] == 0  # ReLU data: the range starts at zero
    assert minmax[1] == max(float(d.max()) for d in data)
    assert entropy[1] < 0.3 * minmax[1], (entropy, minmax)
    assert entropy[1] > np.percentile(np.concatenate([d.ravel() for d in data]), 99)  # the bulk stays in range


def test_percentile_is_an_option():
    data = _relu_with_outliers()
    high = _feed(PercentileCalibrator(PercentileOptions(percentile=99.999)), data).ranges()["x"][1]
    low = _feed(PercentileCalibrator(PercentileOptions(percentile=99.0)), data).ranges()["x"][1]
    assert low < high
    assert np.isclose(low, np.percentile(np.abs(np.concatenate([d.ravel() for d in data])), 99.0), rtol=0.01)


def _direct_kl_bin(counts, levels):
    """The definition, one candidate at a time (as pytorch-quantization's loop computes it)."""
    bins = counts.astype(np.float64)
    bins[0] = bins[1]
    best, argument = np.inf, None
    for kept in range(levels, len(bins) + 1):
        p = bins[:kept].copy()
        p[-1] += bins[kept:].sum()
        level = np.digitize(np.arange(kept), np.linspace(0, kept, levels + 1)) - 1
        nonzero = bins[:kept] != 0
        q = np.zeros(kept)
        for k in range(levels):
            members = (level == k) & nonzero
            if members.any():
                q[members] = bins[:kept][level == k].sum() / members.sum()
        if q.sum() == 0:
            continue
        p, q = p / p.sum(), q / q.sum()
        support = p > 0
        divergence = np.inf if np.any(q[support] == 0) else np.sum(p[support] * np.log(p[support] / q[support]))
        if divergence <= best:
            best, argument = divergence, kept
    return argument


@pytest.mark.parametrize("seed", range(4))
def test_kl_search_matches_its_definition(seed):
    rng = np.random.default_rng(seed)
    values = [np.abs(rng.standard_normal(5000)), rng.exponential(1, 5000), np.maximum(rng.standard_normal(5000), 0),
              rng.uniform(0, 1, 5000)][seed]
    values = np.concatenate([values, rng.uniform(0, 20, 4)])
    counts, _ = np.histogram(values, bins=256, range=(0, values.max()))
    assert kl_optimal_bin(counts, 32) == _direct_kl_bin(counts, 32)


@pytest.fixture(scope="module")
def reference():
    from edgeresnet.calibration import open_dataset
    from edgeresnet.export import export_onnx_model
    from edgeresnet.models import load_model

    loaded = load_model("resnet20-fmnist")
    data = open_dataset("fashion-mnist", loaded.preprocessing, limit=32)
    return export_onnx_model(loaded), data.images


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_minmax_and_percentile_reproduce_onnxruntime(reference, method, tmp_path):
    """ONNX Runtime's own calibrators, as quantize_static configured them, give the very same ranges."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator as ort_calibrator

    fp32, images = reference
    model = onnx.shape_inference.infer_shapes(fp32)
    onnx.save(model, tmp_path / "fp32.onnx")
    op_types = get_quant_scheme("tvm").op_types

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([images[i : i + 1] for i in range(len(images))])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    ort_method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]
    theirs = ort_calibrator(tmp_path / "fp32.onnx", list(op_types), str(tmp_path / "augmented.onnx"), ort_method)
    theirs.collect_data(Reader())
    expected = {name: data.range_value for name, data in theirs.compute_data().items()}
    ours = calibrate(model, tensors_to_calibrate(model, op_types), images, 1, create_calibrator(calibration_options(method)))
    assert set(ours.ranges) == set(expected)
    for name, (lo, hi) in ours.ranges.items():
        assert (np.float32(lo), np.float32(hi)) == (np.float32(expected[name][0]), np.float32(expected[name][1])), name


def _activation_scales(model):
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: float(constants[n.input[1]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in constants}


def test_three_methods_give_different_scales_on_the_reference_model(reference):
    fp32, images = reference
    scheme = get_quant_scheme("tensorrt")
    results = {method: calibrate_and_quantize(fp32, images, QuantizeConfig(scheme, method), progress=False)
               for method in ("minmax", "percentile", "entropy")}
    scales = {method: _activation_scales(result.model) for method, result in results.items()}
    names = sorted(scales["minmax"])
    assert names and all(sorted(s) == names for s in scales.values())
    vectors = {method: np.array([s[n] for n in names]) for method, s in scales.items()}
    for a, b in (("minmax", "percentile"), ("minmax", "entropy"), ("percentile", "entropy")):
        assert not np.array_equal(vectors[a], vectors[b]), (a, b)
    assert np.all(vectors["entropy"] <= vectors["minmax"] * (1 + 1e-6))  # clipping only ever narrows a range
    assert np.all(vectors["percentile"] <= vectors["minmax"] * (1 + 1e-6))
    assert vectors["entropy"].mean() < vectors["minmax"].mean()
    record = to_json(results["entropy"].calibration.summary(DataSummary("array", len(images), None, False)))
    assert record["method"] == "entropy" and record["num_bins"] == 2048 and record["num_quantized_bins"] == 128
    assert record["samples"] == len(images) and record["stability"]["first_half_samples"] == len(images) // 2


def test_stability_flags_a_sample_whose_second_half_moves_the_scale():
    quiet = [np.full((1, 4), v, np.float32) for v in (1.0, 2.0, 2.0, 2.0)]  # half: max 2, all: max 2
    jumpy = [np.full((1, 4), v, np.float32) for v in (1.0, 1.0, 2.0, 3.0)]  # half: max 1, all: max 3
    for data, trusted in ((quiet, True), (jumpy, False)):
        calibrator = _feed(MinMaxCalibrator(MinMaxOptions()), data)
        run = type("Run", (), {"ranges": calibrator.ranges(), "half_ranges": calibrator.ranges(first_half=True),
                               "half_samples": 2})()
        stability = scale_stability(run, symmetric=True)
        assert stability.trusted is trusted
        assert (stability.warning(4) is None) is trusted
    assert stability.max_relative_change == pytest.approx(2 / 3) and stability.max_relative_change > STABILITY_THRESHOLD
    assert "too small to trust" in stability.warning(4)
    assert stability_threshold(CalibrationMethod.MINMAX) > stability_threshold(CalibrationMethod.PERCENTILE) == STABILITY_THRESHOLD
    assert scale_stability(run, symmetric=True, threshold=0.7).trusted  # a 67% move passes a 70% threshold


def test_one_batch_cannot_be_judged(reference):
    fp32, images = reference
    model = onnx.shape_inference.infer_shapes(fp32)
    scheme = get_quant_scheme("onnxruntime")
    run = calibrate(model, tensors_to_calibrate(model, scheme.op_types), images[:1], 1, create_calibrator(MinMaxOptions()))
    stability = scale_stability(run, scheme.activation_symmetric)
    assert run.half_ranges is None and stability.max_relative_change is None and not stability.trusted
    assert "not measurable" in stability.warning(1)


def test_options_are_typed_and_checked():
    assert calibration_options("percentile", 99.9) == PercentileOptions(percentile=99.9)
    assert calibration_options("entropy") == EntropyOptions(num_bins=2048, num_quantized_bins=128)
    assert isinstance(create_calibrator(calibration_options("entropy")), EntropyCalibrator)
    assert QuantizeConfig(get_quant_scheme("tvm")).calibration == PercentileOptions()
    with pytest.raises(InputError, match="applies to the percentile method"):
        calibration_options("entropy", 99.9)
    with pytest.raises(InputError, match=r"\[90, 100\)"):
        PercentileOptions(percentile=100.0)
    with pytest.raises(InputError, match="unknown calibration method"):
        calibration_options("kl")


def _direct_mse_threshold(counts, edges, start_bin):
    """pytorch-quantization's _compute_amax_mse, one candidate at a time, in float32 as it computes."""
    counts, edges = counts.astype(np.float32), edges.astype(np.float32)
    centers = (edges[1:] + edges[:-1]) / np.float32(2)
    errors = []
    for i in range(start_bin, len(centers)):
        scale = np.float32(127) / centers[i]
        quantized = np.minimum(np.round(centers * scale), 127) / scale
        errors.append(((quantized - centers) ** 2 * counts).sum())
    return float(centers[start_bin + int(np.argmin(errors))])


@pytest.mark.parametrize("seed", range(3))
def test_mse_search_matches_its_definition(seed):
    from edgeresnet.histogram_search import mse_optimal_threshold

    rng = np.random.default_rng(seed)
    values = [rng.exponential(1, 20000), np.maximum(rng.standard_normal(20000), 0), np.abs(rng.standard_normal(20000))][seed]
    values = np.concatenate([values, rng.uniform(0, 30, 5)])
    counts, edges = np.histogram(values, bins=2048, range=(0, values.max()))
    expected = _direct_mse_threshold(counts, edges, 128)
    assert mse_optimal_threshold(counts, edges, 128) == pytest.approx(expected, rel=1e-6)
    assert expected < values.max()


def test_mse_weighs_outliers_by_their_squared_error():
    """Three outliers per batch cost more clipped than the coarser step costs the bulk: mse keeps most of
    their range, where entropy (test above) clips them."""
    data = _relu_with_outliers()
    minmax = _feed(MinMaxCalibrator(MinMaxOptions()), data).ranges()["x"][1]
    mse = _feed(create_calibrator(calibration_options("mse")), data).ranges()["x"][1]
    entropy = _feed(EntropyCalibrator(EntropyOptions()), data).ranges()["x"][1]
    assert entropy < mse < minmax
    assert mse > np.percentile(np.concatenate([d.ravel() for d in data]), 99)


def test_four_methods_give_different_scales_on_the_reference_model(reference):
    fp32, images = reference
    scheme = get_quant_scheme("tensorrt")
    scales = {method: _activation_scales(calibrate_and_quantize(fp32, images, QuantizeConfig(scheme, method), progress=False).model)
              for method in ("minmax", "percentile", "entropy", "mse")}
    names = sorted(scales["mse"])
    vectors = {method: np.array([s[n] for n in names]) for method, s in scales.items()}
    for other in ("minmax", "percentile", "entropy"):
        assert not np.array_equal(vectors["mse"], vectors[other]), other
    assert np.all(vectors["mse"] <= vectors["minmax"] * (1 + 1e-6))


def test_a_threshold_on_a_histogram_spike_is_named(reference):
    """Entropy on the reference model puts the input's threshold on the background's spike; percentile does not."""
    fp32, images = reference
    scheme = get_quant_scheme("onnxruntime")
    entropy = calibrate_and_quantize(fp32, images, QuantizeConfig(scheme, "entropy"), progress=False).calibration
    spikes = {spike.tensor: spike for spike in entropy.spikes}
    assert "input" in spikes and spikes["input"].spike_share > 0.3 and spikes["input"].clipped_share > 0.1
    assert any("clips input" in w and "--method percentile" in w for w in entropy.warnings)
    assert entropy.summary(DataSummary("array", len(images), None, False)).clipped_spikes
    percentile = calibrate_and_quantize(fp32, images, QuantizeConfig(scheme, "percentile"), progress=False).calibration
    assert percentile.spikes == ()
