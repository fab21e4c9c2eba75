"""Layers kept in float run FP16 on every TensorRT: an FP16-typed region in the ONNX.

Without it the same float layer computes FP16 under TensorRT 8.x's weakly typed
`--int8 --fp16` but FP32 under 10.x's `--stronglyTyped` and 11.x (strongly typed
only), so one bundle would compute differently from one JetPack to the next and
from what the host measured. NVIDIA's 10->11 migration guide gets FP16 back with
an FP16-typed ONNX (ModelOpt AutoCast); this does the same for the layers an
accuracy fallback kept in float: their float inputs are cast to FP16, their
weights stored in FP16, and their outputs cast back to FP32, so every TensorRT
version, DLA (pinned with --layerPrecisions) and ONNX Runtime on the host compute
them in FP16 alike.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def fp16_regions(model: onnx.ModelProto, layers: list[str]) -> onnx.ModelProto:
    """`model` with each named node computing in FP16 between casts; tensor names outside the region unchanged."""
    if not layers:
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    wanted = set(layers)
    ordered: list[onnx.NodeProto] = []
    added_inits: dict[str, str] = {}
    for node in graph.node:
        if node.name not in wanted:
            ordered.append(node)
            continue
        for index, name in enumerate(node.input):
            if not name:
                continue
            if name in inits:
                if inits[name].data_type != TensorProto.FLOAT:
                    continue
                if name not in added_inits:
                    half = numpy_helper.from_array(numpy_helper.to_array(inits[name]).astype(np.float16), f"{name}_fp16")
                    graph.initializer.append(half)
                    added_inits[name] = half.name
                node.input[index] = added_inits[name]
            else:
                cast = f"{node.name}_input{index}_fp16"
                ordered.append(helper.make_node("Cast", [name], [cast], name=f"{node.name}_cast_in{index}", to=TensorProto.FLOAT16))
                node.input[index] = cast
        outputs = list(node.output)
        for index, name in enumerate(outputs):
            node.output[index] = f"{name}_fp16"
        ordered.append(node)
        for index, name in enumerate(outputs):
            ordered.append(helper.make_node("Cast", [f"{name}_fp16"], [name], name=f"{node.name}_cast_out{index}", to=TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(ordered)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    onnx.checker.check_model(model)
    return model
