"""Runs under qemu-aarch64: one warm-up and one counted inference of one runtime, then saves the guest's memory map.

    python one_inference.py {tvm|onnxruntime|litert|ncnn} MODEL_FILE SHAPE_JSON THREADS MAPS_OUT [LAUNCH_OFFSET]

The counting plugin (block_counter.c) is told what to count by lseek calls on a negative file
descriptor, which no program makes and which fail at once (EBADF): the warm-up inference runs
with the cache simulation on, the counted one with counting on too. For TVM the entry of its
parallel-launch function (TVMBackendParallelLaunch) is passed on, so that each launch starts a
parallel region; for LiteRT, pthreadpool's `pthreadpool_parallelize` (LAUNCH_OFFSET: its address in
XNNPACK's library file, found on the host); for ncnn (OpenMP), libgomp's GOMP_parallel; ONNX
Runtime exports no such entry, so its inference is one region.
"""

import ctypes
import json
import os
import sys

# numpy seeds its global generator from OS entropy at import, and the bit length of that
# entropy changes how long the seeding runs: fixed bytes keep the instruction counts fixed.
os.urandom = lambda size: b"\x5a" * size

import numpy as np  # noqa: E402

WARM_MARK, BEGIN_MARK, END_MARK = 0x41524D434F535433, 0x41524D434F535431, 0x41524D434F535432


def tell_plugin(descriptor: int, value: int) -> None:
    try:
        os.lseek(descriptor, value, os.SEEK_SET)
    except OSError:
        pass


runtime, model, shape, threads, maps_out = (sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]),
                                            sys.argv[5])
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

if runtime == "tvm":
    import tvm.runtime
    from tvm.runtime.vm import VirtualMachine

    # TVM's pool takes as many workers as the host's sysfs lists cores of the fastest kind (its
    # default "big cores" mode), and qemu-user shows the guest this machine's /sys: on a 2-core
    # host a 4-thread run would use 2. A board lists its own cores, so the run sets the count
    # the board would get (mode 1: big cores, then `threads` of them).
    import tvm_ffi

    tvm_ffi.get_global_func("runtime.config_threadpool")(1, threads)
    main = VirtualMachine(tvm.runtime.load_module(model), tvm.runtime.cpu())["main"]
    tensor = tvm.runtime.tensor(x, tvm.runtime.cpu())
    library = os.path.join(os.path.dirname(tvm.runtime.__file__), "..", "lib", "libtvm_runtime.so")
    launch = ctypes.cast(ctypes.CDLL(os.path.realpath(library)).TVMBackendParallelLaunch, ctypes.c_void_p).value
    tell_plugin(-2, launch)

    def infer():
        main(tensor)
elif runtime == "litert":
    from ai_edge_litert.interpreter import Interpreter

    # LiteRT's CPU path: the interpreter applies its default delegate, XNNPACK, with this many threads.
    interpreter = Interpreter(model_path=model, num_threads=threads)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = source["quantization"]
    image = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # the .tflite takes NHWC
    with open("/proc/self/maps") as maps:
        base = next(int(line.split("-")[0], 16) for line in maps
                    if line.rstrip().endswith("/libpywrap_litert_common.so") and line.split()[2] == "00000000")
    tell_plugin(-2, base + int(sys.argv[6]))

    def infer():
        interpreter.set_tensor(source["index"], np.clip(np.round(image / scale) + zero_point, -128, 127).astype(np.int8))
        interpreter.invoke()
        interpreter.get_tensor(target["index"])
elif runtime == "ncnn":
    from ncnn_guest import launch_entry, open_network

    _, run = open_network(model, threads)
    chw = x[0]
    tell_plugin(-2, launch_entry())

    def infer():
        run(chw)
else:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Waiting workers block instead of spinning: spinning is not work (the count leaves it out
    # anyway) and only slows the emulation.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}

    def infer():
        session.run(None, feed)

tell_plugin(-1, WARM_MARK)
infer()
tell_plugin(-1, BEGIN_MARK)
infer()
tell_plugin(-1, END_MARK)
with open("/proc/self/maps") as maps, open(maps_out, "w") as out:
    out.write(maps.read())
