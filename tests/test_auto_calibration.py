"""--method auto: one pass for every method, candidates scored on held-out calibration images, the best shipped."""

import numpy as np
import pytest

from edgeresnet.auto_calibration import AllMethodsCalibrator, split_for_scoring
from edgeresnet.errors import InputError
from edgeresnet.quant_scheme import AutoOptions, CalibrationMethod
from edgeresnet.quantize import QuantizeConfig, calibrate_and_quantize
from edgeresnet.schema import DataSummary, to_json
from edgeresnet.targets import get_quant_scheme


@pytest.fixture(scope="module")
def reference():
    from edgeresnet.calibration import open_dataset
    from edgeresnet.export import export_onnx_model
    from edgeresnet.models import load_model

    loaded = load_model("resnet20-fmnist")
    return export_onnx_model(loaded), open_dataset("fashion-mnist", loaded.preprocessing, limit=96).images


def test_auto_picks_a_clipping_method_when_one_image_is_an_outlier(reference):
    fp32, images = reference
    images = images.copy()
    images[0] *= 50  # one calibration image (in the part calibrated on) scaled x50
    quantized = calibrate_and_quantize(fp32, images, QuantizeConfig(get_quant_scheme("onnxruntime"), "auto"), progress=False)
    record = to_json(quantized.calibration.summary(DataSummary("array", len(images), None, False)))
    scores = {c["method"]: c["score"] for c in record["candidates"]}
    assert set(scores) == {"minmax", "percentile", "entropy", "mse"}
    assert record["requested"] == "auto" and record["method"] != "minmax"
    assert scores[record["method"]] == max(scores.values()) > scores["minmax"] + 3  # dB
    assert record["held_out_samples"] == 24 and record["samples"] == 72
    assert record["method"] in record["why"]
    metadata = {p.key: p.value for p in quantized.model.metadata_props}
    assert metadata["edgeresnet.calibration_method"] == record["method"]


def test_auto_costs_at_most_three_single_methods_in_images_run(reference):
    """The cost in images through a model (deterministic): min-max runs each once, a histogram method twice;
    auto twice on the part it calibrates on, then the held-out part once per candidate and once in FP32."""
    fp32, images = reference
    scheme = get_quant_scheme("onnxruntime")
    runs = {method: calibrate_and_quantize(fp32, images, QuantizeConfig(scheme, method), progress=False).calibration.inferences
            for method in ("minmax", "entropy", "auto")}
    assert runs["minmax"] == 96 and runs["entropy"] == 192
    assert runs["auto"] == 72 * 2 + 24 * 5 <= 3 * runs["minmax"]


def test_candidates_share_their_statistics():
    calibrator = AllMethodsCalibrator(AutoOptions())
    members = calibrator.members
    assert members[CalibrationMethod.ENTROPY].counts is members[CalibrationMethod.MSE].counts  # same bins of |x| from 0
    assert members[CalibrationMethod.PERCENTILE].counts is not members[CalibrationMethod.MSE].counts
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((2, 8)).astype(np.float32) for _ in range(4)]
    for i, batch in enumerate(batches):
        calibrator.observe({"x": batch}, i < 2)
    for i, batch in enumerate(batches):
        calibrator.observe_again({"x": batch}, i < 2)
    assert members[CalibrationMethod.MSE].counts["x"].sum() == 64  # counted once, not once per method
    assert calibrator.ranges()["x"] == (np.float32(min(b.min() for b in batches)), np.float32(max(b.max() for b in batches)))


def test_auto_needs_images_to_hold_out():
    with pytest.raises(InputError, match="too few"):
        split_for_scoring(np.zeros((1, 1, 28, 28), np.float32), (1, 28, 28), 0.25)
    fit, held = split_for_scoring(np.zeros((512, 3, 224, 224), np.float32), (3, 224, 224), 0.25)
    assert len(held) == 32 and len(fit) == 480  # the held-out input budget at 224x224
    with pytest.raises(InputError):
        AutoOptions(candidates=(CalibrationMethod.AUTO,))
