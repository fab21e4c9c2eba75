#!/usr/bin/env bash
# Build the TensorRT engine for this bundle on the Jetson itself, with trtexec.
#
#   ./build_engine.sh [--dla N | --fp16-baseline] [--force] [--device-dir DIR]
#
# GPU (default): the Q/DQ INT8 model.onnx. --dla N: DLA core N with GPU fallback, where
# this TensorRT line has DLA on the module (bundle.env DLA_LINES): the Q/DQ-free
# model.dla.onnx with this line's calibration cache, or on TensorRT 11.4 (AGX Orin)
# the strongly typed Q/DQ model.onnx. --fp16-baseline: model.fp32.onnx as FP16.
# Everything written goes to the device folder (<bundle>.device, or --device-dir):
# engines/<module>_L4T-<release>_TRT-<version>_<sha256>.engine, its build record
# (.build.json), layer information and timing caches. Exit 3: what the device lacks.
# Overrides: TRTEXEC, TRT_VERSION, JETSON_MODEL, L4T_VERSION, EDGERESNET_DEVICE_TREE.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bundle.env
source "$here/bundle.env"

dla=""
force=0
fp16_baseline=0
device_dir=""
device_tree="${EDGERESNET_DEVICE_TREE:-/proc/device-tree}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dla) dla="${2:?--dla needs a core number}"; shift 2 ;;
    --fp16-baseline) fp16_baseline=1; shift ;;
    --force) force=1; shift ;;
    --device-dir) device_dir="${2:?--device-dir needs a folder}"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build_engine.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

find_trtexec() {
  if [ -n "${TRTEXEC:-}" ]; then echo "$TRTEXEC"; return; fi
  if command -v trtexec >/dev/null 2>&1; then command -v trtexec; return; fi
  if [ -x /usr/src/tensorrt/bin/trtexec ]; then echo /usr/src/tensorrt/bin/trtexec; return; fi
  echo "build_engine.sh: trtexec not found (JetPack installs it in /usr/src/tensorrt/bin; set TRTEXEC)" >&2
  exit 3
}

tensorrt_version() {
  if [ -n "${TRT_VERSION:-}" ]; then echo "$TRT_VERSION"; return; fi
  local v
  v="$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)"
  if [ -z "$v" ]; then
    v="$(dpkg-query -W -f='${Version}' libnvinfer-bin 2>/dev/null | cut -d- -f1 || true)"
  fi
  if [ -z "$v" ]; then
    # trtexec prints "[TensorRT v100300]" (10.3.0) or "[TensorRT v8502]" (8.5.2) in its banner.
    local code
    code="$("$1" --help 2>&1 | grep -o 'TensorRT v[0-9]*' | head -n1 | tr -dc 0-9 || true)"
    if [ -n "$code" ]; then
      if [ "${#code}" -le 4 ]; then v="${code:0:1}.${code:1:1}.${code:2}"; else v="$((10#${code:0:${#code}-4})).$((10#${code: -4:2})).$((10#${code: -2}))"; fi
    fi
  fi
  if [ -z "$v" ]; then echo "build_engine.sh: cannot tell the TensorRT version; set TRT_VERSION" >&2; exit 3; fi
  echo "$v"
}

slug() { tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9.\n' '-' | sed 's/--*/-/g; s/^-//; s/-$//'; }

jetson_model() {
  if [ -n "${JETSON_MODEL:-}" ]; then echo "$JETSON_MODEL"; return; fi
  if [ -r "$device_tree/model" ]; then tr -d '\0' < "$device_tree/model"; return; fi
  echo "unknown-module"
}

# DLA cores of this very module: the module's part number in the device tree's compatible
# ("nvidia,p3768-0000+p3767-0001", module last) looked up in DLA_CORES_BY_PART; an unknown
# part gets the fewest cores any variant of the module has.
dla_cores_here() {
  local part="" fewest="$DLA_CORES" entry
  if [ -r "$device_tree/compatible" ]; then
    part="$(tr '\0' '\n' < "$device_tree/compatible" | grep -o 'p[0-9]\{4\}-[0-9]\{4\}' | tail -n1 || true)"
  fi
  for entry in ${DLA_CORES_BY_PART:-}; do
    if [ "${entry%%:*}" = "$part" ]; then echo "${entry##*:}"; return; fi
    if [ "${entry##*:}" -lt "$fewest" ]; then fewest="${entry##*:}"; fi
  done
  echo "$fewest"
}

l4t_version() {
  if [ -n "${L4T_VERSION:-}" ]; then echo "$L4T_VERSION"; return; fi
  if [ -r /etc/nv_tegra_release ]; then
    # "# R36 (release), REVISION: 3.0, ..." -> 36.3.0
    sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/\1.\2/p' /etc/nv_tegra_release | head -n1
    return
  fi
  echo "unknown"
}

trtexec="$(find_trtexec)"
version="$(tensorrt_version "$trtexec")"
major="${version%%.*}"
minor="$(echo "$version" | cut -d. -f2)"
patch="$(echo "$version" | cut -d. -f3)"
patch="${patch:-0}"

if [ -n "$dla" ] && [ "$fp16_baseline" = 1 ]; then
  echo "build_engine.sh: --dla and --fp16-baseline are separate builds; pass one" >&2; exit 2
fi
if [ "$major" -lt 8 ] || { [ "$major" = 8 ] && [ "$minor" -lt 5 ]; } || [ "$major" = 9 ]; then
  echo "build_engine.sh: TensorRT $version is not supported; JetPack 5.1 (TensorRT 8.5) or newer is needed" >&2; exit 3
fi

# NV_TENSORRT_VERSION, as TensorRT stamps calibration caches: 8.5.2 -> 8502, 10.16.1 -> 101601.
if [ "$major" -lt 10 ]; then
  version_tag="${major}${minor}$(printf %02d "$((10#$patch))")"
else
  version_tag="${major}$(printf %02d "$((10#$minor))")$(printf %02d "$((10#$patch))")"
fi

if [ -z "$device_dir" ]; then device_dir="$here.device"; fi
case "$(realpath -m "$device_dir")/" in
  "$here"/*) echo "build_engine.sh: --device-dir $device_dir is inside the bundle $here: device outputs never mix with the shipped files; choose a folder outside it" >&2; exit 2 ;;
esac
engines="$device_dir/engines"

model="$MODEL_FILE"
precision=()
target_flags=()
suffix=""
case "$major" in
  8) precision=(--int8 --fp16) ;;      # weakly typed: layers outside Q/DQ may run FP16
  10) precision=(--stronglyTyped) ;;   # every layer outside Q/DQ runs in its ONNX type (FP32)
  *) precision=() ;;                   # 11.x: strongly typed only, quantization from the Q/DQ
esac

route="gpu"
if [ -n "$dla" ]; then
  if ! [[ "$dla" =~ ^[0-9]+$ ]]; then echo "build_engine.sh: --dla takes a core number, 0 or more" >&2; exit 2; fi
  if [ -z "${DLA_LINES:-}" ]; then
    echo "build_engine.sh: this bundle offers no DLA on $MODULE (no TensorRT line has DLA there); build for the GPU" >&2; exit 3
  fi
  route=""
  for entry in $DLA_LINES; do
    if [ "${entry%%:*}" = "$major.$minor" ]; then route="${entry#*:}"; fi
  done
  if [ -z "$route" ]; then
    echo "build_engine.sh: TensorRT $version has no DLA on $MODULE; TensorRT lines with DLA there: $DLA_LINES_TEXT. Build for the GPU, or use one of those lines" >&2
    exit 3
  fi
  cores="$(dla_cores_here)"
  if [ "$dla" -ge "$cores" ]; then
    case "$cores" in 0) have="no DLA core" ;; 1) have="1 DLA core (0)" ;; *) have="$cores DLA cores (0..$((cores - 1)))" ;; esac
    echo "build_engine.sh: this $MODULE has $have; --dla $dla is not one of them" >&2
    exit 3
  fi
  suffix="_dla$dla"
  target_flags=(--useDLACore="$dla" --allowGPUFallback)
  if [ "$route" = "calibration-cache" ]; then
    cache_var="DLA_CACHE_${major}_${minor}"
    cache="${!cache_var:-}"
    if [ -z "$cache" ]; then
      echo "build_engine.sh: no DLA calibration cache for TensorRT $major.$minor in this bundle (see calibration/); recompile for this JetPack" >&2
      exit 3
    fi
    model="$DLA_MODEL_FILE"
    calib="$engines/TRT-${version_tag}_${MODEL_SHA256:0:16}.calib.cache"
    precision=(--int8 --fp16 --calib="$calib")
    # NVIDIA's qdq-translator recipe: layers with every scale pinned to INT8, layers kept in float to FP16, obeyed.
    pins="${DLA_INT8_LAYERS:-}"
    if [ -n "${DLA_FP16_LAYERS:-}" ]; then pins="${pins:+$pins,}$DLA_FP16_LAYERS"; fi
    if [ -n "$pins" ]; then
      precision+=(--precisionConstraints=obey --layerPrecisions="$pins")
    fi
  fi
elif [ "$fp16_baseline" = 1 ]; then
  if [ "$major" -ge 11 ]; then
    echo "build_engine.sh: TensorRT $version removed --fp16; an FP16 baseline needs an FP16-typed ONNX (not in this bundle)" >&2
    exit 3
  fi
  model="$FP32_MODEL_FILE"
  suffix="_fp16"
  precision=(--fp16)
fi

key="$(jetson_model | slug)_L4T-$(l4t_version | slug)_TRT-${version}_${MODEL_SHA256:0:16}${suffix}"
mkdir -p "$engines"
engine="$engines/$key.engine"
record="$engines/$key.build.json"
if [ -s "$engine" ] && [ -s "$record" ] && [ "$force" = 0 ]; then
  echo "engine up to date: $engine"
  exit 0
fi

if [ "$route" = "calibration-cache" ]; then
  # The shipped cache, re-stamped with this device's exact TensorRT version (a patch release changes the number).
  sed "1s/^TRT-[0-9]*-/TRT-${version_tag}-/" "$here/$cache" > "$calib"
fi

shapes=()
if [ -n "${MIN_SHAPE:-}" ]; then
  if [ -n "$dla" ]; then
    # DLA needs static shapes (min = opt = max): the optimal batch of the profile.
    echo "build_engine.sh: DLA builds are static: batch of $OPT_SHAPE only" >&2
    shapes=(--minShapes="$INPUT_NAME:$OPT_SHAPE" --optShapes="$INPUT_NAME:$OPT_SHAPE" --maxShapes="$INPUT_NAME:$OPT_SHAPE")
  else
    shapes=(--minShapes="$INPUT_NAME:$MIN_SHAPE" --optShapes="$INPUT_NAME:$OPT_SHAPE" --maxShapes="$INPUT_NAME:$MAX_SHAPE")
  fi
fi

# A timing cache is valid only for the TensorRT version that wrote it (ITimingCache docs).
"$trtexec" --onnx="$here/$model" --saveEngine="$engine.partial" \
  "${precision[@]}" "${target_flags[@]}" "${shapes[@]}" \
  --timingCacheFile="$engines/timing-TRT-${version}.cache" \
  --profilingVerbosity=detailed --exportLayerInfo="$engines/$key.layers.json"
mv "$engine.partial" "$engine"

# The build record run.py reads: it sets the runtime's DLA core from it before deserializing the engine.
case "$route" in
  calibration-cache) precision_text="implicit INT8 from the calibration cache (--int8 --fp16, INT8 layers pinned with obey)" ;;
  *) if [ "$fp16_baseline" = 1 ]; then precision_text="FP16 (--fp16 baseline of the FP32 model)";
     elif [ "$major" -ge 10 ]; then precision_text="strongly typed (explicit Q/DQ)";
     else precision_text="--int8 --fp16 (explicit Q/DQ)"; fi ;;
esac
cat > "$record.partial" <<RECORD
{
  "schema": "edgeresnet.engine-build/1",
  "engine": "$key.engine",
  "built_by": "build_engine.sh",
  "tensorrt": "$version",
  "route": "$route",
  "dla_core": ${dla:-null},
  "precision": "$precision_text",
  "model_file": "$model",
  "model_sha256": "$MODEL_SHA256",
  "l4t": "$(l4t_version)"
}
RECORD
mv "$record.partial" "$record"
echo "built $engine"
if [ -s "$engines/$key.layers.json" ] && command -v python3 >/dev/null 2>&1; then
  python3 "$here/layer_report.py" "$engines/$key.layers.json" ${dla:+--dla}
fi
