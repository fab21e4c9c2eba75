"""Runs under qemu-aarch64 with ncnn's aarch64 wheel: an ncnn network set up as ncnn's own benchncnn sets it up.

    python ncnn_guest.py logits PARAM INPUTS_NPY THREADS OUT_NPY   (the conversion check: logits of each input)

one_inference.py imports `open_network` and `launch_entry` for the counted inference.

Options are benchncnn's (ncnn's benchmark/benchncnn.cpp), which is how ncnn's published board
timings were taken: lightmode, Winograd and sgemm
convolution, packing layouts, int8 inference for a quantized model (its int8 layers carry their
scales), fp16 storage/packing/arithmetic where the core has it (ncnn turns them off at run time on
a core without fp16 arithmetic, such as the Cortex-A72). Blobs and workspace come from the pool
allocators the network makes itself when given none (ncnn's net.cpp), as benchncnn's own pools
(size compare ratio 0) but locked; Python-owned allocators would be freed before the network at
exit. A PARAM without a .bin beside it is loaded with zero weights, as benchncnn loads its
benchmark models.
"""

import ctypes
import glob
import os
import sys

import numpy as np

import ncnn


def open_network(param: str, threads: int):
    """The network, ready to run, and a function taking one CHW float32 image to its flat output."""
    net = ncnn.Net()
    opt = net.opt
    opt.lightmode = True
    opt.num_threads = threads
    opt.use_winograd_convolution = True
    opt.use_sgemm_convolution = True
    opt.use_int8_inference = True
    opt.use_fp16_packed = True
    opt.use_fp16_storage = True
    opt.use_fp16_arithmetic = True
    opt.use_int8_storage = True
    opt.use_int8_arithmetic = True
    opt.use_packing_layout = True
    net.opt = opt
    if net.load_param(param) != 0:
        raise SystemExit(f"ncnn could not read {param}")
    weights = param[: -len(".param")] + ".bin"
    loaded = net.load_model(weights) if os.path.isfile(weights) else net.load_model(ncnn.DataReaderFromEmpty())
    if loaded != 0:
        raise SystemExit(f"ncnn could not load the weights of {param}")
    source, sink = net.input_names()[0], net.output_names()[0]

    def run(image: np.ndarray) -> np.ndarray:
        extractor = net.create_extractor()
        extractor.input(source, ncnn.Mat(np.ascontiguousarray(image, dtype=np.float32)))
        _, out = extractor.extract(sink)
        return np.array(out).reshape(-1)

    return net, run


def launch_entry() -> int:
    """Address of libgomp's GOMP_parallel, the call that opens each of ncnn's OpenMP parallel regions."""
    folder = os.path.join(os.path.dirname(os.path.dirname(ncnn.__file__)), "ncnn.libs")
    library = ctypes.CDLL(os.path.realpath(glob.glob(os.path.join(folder, "libgomp*.so*"))[0]))
    return ctypes.cast(library.GOMP_parallel, ctypes.c_void_p).value


if __name__ == "__main__" and sys.argv[1] == "logits":
    param, inputs, threads, out = sys.argv[2], np.load(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    _, run = open_network(param, threads)
    np.save(out, np.stack([run(image) for image in inputs]))
