"""The golden vectors in Polygraphy's JSON formats: `polygraphy run model.onnx --trt --load-inputs ...
--load-outputs ...` on the Jetson is a second route to compare the engine with the host."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

POLYGRAPHY_INPUTS, POLYGRAPHY_OUTPUTS = "polygraphy_inputs.json", "polygraphy_outputs.json"
# Polygraphy's JSON is base64 of each array: beyond this the files would dwarf the model, so they hold a prefix.
POLYGRAPHY_MAX_BYTES = 32 << 20
POLYGRAPHY_RUNNER = "edgeresnet-host-int8"
# Polygraphy compares element-wise; INT8 engines may round differently, so the tolerance is a share of the logit range.
POLYGRAPHY_ATOL_SHARE = 0.05


def polygraphy_array(array: np.ndarray) -> dict[str, str]:
    """One numpy array as Polygraphy's JSON encoder writes it: base64 of `np.save` bytes, tagged with its class."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return {"array": base64.b64encode(buffer.getvalue()).decode(), "polygraphy_class": "ndarray"}


@dataclass(frozen=True)
class PolygraphyGolden:
    """An ONNX model in the artifact that `polygraphy run` can check against the golden vectors on the
    device; Polygraphy's feed dicts and outputs are keyed by the model's input and output names."""

    model_file: str
    input_name: str
    output_name: str
    batch: int
    dynamic: bool = False  # a dynamic batch dimension: Polygraphy is told the golden batch's shape
    name: str = "polygraphy"  # golden.json's key

    def write(self, folder: Path, inputs: np.ndarray, logits: np.ndarray) -> tuple[dict[str, Any], list[str]]:
        """`--load-inputs`: a list of feed dicts (one per iteration, the engine's batch each); `--load-outputs`: RunResults."""
        batch = self.batch
        per_iteration = max(1, inputs[:1].nbytes * batch)
        iterations = min(-(-len(inputs) // batch), max(1, POLYGRAPHY_MAX_BYTES // per_iteration))
        # A short last batch is padded with its last row, as the runners pad it (same input, same logits).
        padding = iterations * batch - len(inputs) if iterations * batch > len(inputs) else 0
        inputs = np.concatenate([inputs, np.repeat(inputs[-1:], padding, axis=0)])
        logits = np.concatenate([logits, np.repeat(logits[-1:], padding, axis=0)])
        feeds, results = [], []
        for i in range(iterations):
            rows = slice(i * batch, (i + 1) * batch)
            feeds.append({self.input_name: polygraphy_array(inputs[rows])})
            results.append({
                "outputs": {self.output_name: {"values": polygraphy_array(logits[rows]), "polygraphy_class": "LazyArray"}},
                "runtime": None, "runner_name": POLYGRAPHY_RUNNER, "polygraphy_class": "IterationResult",
            })
        (folder / POLYGRAPHY_INPUTS).write_text(json.dumps(feeds, indent=4) + "\n")
        run_results = {"lst": [[POLYGRAPHY_RUNNER, results]], "polygraphy_class": "RunResults"}
        (folder / POLYGRAPHY_OUTPUTS).write_text(json.dumps(run_results, indent=4) + "\n")
        atol = round(POLYGRAPHY_ATOL_SHARE * float(np.abs(logits).max()), 4)
        common = (f"polygraphy run {self.model_file} --trt --load-inputs {folder.name}/{POLYGRAPHY_INPUTS} "
                  f"--load-outputs {folder.name}/{POLYGRAPHY_OUTPUTS} --atol {atol} --rtol 0")
        if self.dynamic:
            common += f" --input-shapes {self.input_name}:[{','.join(str(d) for d in inputs[:batch].shape)}]"
        meta = {
            "iterations": iterations, "batch": batch, "samples": min(iterations * batch, len(inputs) - padding),
            "input_name": self.input_name, "output_name": self.output_name, "runner_name": POLYGRAPHY_RUNNER,
            "atol": atol, "rtol": 0.0,
            "commands": {"tensorrt_8": f"{common} --int8 --fp16", "tensorrt_10": f"{common} --strongly-typed",
                         "tensorrt_11": f"{common} --strongly-typed"},
        }
        return meta, [POLYGRAPHY_INPUTS, POLYGRAPHY_OUTPUTS]
