"""The pipeline: the commands' work, composed from the core and the target backends.

The only layer that imports `edgeresnet.targets`. The core below it (models,
export, quantize, runners, evaluate, report, calibration readers, ...) knows no
backend; the command line above it only parses options and prints results.

    frontend   model -> data -> ONNX -> INT8 Q/DQ (shared by compile, quantize, tune, benchmarks)
    compile    the whole pipeline into one artifact folder
    quantize   the front half alone, to a file
    evaluate   an ONNX model against the FP32 model
    tune       the front half, then the backend's tuner
    golden     the golden vectors every artifact carries for the on-device check
    artifacts  verify, run and bench a finished artifact
    device_report, validate   the device's own measurement folded in beside the host's
                              (from a device-report.json, or run on a device farm)
"""
