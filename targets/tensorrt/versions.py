"""Which TensorRT lines each JetPack offers, per Jetson module, and where each line runs DLA.

Every fact carries its source in SOURCES (also rendered in docs/jetson.md). Where
sources disagree on a patch release, the one cited is used; a shipped calibration
cache is re-stamped with the device's exact version at build time, so the patch
digit in this map never blocks a build.

A JetPack may offer several TensorRT lines: JetPack 7.2.2 bundles 10.16, and
TensorRT 11.4.1 installs beside it on AGX Orin and Thor (its SBSA package).
"""

from __future__ import annotations

from dataclasses import dataclass

# JetPack -> the TensorRT lines a user can run on it, as NVIDIA ships them (the bundled one first).
ORIN_JETPACKS = {"5.1": ("8.5.2",), "6.0": ("8.6.2",), "6.1": ("10.3.0",), "6.2": ("10.3.0",), "7.2": ("10.16.2",)}
AGX_ORIN_JETPACKS = {**ORIN_JETPACKS, "7.2.2": ("10.16.2", "11.4.1")}
XAVIER_JETPACKS = {"5.1": ("8.5.2",)}  # JetPack 6 dropped Xavier
THOR_JETPACKS = {"7.1": ("10.13.3",), "7.2": ("10.16.2",), "7.2.2": ("10.16.2", "11.4.1")}
JETPACK_TENSORRT = {**ORIN_JETPACKS, **AGX_ORIN_JETPACKS, **XAVIER_JETPACKS, **THOR_JETPACKS}

# DLA routes: how a network reaches DLA on a TensorRT line.
CALIBRATION_CACHE = "calibration-cache"  # the Q/DQ-free model + a calibration cache (implicit INT8)
STRONGLY_TYPED = "strongly-typed"  # the Q/DQ model itself: precision from its tensor types


@dataclass(frozen=True)
class DlaLine:
    """A TensorRT line on which this bundle offers DLA, and how."""
    line: str  # "10.3"
    route: str  # CALIBRATION_CACHE or STRONGLY_TYPED
    source: str  # SOURCES key


# Module -> the TensorRT lines with DLA there. Orin's DLA takes the translator's recipe from DLA SW 3.13 on
# (JetPack 6.0, DLA 3.14.1; SOURCES["dla-sw"]): not on JetPack 5.1's 8.5. TensorRT 10.16 has no Orin DLA
# (SOURCES["10.16-dla"]); 11.4.1 restores it on AGX Orin only, strongly typed (SOURCES["11"]). Xavier's DLA
# is not Orin's: NVIDIA's translator recipe applies to Orin DLA only.
ORIN_CACHE_LINES = (DlaLine("8.6", CALIBRATION_CACHE, "dla-sw"), DlaLine("10.3", CALIBRATION_CACHE, "dla-sw"))
DLA_LINES = {
    "Jetson AGX Orin": (*ORIN_CACHE_LINES, DlaLine("11.4", STRONGLY_TYPED, "11")),
    "Jetson Orin NX": ORIN_CACHE_LINES,
}

# Module -> its DLA cores, per module part number where variants differ (the part number is in the device
# tree's `compatible`, e.g. "nvidia,p3767-0001"). Sources: SOURCES["dla-cores"].
DLA_CORES_BY_PART = {
    "Jetson AGX Orin": {"p3701-0000": 2, "p3701-0004": 2, "p3701-0005": 2, "p3701-0008": 2},
    "Jetson Orin NX": {"p3767-0000": 2, "p3767-0001": 1},  # 16 GB: 2 cores; 8 GB: 1
}

SOURCES = {
    "5.1": "JetPack 5.1.x ships TensorRT 8.5.2 (NVIDIA JetPack 5.1.x release notes)",
    "6.0": "JetPack 6.0 ships TensorRT 8.6.2 (NVIDIA JetPack 6.0 release notes)",
    "6.1": "JetPack 6.1 ships CUDA 12.6 and TensorRT 10.3 (docs.pytorch.org/TensorRT getting_started/jetpack, "
           "citing docs.nvidia.com/jetson/jetpack/release-notes)",
    "6.2": "JetPack 6.2 ships CUDA 12.6, TensorRT 10.3, cuDNN 9.3 (docs.pytorch.org/TensorRT getting_started/jetpack, "
           "'Torch-TensorRT in JetPack 6.2')",
    "7.1": "JetPack 7.0/7.1 (Jetson Linux 38.x) are for Jetson Thor only (developer.nvidia.com/embedded/jetpack/downloads/"
           "archive-7.1; Jetson Linux 38.4 does not support Orin); TensorRT 10.13.3.9 on Thor (NVIDIA/TensorRT#4590)",
    "7.2": "JetPack 7.2.0 on Jetson Orin NX: Jetson Linux 39.2.0, CUDA 13.2, TensorRT 10.16.2.10 (verified environment "
           "table of github.com/Shattered217/Jetson-Orin-Wheels); trtexec banners v101600-v101602 exist, so the patch "
           "varies with apt updates",
    "7.2.2": "JetPack 7.2.2 keeps TensorRT 10.16 and lets AGX Orin and Thor install TensorRT 11.4.1 beside it, the "
             "SBSA package (docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-10x-to-11x-jetson.html)",
    "11": "No JetPack for Orin ships TensorRT 11.0; TensorRT 11.4.1 installs on JetPack >= 7.2.2 (SBSA package) for AGX "
          "Orin and Thor, and restores DLA on AGX Orin only, with strongly typed networks: precision from the tensor "
          "types, i.e. the explicit Q/DQ model (TensorRT 11.4.1 docs: 'Working with DLA', 'Strongly Typed Networks for "
          "DLA', and the 10.x -> 11.x Jetson migration guide)",
    "10.16-dla": "TensorRT 10.16.1 release notes: Orin iGPU supported through the SBSA build, 'Orin DLA is not supported "
                 "at this time'; TensorRT 11.4.1/11.5.0 'Working with DLA': 10.7 was the last 10.x release with DLA",
    "dla-sw": "NVIDIA/Deep-Learning-Accelerator-SW tools/qdq-translator README: 'For usage with DLA, you need at least "
              "DLA SW 3.13.0' (Jetson Orin: JetPack 6.0, DLA 3.14.1); the recipe applies to Orin DLA only",
    "dla-cores": "DLA cores: Jetson AGX Orin 2, Orin NX 16GB (P3767-0000) 2, Orin NX 8GB (P3767-0001) 1, Orin Nano 0, "
                 "Xavier NX/AGX 2, Thor 0 (NVIDIA Jetson Orin module data sheets and the Jetson modules comparison)",
    "thor": "Jetson Thor: compute capability 11.0 under CUDA 13 (SM101 renumbered SM110 in the CUDA 13.0 release notes; "
            "openxla/xla#30514), no DLA (TensorRT 11.4.1 Jetson migration guide: 'Jetson Thor has no DLA'; DRIVE OS "
            "TensorRT 10.10.10 release properties: NVIDIA Thor, DLA: No)",
    "dla": "DLA runs only implicitly quantized INT8 in TensorRT 8.5-10.x: a Q/DQ network falls back to the GPU "
           "(NVIDIA/TensorRT#2222); NVIDIA's route is a Q/DQ-free model + calibration cache "
           "(NVIDIA/Deep-Learning-Accelerator-SW tools/qdq-translator)",
}


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def tensorrt_versions(jetpack_tensorrt: dict[str, tuple[str, ...]]) -> list[str]:
    """The distinct TensorRT versions of a JetPack -> TensorRT lines map, oldest first."""
    return sorted({v for versions in jetpack_tensorrt.values() for v in versions}, key=version_tuple)


def tensorrt_line(version: str) -> str:
    """'10.16.2' -> '10.16': the release line a shipped calibration cache serves (any patch)."""
    major, minor = (version.split(".") + ["0"])[:2]
    return f"{int(major)}.{int(minor)}"


def dla_lines(module: str) -> tuple[DlaLine, ...]:
    return DLA_LINES.get(module, ())


def dla_route(module: str, version: str) -> str | None:
    """How this bundle reaches DLA on `module` with TensorRT `version`; None where that line has no DLA there."""
    line = tensorrt_line(version)
    return next((d.route for d in dla_lines(module) if d.line == line), None)


def describe_dla_lines(module: str) -> str:
    """'8.6, 10.3 (calibration cache), 11.4 (strongly typed Q/DQ)': what the refusals name."""
    lines = dla_lines(module)
    if not lines:
        return "none"
    by_route: dict[str, list[str]] = {}
    for d in lines:
        by_route.setdefault(d.route, []).append(d.line)
    names = {CALIBRATION_CACHE: "calibration cache", STRONGLY_TYPED: "strongly typed Q/DQ"}
    return ", ".join(f"{', '.join(found)} ({names[route]})" for route, found in by_route.items())


def float_layer_precision(version: str, dla: str | None = None) -> str:
    """The precision TensorRT gives a layer kept in float (an FP16-typed region of model.onnx, see precision.py)."""
    if dla == CALIBRATION_CACHE:
        return "FP16 (DLA, --int8 --fp16, --layerPrecisions fp16)"
    if dla == STRONGLY_TYPED:
        return "FP16 (DLA, strongly typed: the FP16-typed ONNX region)"
    if version_tuple(version)[0] < 10:
        return "FP16 (FP16-typed ONNX region; weakly typed --int8 --fp16, so the builder may still pick FP32 where faster)"
    return "FP16 (FP16-typed ONNX region; strongly typed, so exactly its ONNX type)"
