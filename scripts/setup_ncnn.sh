#!/usr/bin/env bash
# Set up ncnn as a peer of benchmarks/arm_cost.py (runtimes ncnn-int8, ncnn-fp16) and for
# `benchmarks/peer_ncnn.py --validate`: cmake and g++ for ncnn's int8 tools, pnnx in .venv, the
# source of the pinned ncnn release in the shared cache, and its ncnn2table/ncnn2int8 built from
# it (minutes, once). Run scripts/setup.sh first. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

release=$(.venv/bin/python -c "import sys; sys.path.insert(0, 'benchmarks'); import peer_ncnn; print(peer_ncnn.NCNN_RELEASE)")
source_dir="${EDGERESNET_NCNN_SOURCE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeresnet/ncnn/src-$release}"

apt_install_missing cmake make g++ git
venv_pip install -q -e ".[ncnn]"
if [ ! -f "$source_dir/tools/quantize/ncnn2table.cpp" ]; then
  echo "fetching ncnn $release's source into $source_dir"
  git clone -q --depth 1 --branch "$release" https://github.com/Tencent/ncnn "$source_dir"
fi
.venv/bin/python -c "import sys; sys.path.insert(0, 'benchmarks'); import peer_ncnn; print(peer_ncnn.build_tools().ncnn2table)"
