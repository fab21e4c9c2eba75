"""Runs under qemu-aarch64: one warm-up and K inferences of one runtime, then saves the guest's memory map.

    python one_inference.py {tvm|onnxruntime} MODEL_FILE SHAPE_JSON K MAPS_OUT

Single-threaded and with a fixed input, so the block counts of two runs differ only by the K inferences.
"""

import json
import os
import sys

# numpy seeds its global generator from OS entropy at import, and the bit length of that
# entropy changes how long the seeding runs: fixed bytes keep the instruction counts fixed.
os.urandom = lambda size: b"\x5a" * size

import numpy as np  # noqa: E402

runtime, model, shape, repeats, maps_out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

if runtime == "tvm":
    import tvm.runtime
    from tvm.runtime.vm import VirtualMachine

    main = VirtualMachine(tvm.runtime.load_module(model), tvm.runtime.cpu())["main"]
    tensor = tvm.runtime.tensor(x, tvm.runtime.cpu())

    def infer():
        main(tensor)
else:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}

    def infer():
        session.run(None, feed)

infer()
for _ in range(repeats):
    infer()
with open("/proc/self/maps") as maps, open(maps_out, "w") as out:
    out.write(maps.read())
