"""Compile at data-set scale: peak memory and time per stage on a folder of 224x224 JPEGs.

Generates (once, cached under ~/.cache/edgeresnet/) a folder of N JPEGs cut from the
photos matplotlib ships (random square crops, scales and mirror flips, seeded), then
runs under `/usr/bin/time -v`:

  edgeresnet compile --target ort-cpu --model resnet18 --calib FOLDER --eval FOLDER
  edgeresnet compile --target ort-cpu --model resnet50 --calib FOLDER --calib-samples 1024 --eval FOLDER --eval-samples 512
  edgeresnet compile --target rpi5 --model resnet18 --calib FOLDER --eval FOLDER --eval-samples 100   (--cases resnet18-rpi5)

and prints each run's peak resident memory, wall time and the compile's own stage
times (manifest.json `build.stages`), with the machine's load average before and
after (this is a shared machine: the figures are only as good as the load allows).
Issue 14's bars: peak RSS <= 3 GB; resnet18 whole compile <= 20 min and resnet50
calibration <= 3 min on 2 cores. Issue 11's: the rpi5 compile of resnet18 <= 3 min.

    python benchmarks/data_scale.py [--images 20000] [--cases resnet18,resnet50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeresnet"
PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
SIZE = 224
CASES = {
    "resnet18": ["--target", "ort-cpu", "--model", "resnet18"],
    "resnet50": ["--target", "ort-cpu", "--model", "resnet50", "--calib-samples", "1024", "--eval-samples", "512"],
    # Issue 11's build time: the TVM library for the board, its host twin, the emulated sample.
    "resnet18-rpi5": ["--target", "rpi5", "--model", "resnet18", "--eval-samples", "100"],
}
BARS = {"peak_rss_gb": 3.0, "resnet18_seconds": 20 * 60, "resnet50_calibration_seconds": 3 * 60,
        "resnet18_rpi5_seconds": 3 * 60}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def photo_folder(count: int, seed: int = 0) -> Path:
    """N 224x224 JPEGs from matplotlib's sample photos; built once per (count, seed) and kept."""
    import matplotlib
    from PIL import Image, ImageOps

    folder = CACHE / f"data-scale-{count}-seed{seed}"
    done = folder / ".complete"
    if done.is_file():
        return folder
    log(f"generating {count} JPEGs in {folder} (once)")
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(matplotlib.get_data_path()) / "sample_data"
    photos = [Image.open(source / name).convert("RGB") for name in PHOTOS]
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(min(photo.size) * rng.uniform(0.3, 1.0))
        left = int(rng.integers(0, photo.size[0] - side + 1))
        top = int(rng.integers(0, photo.size[1] - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        crop.save(folder / f"{i:06d}.jpg", quality=90)
    done.write_text(f"{count} images, seed {seed}\n")
    return folder


def run_case(name: str, folder: Path, extra: list[str]) -> dict:
    edgeresnet = Path(sys.executable).with_name("edgeresnet")
    with tempfile.TemporaryDirectory(prefix="edgeresnet-data-scale-") as tmp:
        out = Path(tmp) / name
        # Not --json: with progress on, calibration and evaluation leave their images/s on stderr.
        command = ["/usr/bin/time", "-v", str(edgeresnet), "compile", "--calib", str(folder), "--eval", str(folder),
                   *extra, "--out", str(out)]
        load_before = os.getloadavg()
        log(f"{name}: {' '.join(command[2:])}")
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        load_after = os.getloadavg()
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
        rates = [line for line in result.stderr.splitlines() if "img/s" in line]
        row = {"case": name, "command": " ".join(command[2:]), "exit": result.returncode, "wall_seconds": round(wall, 1),
               "peak_rss_gb": round(int(rss.group(1)) / 1024 ** 2, 2) if rss else None, "rates": rates,
               "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in load_after]}
        if result.returncode != 0:
            row["error"] = [line for line in result.stderr.splitlines() if line.startswith("edgeresnet:")][-3:]
            return row
        manifest = json.loads((out / "manifest.json").read_text())
        row["stages"] = manifest["build"]["stages"]
        row["compile_seconds"] = manifest["build"]["seconds"]
        report = json.loads((out / "report.json").read_text())
        row.update(calib_samples=report["samples"], eval_samples=report["int8"]["samples"], drop_pts=report["drop_pts"],
                   agreement=report["agreement"])
        return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="JPEGs in the generated folder")
    parser.add_argument("--cases", default="resnet18,resnet50", help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown or args.images < 1:
        parser.error(f"unknown case(s) {', '.join(unknown)}" if unknown else "--images must be at least 1")
    if not Path("/usr/bin/time").is_file():
        parser.error("/usr/bin/time is missing: install Debian's 'time' (scripts/setup.sh does)")
    folder = photo_folder(args.images, args.seed)
    rows = []
    for name in cases:
        row = run_case(name, folder, CASES[name])
        rows.append(row)
        log(json.dumps(row))
    result = {"images": args.images, "folder": str(folder), "cpus": os.cpu_count(), "bars": BARS, "runs": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.images} JPEGs of {SIZE}x{SIZE} in {folder}; {os.cpu_count()} CPUs")
    print("| case | exit | peak RSS GB | wall s | stages (s) | load 1-min before/after |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        stages = ", ".join(f"{k} {v}" for k, v in row.get("stages", {}).items())
        print(f"| {row['case']} | {row['exit']} | {row['peak_rss_gb']} | {row['wall_seconds']} | {stages} | "
              f"{row['load_before'][0]} / {row['load_after'][0]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
