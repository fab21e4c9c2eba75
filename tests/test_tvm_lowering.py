"""The Q/DQ model lowered to integer Relax (`targets/tvm/lowering.py`)."""

import numpy as np

from edgeresnet.evaluate import collect_logits
from edgeresnet.targets import get_target
from edgeresnet.targets.tvm.module import host_cpu
from edgeresnet.targets.tvm.runners import TvmHostRunner


def test_folding_the_first_convolution_is_exact(reference_qdq, tmp_path):
    """The 1-channel 3x3 stem folded into 3 (padded to 8) channels x 1 column gives bit-identical logits."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend import onnx as relax_onnx

    from edgeresnet.targets.tvm.backend import llvm_target
    from edgeresnet.targets.tvm.dot import folds_first_convolution, reads_rows_flat
    from edgeresnet.targets.tvm.lowering import lower_to_integer
    from edgeresnet.targets.tvm.pipeline import cpu_pipeline
    from edgeresnet.targets.tvm.rules import ScheduleStats

    assert folds_first_convolution(tvm.target.Target(llvm_target(get_target("rpi4"))))
    assert not folds_first_convolution(tvm.target.Target(llvm_target(get_target("rpi5"))))
    assert reads_rows_flat(tvm.target.Target(llvm_target(get_target("rpi5"))))
    assert not reads_rows_flat(tvm.target.Target(llvm_target(get_target("rpi4"))))
    _, qdq, test = reference_qdq
    imported = relax_onnx.from_onnx(qdq, shape_dict={"input": [1, 1, 28, 28]}, keep_params_in_input=False)
    host = tvm.target.Target({"kind": "llvm", "mcpu": host_cpu()})
    images = test.images[:32]
    logits = {}
    for fold in (False, True):
        mod, _ = lower_to_integer(imported, fold_first_convolution=fold)
        relax.build(mod, target=host, relax_pipeline=cpu_pipeline(host, ScheduleStats())).export_library(str(tmp_path / f"{fold}.so"))
        logits[fold] = collect_logits(TvmHostRunner(tmp_path / f"{fold}.so", 1, 2, str(fold)), images, progress=False)
    assert np.array_equal(logits[True], logits[False])
