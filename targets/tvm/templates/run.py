#!/usr/bin/env python3
"""Run this artifact's TVM library on images or a .npy array, with the model's own preprocessing.

    python3 run.py --images DIR | --npy FILE [--threads N] [--warmup 10] [--json] [--logits-out FILE]

Needs only TVM's runtime and numpy (Pillow for images): pip install apache-tvm==0.27.0.post1
apache-tvm-ffi==0.1.14.post1 numpy, and set TVM_USE_RUNTIME_LIB=1 to load just the runtime.
A folder with one sub-folder per class (named as the model's classes) also gives top-1 accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from device_io import add_input_arguments, run_and_report  # noqa: E402
from preprocessing import Preprocessing  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_input_arguments(parser)
    parser.add_argument("--threads", type=int, default=None, help="TVM runtime threads [default: the profile's core count]")
    args = parser.parse_args()

    config = json.loads((HERE / "deploy.json").read_text())
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads or config["threads"]))
    import tvm.runtime
    from tvm.runtime.vm import VirtualMachine

    device = tvm.runtime.cpu()
    main_fn = VirtualMachine(tvm.runtime.load_module(str(HERE / config["library"])), device)["main"]

    def infer(batch: np.ndarray) -> np.ndarray:
        return main_fn(tvm.runtime.tensor(batch, device)).numpy()

    run_and_report(args, infer, config["input_shape"][0], Preprocessing.from_dict(config["preprocessing"]))


if __name__ == "__main__":
    main()
