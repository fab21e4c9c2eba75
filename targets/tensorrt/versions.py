"""Which TensorRT each JetPack ships, per Jetson module, and what each TensorRT line can do.

Every fact carries its source in SOURCES (also rendered in docs/jetson.md). Where
sources disagree on a patch release, the one cited is used; a shipped calibration
cache is re-stamped with the device's exact version at build time, so the patch
digit in this map never blocks a build.
"""

from __future__ import annotations

# JetPack -> TensorRT, as NVIDIA ships them.
JETPACK_TENSORRT = {
    "5.1": "8.5.2",
    "6.0": "8.6.2",
    "6.1": "10.3.0",
    "6.2": "10.3.0",
    "7.1": "10.13.3",  # Jetson Thor only (JetPack 7.0/7.1 do not support Orin)
    "7.2": "10.16.2",  # Orin returns with JetPack 7.2 (Jetson Linux 39.2)
}
ORIN_JETPACKS = ("5.1", "6.0", "6.1", "6.2", "7.2")
XAVIER_JETPACKS = ("5.1",)  # JetPack 6 dropped Xavier
THOR_JETPACKS = ("7.1", "7.2")

SOURCES = {
    "5.1": "JetPack 5.1.x ships TensorRT 8.5.2 (NVIDIA JetPack 5.1.x release notes, as quoted in the project's field "
           "notes 'Jetson and TensorRT facts'; not re-checked against NVIDIA's page here)",
    "6.0": "JetPack 6.0 ships TensorRT 8.6.2 (NVIDIA JetPack 6.0 release notes, as quoted in the field notes; not "
           "re-checked here)",
    "6.1": "JetPack 6.1 ships CUDA 12.6 and TensorRT 10.3 (docs.pytorch.org/TensorRT getting_started/jetpack, "
           "citing docs.nvidia.com/jetson/jetpack/release-notes)",
    "6.2": "JetPack 6.2 ships CUDA 12.6, TensorRT 10.3, cuDNN 9.3 (docs.pytorch.org/TensorRT getting_started/jetpack, "
           "'Torch-TensorRT in JetPack 6.2')",
    "7.1": "JetPack 7.0/7.1 (Jetson Linux 38.x) are for Jetson Thor only (developer.nvidia.com/embedded/jetpack/downloads/"
           "archive-7.1; Jetson Linux 38.4 does not support Orin); TensorRT 10.13.3.9 on Thor (NVIDIA/TensorRT#4590)",
    "7.2": "JetPack 7.2.0 on Jetson Orin NX: Jetson Linux 39.2.0, CUDA 13.2, TensorRT 10.16.2.10 (verified environment "
           "table of github.com/Shattered217/Jetson-Orin-Wheels); trtexec banners v101600-v101602 exist, so the patch "
           "varies with apt updates",
    "11": "No JetPack for Orin ships TensorRT 11.0; TensorRT 11.4.1 installs on JetPack >= 7.2.2 (SBSA package) for AGX "
          "Orin and Thor, and restores DLA on AGX Orin only, strongly typed "
          "(docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-10x-to-11x-jetson.html)",
    "thor": "Jetson Thor: compute capability 11.0 under CUDA 13 (SM101 renumbered SM110 in the CUDA 13.0 release notes; "
            "openxla/xla#30514), no DLA (TensorRT 11.4.1 Jetson migration guide: 'Jetson Thor has no DLA'; DRIVE OS "
            "TensorRT 10.10.10 release properties: NVIDIA Thor, DLA: No)",
    "dla": "DLA runs only implicitly quantized INT8 in TensorRT 8.5-10.x: a Q/DQ network falls back to the GPU "
           "(NVIDIA/TensorRT#2222); NVIDIA's route is a Q/DQ-free model + calibration cache "
           "(NVIDIA/Deep-Learning-Accelerator-SW tools/qdq-translator)",
}


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def tensorrt_versions(jetpack_tensorrt: dict[str, str]) -> list[str]:
    """The distinct TensorRT versions of a JetPack -> TensorRT map, oldest first."""
    return sorted(set(jetpack_tensorrt.values()), key=version_tuple)


def tensorrt_line(version: str) -> str:
    """'10.16.2' -> '10.16': the release line a shipped calibration cache serves (any patch)."""
    major, minor = (version.split(".") + ["0"])[:2]
    return f"{int(major)}.{int(minor)}"


def dla_takes_calibration_cache(version: str) -> bool:
    """Implicit INT8 (calibration cache) on DLA: TensorRT 8.5 to 10.x; 11.x removed calibrators."""
    return (8, 5) <= version_tuple(version)[:2] < (11, 0)


def float_layer_precision(version: str, dla: bool = False) -> str:
    """The precision TensorRT gives a layer kept in float (an FP16-typed region of model.onnx, see precision.py)."""
    if dla:
        return "FP16 (DLA, --int8 --fp16, --layerPrecisions fp16)"
    if version_tuple(version)[0] < 10:
        return "FP16 (FP16-typed ONNX region; weakly typed --int8 --fp16, so the builder may still pick FP32 where faster)"
    return "FP16 (FP16-typed ONNX region; strongly typed, so exactly its ONNX type)"
