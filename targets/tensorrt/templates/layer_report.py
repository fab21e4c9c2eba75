#!/usr/bin/env python3
"""Where an engine's layers ran and in which precision, from TensorRT's exported layer information.

    python3 layer_report.py engines/<key>.layers.json [--dla] [--json]

Reads the JSON that `trtexec --exportLayerInfo` (with --profilingVerbosity=detailed)
or IEngineInspector.get_engine_information(LayerInformationFormat.JSON) writes:
{"Layers": [{"Name", "LayerType", "Inputs": [{"Format/Datatype": ...}], "Outputs": [...]}, ...]},
or, without detailed profiling, {"Layers": ["name", ...]} (NVIDIA/TensorRT#4020).
A layer whose LayerType is "DLA" is a subgraph running on the DLA (in a DLA build a
names-only "{ForeignNode[...]}" is one too); "<tensor> to nvm", "<tensor> from nvm"
and "<tensor> copy finish" move tensors into and out of DLA memory (layer names in
NVIDIA/TensorRT#3143) and count as bookkeeping with the reformats. All other layers
run on the GPU. A layer's precision is its output's Format/Datatype, or its weights'
type where dynamic shapes leave the format "N/A". For GPU builds it checks that each
residual block of bundle.json became one INT8 layer holding its Conv and Add
(TensorRT names a fused layer "conv + add + relu") and warns when one did not.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BOOKKEEPING = ("Reformat", "NoOp", "Shuffle", "Constant")
DLA_MEMORY_SUFFIXES = (" to nvm", " from nvm", " copy finish")  # DLA engines move tensors to and from DLA memory


def precision_of(tensor: dict) -> str:
    text = str(tensor.get("Format/Datatype", "")).lower()
    if "int8" in text:
        return "INT8"
    if "half" in text or "fp16" in text:
        return "FP16"
    if "float" in text or "fp32" in text:
        return "FP32"
    return "unknown"


def layer_precision(layer: dict) -> str:
    """A layer's compute precision: its output tensor's format (its input for an INT8->float boundary is a
    reformat), else its weights' type (dynamic shapes leave the format "N/A due to dynamic shapes")."""
    outputs = layer.get("Outputs") or layer.get("Inputs") or [{}]
    precision = precision_of(outputs[0])
    if precision == "unknown" and isinstance(layer.get("Weights"), dict):
        precision = precision_of({"Format/Datatype": layer["Weights"].get("Type", "")})
    return precision


def _kind(layer: dict, dla: bool) -> str:
    """'DLA', 'GPU' or 'bookkeeping'; names-only information is classified by the names TensorRT gives."""
    name = str(layer.get("Name", ""))
    kind = layer.get("LayerType")
    if kind in BOOKKEEPING or name.endswith(DLA_MEMORY_SUFFIXES) or name.startswith("Reformatting CopyNode"):
        return "bookkeeping"
    if kind == "DLA" or (kind is None and dla and name.startswith("{ForeignNode[")):
        return "DLA"
    return "GPU"


def summarize(info: dict, residual_blocks: list[dict], dla: bool) -> dict:
    layers = [layer if isinstance(layer, dict) else {"Name": str(layer)} for layer in info.get("Layers", [])]
    detailed = all("LayerType" in layer for layer in layers)
    summary = {"detailed": detailed, "layers": 0, "dla": 0, "gpu": 0, "bookkeeping": 0,
               "precision": {"DLA": {}, "GPU": {}}, "warnings": [], "fused_residual_blocks": 0}
    if not detailed:
        summary["warnings"].append("layer information has names only (no precision): build with --profilingVerbosity=detailed")
    for layer in layers:
        kind = _kind(layer, dla)
        if kind == "bookkeeping":
            summary["bookkeeping"] += 1
            continue
        summary["layers"] += 1
        summary[kind.lower()] += 1
        if detailed:
            precision = layer_precision(layer)
            summary["precision"][kind][precision] = summary["precision"][kind].get(precision, 0) + 1
    if dla and summary["dla"] == 0:
        summary["warnings"].append("no layer runs on the DLA: every layer fell back to the GPU")
    if not dla:
        for block in residual_blocks:
            fused = next((layer for layer in layers
                          if {block["conv"], block["add"]} <= set(part.strip() for part in str(layer.get("Name", "")).split(" + "))), None)
            if fused is not None and (not detailed or layer_precision(fused) == "INT8"):
                summary["fused_residual_blocks"] += 1
            elif fused is not None:
                summary["warnings"].append(f"residual block {block['add']}: Conv+Add fused but outputs {layer_precision(fused)}, not INT8")
            else:
                summary["warnings"].append(f"residual block {block['add']}: {block['conv']} and the Add are not one fused layer")
    return summary


def describe(summary: dict) -> str:
    parts = [f"{summary['layers']} layers: {summary['dla']} on DLA, {summary['gpu']} on GPU "
             f"(+{summary['bookkeeping']} reformat/no-op)"]
    for device in ("DLA", "GPU"):
        counts = summary["precision"][device]
        if counts:
            parts.append(f"{device} precision: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if summary["fused_residual_blocks"]:
        precision = "INT8 " if summary["detailed"] else ""
        parts.append(f"{summary['fused_residual_blocks']} residual blocks fused into one {precision}Conv+Add+ReLU layer each")
    parts += [f"warning: {w}" for w in summary["warnings"]]
    return "\n".join(parts)


def report(layers_json: Path, dla: bool, config: dict | None = None) -> dict:
    config = config if config is not None else json.loads((HERE / "bundle.json").read_text())
    summary = summarize(json.loads(layers_json.read_text()), config.get("residual_blocks", []), dla)
    layers_json.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layers_json", type=Path)
    parser.add_argument("--dla", action="store_true", help="the engine was built for a DLA core")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        summary = report(args.layers_json, args.dla)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"layer_report.py: cannot read {args.layers_json}: {exc}\n")
        sys.exit(2)
    print(json.dumps(summary, indent=2) if args.json else describe(summary))


if __name__ == "__main__":
    main()
