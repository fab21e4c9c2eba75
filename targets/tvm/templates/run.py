#!/usr/bin/env python3
"""Run this artifact's TVM library on images or a .npy array, with the model's own preprocessing.

    python3 run.py --images DIR | --npy FILE [--threads N] [--warmup 10] [--json] [--logits-out FILE]
    python3 run.py --check [--images LABELLED_DIR] [--report FILE] [--device-dir DIR] [--min-agreement 99] [--max-extra-drop 0.5]

Needs only TVM's runtime and numpy (Pillow for images): pip install apache-tvm==0.27.0.post1
apache-tvm-ffi==0.1.14.post1 numpy, and set TVM_USE_RUNTIME_LIB=1 to load just the runtime.
A folder with one sub-folder per class (named as the model's classes) also gives top-1 accuracy.
--check runs the golden vectors in golden/ and compares with the host's logits (see device_check.py),
writes device-report.json into the device folder (<artifact>.device beside the artifact, or --device-dir;
--report names another file), and exits 1 when the device drifts past the budget.
Exit codes: 0 ok, 1 drifted past the budget, 2 bad input, 3 missing TVM runtime or numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ in the artifact: `edgeresnet verify` refuses unlisted files
EXIT_MISSING = 3
RUNTIME_INSTALL = "pip install apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 numpy"

try:
    import numpy as np

    from device_check import REPORT_FILE, add_check_arguments, require_inputs, run_check
    from device_io import add_device_dir_argument, add_input_arguments, load_inputs, report_destination, run_and_report
    from preprocessing import Preprocessing
except ImportError as exc:
    sys.stderr.write(f"run.py: the {exc.name} Python package is missing ({RUNTIME_INSTALL})\n")
    sys.exit(EXIT_MISSING)


def runtime_versions(tvm) -> dict[str, str]:
    versions = {"tvm": tvm.__version__}
    try:
        import tvm_ffi

        versions["tvm_ffi"] = getattr(tvm_ffi, "__version__", "unknown")
    except ImportError:
        pass
    return versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_input_arguments(parser, required=False)
    parser.add_argument("--threads", type=int, default=None, help="TVM runtime threads [default: the profile's core count]")
    add_device_dir_argument(parser)
    add_check_arguments(parser, HERE / "golden")
    args = parser.parse_args()
    require_inputs(parser, args)

    config = json.loads((HERE / "deploy.json").read_text())
    threads = args.threads or int(os.environ.get("TVM_NUM_THREADS") or config["threads"])
    os.environ["TVM_NUM_THREADS"] = str(threads)
    if threads > (os.cpu_count() or 1):  # TVM cannot bind more threads than cores and would warn on every run
        os.environ.setdefault("TVM_BIND_THREADS", "0")
    try:
        import tvm.runtime
        from tvm.runtime.vm import VirtualMachine
    except ImportError as exc:
        sys.stderr.write(f"run.py: TVM's runtime cannot be imported ({exc}); {RUNTIME_INSTALL}\n")
        sys.exit(EXIT_MISSING)

    device = tvm.runtime.cpu()
    main_fn = VirtualMachine(tvm.runtime.load_module(str(HERE / config["library"])), device)["main"]

    def infer(batch: np.ndarray) -> np.ndarray:
        return main_fn(tvm.runtime.tensor(batch, device)).numpy()

    pre = Preprocessing.from_dict(config["preprocessing"])
    batch = config["input_shape"][0]
    if args.check:
        args.report = str(report_destination(args, HERE, REPORT_FILE))
        runtime = {**runtime_versions(tvm), "library": config["library"], "target": config["target"], "threads": threads}
        label = f"tvm {tvm.__version__} {os.uname().machine} (run.py, {config['target']} library, {threads} threads)"
        sys.exit(run_check(args, infer, batch, runtime, label, lambda folder: load_inputs(folder, None, pre)))
    run_and_report(args, infer, batch, pre)


if __name__ == "__main__":
    main()
