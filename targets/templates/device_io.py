"""Inputs, the timed loop, the printout and the device folder that every edgeresnet device runner shares.

Shipped beside run.py in each artifact; needs numpy (and Pillow for images).

What a device command writes (engines and their build records, timing caches,
device-report.json) goes to the device folder: `<artifact>.device` beside the
artifact, or where --device-dir says, never into the artifact, whose manifest
lists exactly what was shipped (`edgeresnet verify` refuses any other file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from device_check import timed_logits
from preprocessing import Preprocessing, class_index_of_folder, is_image_name

DEVICE_FOLDER_SUFFIX = ".device"
EXIT_USAGE = 2


def device_folder(artifact: Path, chosen: str | Path | None = None) -> Path:
    """Where device outputs go: `chosen`, else `<artifact>.device` beside the artifact; never inside the artifact."""
    folder = Path(chosen) if chosen else artifact.with_name(artifact.name + DEVICE_FOLDER_SUFFIX)
    resolved, home = folder.resolve(), artifact.resolve()
    if resolved == home or home in resolved.parents:
        sys.stderr.write(f"--device-dir {folder} is inside the artifact {artifact}: device outputs never mix with "
                         "the shipped files; choose a folder outside it\n")
        raise SystemExit(EXIT_USAGE)
    return folder


def add_device_dir_argument(parser) -> None:
    parser.add_argument("--device-dir", default=None,
                        help="where engines, build records, timing caches and device-report.json go "
                             f"[default: <artifact>{DEVICE_FOLDER_SUFFIX} beside the artifact]")


def report_destination(args, artifact: Path, report_file: str) -> Path:
    """--report as given, else the device folder's `report_file`."""
    return Path(args.report) if args.report else device_folder(artifact, args.device_dir) / report_file


def add_input_arguments(parser, required: bool = True) -> None:
    """--images/--npy and the output options; `required=False` where another mode (run.py --check) needs no input."""
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--images", help="a folder of images (one sub-folder per class gives top-1 accuracy)")
    source.add_argument("--npy", help="uint8 pixels [N,H,W(,C)] or preprocessed float32 [N,C,H,W]")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--logits-out", help="save all logits to this .npy")
    parser.add_argument("--quiet", action="store_true")


def load_inputs(images: str | None, npy: str | None, pre: Preprocessing) -> tuple[np.ndarray, np.ndarray | None]:
    if npy:
        array = np.load(npy, allow_pickle=False)
        return (pre.normalize_uint8(array) if array.dtype == np.uint8 else array.astype(np.float32)), None
    if images is None:
        raise SystemExit("run.py: pass --images or --npy")
    folder = Path(images)
    files = sorted(p for p in folder.rglob("*") if is_image_name(p.name) and p.is_file())
    if not files:
        raise SystemExit(f"run.py: no images in {folder}")
    labels = None
    if all(p.parent != folder for p in files) and pre.class_names:
        indexes = [class_index_of_folder(p.parent.name, pre.class_names) for p in files]
        if all(i is not None for i in indexes):
            labels = np.array(indexes)
    return np.stack([pre.load_image(p) for p in files]), labels


def run_and_report(args, infer: Callable[[np.ndarray], np.ndarray], batch: int, pre: Preprocessing,
                   extra: Callable[[], dict[str, Any]] | None = None) -> None:
    """Time `infer` batch by batch over the inputs, then print (or save) predictions, top-1 and latency."""
    inputs, labels = load_inputs(args.images, args.npy, pre)
    all_logits, latencies = timed_logits(infer, inputs, batch, warmup=args.warmup)
    if args.logits_out:
        np.save(args.logits_out, all_logits)
    predictions = all_logits.argmax(1)
    result: dict[str, Any] = {
        "images": len(inputs),
        "latency_ms": {p: float(np.percentile(latencies, int(p[1:]))) for p in ("p50", "p90", "p99")},
        "predictions": [pre.class_names[i] if i < len(pre.class_names) else int(i) for i in predictions.tolist()],
    }
    if labels is not None:
        result["top1"] = float(np.mean(predictions == labels) * 100)
    added = extra() if extra is not None else {}  # runner-specific facts, e.g. engine-only latency from CUDA events
    result.update(added)
    if args.quiet:
        return
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for i, name in enumerate(result["predictions"][:20]):
        print(f"{i}: {name}")
    lat = result["latency_ms"]
    print(f"{len(inputs)} inputs, batch {batch}: latency p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms, p99 {lat['p99']:.3f} ms")
    for key, value in added.items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in value.items()) if isinstance(value, dict) else value
        print(f"{key}: {shown}")
    if "top1" in result:
        print(f"top-1 {result['top1']:.2f}%")
