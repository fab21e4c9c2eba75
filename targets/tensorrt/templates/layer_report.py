#!/usr/bin/env python3
"""Where an engine's layers ran and in which precision, from TensorRT's exported layer information.

    python3 layer_report.py engines/<key>.layers.json [--dla] [--json]

Reads the JSON that `trtexec --exportLayerInfo` (with --profilingVerbosity=detailed)
or IEngineInspector.get_engine_information(LayerInformationFormat.JSON) writes:
{"Layers": [{"Name", "LayerType", "Inputs": [{"Format/Datatype": ...}], "Outputs": [...]}, ...]}.
A layer whose LayerType is "DLA" is a subgraph running on the DLA; all others run on
the GPU. For GPU builds it checks that each residual block of bundle.json became one
INT8 layer holding its Conv and Add (TensorRT names a fused layer "conv + add + relu")
and warns when one did not. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BOOKKEEPING = ("Reformat", "NoOp", "Shuffle", "Constant")


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
    """A layer's compute precision, read from its output tensor (its input for an INT8->float boundary is a reformat)."""
    outputs = layer.get("Outputs") or layer.get("Inputs") or [{}]
    return precision_of(outputs[0])


def summarize(info: dict, residual_blocks: list[dict], dla: bool) -> dict:
    layers = info.get("Layers", [])
    if layers and isinstance(layers[0], str):
        return {"detailed": False, "warnings": ["layer information has names only: build with --profilingVerbosity=detailed"]}
    summary = {"detailed": True, "layers": 0, "dla": 0, "gpu": 0, "bookkeeping": 0,
               "precision": {"DLA": {}, "GPU": {}}, "warnings": [], "fused_residual_blocks": 0}
    for layer in layers:
        kind = layer.get("LayerType", "")
        if kind in BOOKKEEPING:
            summary["bookkeeping"] += 1
            continue
        device = "DLA" if kind == "DLA" else "GPU"
        summary["layers"] += 1
        summary[device.lower()] += 1
        precision = layer_precision(layer)
        summary["precision"][device][precision] = summary["precision"][device].get(precision, 0) + 1
    if dla and summary["dla"] == 0:
        summary["warnings"].append("no layer runs on the DLA: every layer fell back to the GPU")
    if not dla:
        for block in residual_blocks:
            fused = next((layer for layer in layers
                          if {block["conv"], block["add"]} <= set(part.strip() for part in str(layer.get("Name", "")).split(" + "))), None)
            if fused is not None and layer_precision(fused) == "INT8":
                summary["fused_residual_blocks"] += 1
            elif fused is not None:
                summary["warnings"].append(f"residual block {block['add']}: Conv+Add fused but outputs {layer_precision(fused)}, not INT8")
            else:
                summary["warnings"].append(f"residual block {block['add']}: {block['conv']} and the Add are not one fused layer")
    return summary


def describe(summary: dict) -> str:
    if not summary.get("detailed"):
        return "\n".join(f"warning: {w}" for w in summary["warnings"])
    parts = [f"{summary['layers']} layers: {summary['dla']} on DLA, {summary['gpu']} on GPU "
             f"(+{summary['bookkeeping']} reformat/no-op)"]
    for device in ("DLA", "GPU"):
        counts = summary["precision"][device]
        if counts:
            parts.append(f"{device} precision: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if summary["fused_residual_blocks"]:
        parts.append(f"{summary['fused_residual_blocks']} residual blocks fused into one INT8 Conv+Add+ReLU layer each")
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
        sys.exit(f"layer_report.py: cannot read {args.layers_json}: {exc}")
    print(json.dumps(summary, indent=2) if args.json else describe(summary))


if __name__ == "__main__":
    main()
