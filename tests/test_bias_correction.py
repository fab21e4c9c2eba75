"""Bias correction: each quantized layer's bias moves by its mean INT8 - FP32 output difference, in the scheme's form."""

import numpy as np
import pytest
from onnx import numpy_helper

from edgeresnet.bias_correction import _channel_means, correct_bias
from edgeresnet.quantize import QuantizeConfig, calibrate_and_quantize
from edgeresnet.targets import get_quant_scheme


@pytest.fixture(scope="module")
def reference():
    from edgeresnet.calibration import open_dataset
    from edgeresnet.export import export_onnx_model
    from edgeresnet.models import load_model

    loaded = load_model("resnet20-fmnist")
    return export_onnx_model(loaded), open_dataset("fashion-mnist", loaded.preprocessing, limit=64).images


@pytest.mark.parametrize("scheme, form", [("onnxruntime", "int32"), ("tensorrt", "float")])
def test_biases_move_in_the_schemes_form_and_the_mean_shift_shrinks(reference, scheme, form):
    fp32, images = reference
    int8 = calibrate_and_quantize(fp32, images, QuantizeConfig(get_quant_scheme(scheme), "minmax"), progress=False).model
    corrected, shifts = correct_bias(fp32, int8, images)
    assert len(shifts) >= 20 and {s.form for s in shifts} == {form}
    before = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in corrected.graph.initializer}
    moved = [s.bias for s in shifts if not np.array_equal(before[s.bias], after[s.bias])]
    assert len(moved) >= len(shifts) // 2
    assert all(after[s.bias].dtype == (np.int32 if form == "int32" else np.float32) for s in shifts)
    # The last layer's mean output shift against FP32, on the images corrected on, shrinks.
    last = shifts[-1].layer
    fp32_name = next(n.output[0] for n in fp32.graph.node if n.name == last)
    int8_name = next(n.output[0] for n in int8.graph.node if n.name == last)
    reference_mean = _channel_means(fp32, [fp32_name], images, fuse_qdq=True)[fp32_name]
    gap = {name: np.abs(_channel_means(model, [int8_name], images, fuse_qdq=False)[int8_name] - reference_mean).mean()
           for name, model in (("before", int8), ("after", corrected))}
    assert gap["after"] < gap["before"], gap
