#!/usr/bin/env bash
# Build the TensorRT engine for this bundle on the Jetson itself, with trtexec.
#
#   ./build_engine.sh [--dla N] [--force]
#
# The engine is cached under engines/ with a key of (Jetson module, L4T release,
# TensorRT version, model sha256), so a JetPack upgrade or a new model builds a
# new engine instead of loading an incompatible one. A timing cache and the
# engine's layer information (for checking Conv+Add+ReLU fusion) sit beside it.
# Overrides: TRTEXEC, TRT_VERSION, JETSON_MODEL, L4T_VERSION.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bundle.env
source "$here/bundle.env"

dla=""
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dla) dla="${2:?--dla needs a core number}"; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
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

precision=()
case "$major" in
  8)
    if [ "$minor" -lt 5 ]; then echo "build_engine.sh: TensorRT $version is older than 8.5; JetPack 5.1 or newer is needed" >&2; exit 3; fi
    precision=(--int8 --fp16) ;;
  10) precision=(--stronglyTyped) ;;
  *)
    if [ "$major" -ge 11 ]; then precision=(); else echo "build_engine.sh: TensorRT $version is not supported" >&2; exit 3; fi ;;
esac

dla_flags=()
if [ -n "$dla" ]; then
  if [ "$DLA_CORES" -eq 0 ]; then echo "build_engine.sh: $MODULE has no DLA cores; build for the GPU" >&2; exit 2; fi
  if ! [[ "$dla" =~ ^[0-9]+$ ]] || [ "$dla" -ge "$DLA_CORES" ]; then echo "build_engine.sh: --dla takes 0..$((DLA_CORES - 1))" >&2; exit 2; fi
  dla_flags=(--useDLACore="$dla" --allowGPUFallback)
  # DLA runs weakly typed INT8/FP16 networks; strongly typed builds are GPU-only.
  if [ "$major" = 10 ]; then precision=(--int8 --fp16); fi
fi

key="$(jetson_model | slug)_L4T-$(l4t_version | slug)_TRT-${version}_${MODEL_SHA256:0:16}${dla:+_dla$dla}"
mkdir -p "$here/engines"
engine="$here/engines/$key.engine"
if [ -s "$engine" ] && [ "$force" = 0 ]; then
  echo "engine up to date: $engine"
  exit 0
fi

shapes=()
if [ -n "${MIN_SHAPE:-}" ]; then
  shapes=(--minShapes="$INPUT_NAME:$MIN_SHAPE" --optShapes="$INPUT_NAME:$OPT_SHAPE" --maxShapes="$INPUT_NAME:$MAX_SHAPE")
fi

"$trtexec" --onnx="$here/$MODEL_FILE" --saveEngine="$engine.partial" \
  "${precision[@]}" "${dla_flags[@]}" "${shapes[@]}" \
  --timingCacheFile="$here/engines/timing.cache" \
  --profilingVerbosity=detailed --exportLayerInfo="$here/engines/$key.layers.json"
mv "$engine.partial" "$engine"
echo "built $engine"
