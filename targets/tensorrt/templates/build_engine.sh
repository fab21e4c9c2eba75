#!/usr/bin/env bash
# Build the TensorRT engine for this bundle on the Jetson itself, with trtexec.
#
#   ./build_engine.sh [--dla N | --fp16-baseline] [--force]
#
# GPU (default): the Q/DQ INT8 model.onnx. --dla N: the Q/DQ-free model.dla.onnx
# with the calibration cache of this TensorRT line on DLA core N (TensorRT 8.5-10.x;
# static shapes). --fp16-baseline: model.fp32.onnx as an FP16 engine, to compare with.
# Engines are cached in engines/ under (module, L4T release, TensorRT version,
# model sha256); each build's layer information is summarized by layer_report.py.
# Overrides: TRTEXEC, TRT_VERSION, JETSON_MODEL, L4T_VERSION.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bundle.env
source "$here/bundle.env"

dla=""
force=0
fp16_baseline=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dla) dla="${2:?--dla needs a core number}"; shift 2 ;;
    --fp16-baseline) fp16_baseline=1; shift ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
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
  if [ -r /proc/device-tree/model ]; then tr -d '\0' < /proc/device-tree/model; return; fi
  echo "unknown-module"
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

model="$MODEL_FILE"
precision=()
target_flags=()
suffix=""
case "$major" in
  8) precision=(--int8 --fp16) ;;      # weakly typed: layers outside Q/DQ may run FP16
  10) precision=(--stronglyTyped) ;;   # every layer outside Q/DQ runs in its ONNX type (FP32)
  *) precision=() ;;                   # 11.x: strongly typed only, quantization from the Q/DQ
esac

if [ -n "$dla" ]; then
  if [ "$DLA_CORES" -eq 0 ]; then echo "build_engine.sh: $MODULE has no DLA cores; build for the GPU" >&2; exit 2; fi
  if ! [[ "$dla" =~ ^[0-9]+$ ]] || [ "$dla" -ge "$DLA_CORES" ]; then echo "build_engine.sh: --dla takes 0..$((DLA_CORES - 1))" >&2; exit 2; fi
  if [ "$major" -ge 11 ]; then
    echo "build_engine.sh: TensorRT $version has no calibrators, so this bundle's DLA recipe (implicit INT8) cannot run; DLA is back only from TensorRT 11.4.1 on AGX Orin with JetPack >= 7.2.2, strongly typed. Build for the GPU, or use TensorRT 8.5-10.x" >&2
    exit 3
  fi
  cache_var="DLA_CACHE_${major}_${minor}"
  cache="${!cache_var:-}"
  if [ -z "$cache" ]; then
    echo "build_engine.sh: no DLA calibration cache for TensorRT $major.$minor in this bundle (see calibration/); recompile for this JetPack" >&2
    exit 3
  fi
  model="$DLA_MODEL_FILE"
  suffix="_dla$dla"
  precision=(--int8 --fp16 --calib="$here/engines/TRT-${version_tag}_${MODEL_SHA256:0:16}.calib.cache")
  if [ -n "${DLA_FP16_LAYERS:-}" ]; then
    precision+=(--precisionConstraints=prefer --layerPrecisions="$DLA_FP16_LAYERS")
  fi
  target_flags=(--useDLACore="$dla" --allowGPUFallback)
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
mkdir -p "$here/engines"
engine="$here/engines/$key.engine"
if [ -s "$engine" ] && [ "$force" = 0 ]; then
  echo "engine up to date: $engine"
  exit 0
fi

if [ -n "$dla" ]; then
  # The shipped cache, re-stamped with this device's exact TensorRT version (a patch release changes the number).
  sed "1s/^TRT-[0-9]*-/TRT-${version_tag}-/" "$here/$cache" > "$here/engines/TRT-${version_tag}_${MODEL_SHA256:0:16}.calib.cache"
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
  --timingCacheFile="$here/engines/timing-TRT-${version}.cache" \
  --profilingVerbosity=detailed --exportLayerInfo="$here/engines/$key.layers.json"
mv "$engine.partial" "$engine"
echo "built $engine"
if [ -s "$here/engines/$key.layers.json" ] && command -v python3 >/dev/null 2>&1; then
  python3 "$here/layer_report.py" "$here/engines/$key.layers.json" ${dla:+--dla}
fi
