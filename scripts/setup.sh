#!/usr/bin/env bash
# Set up edgeresnet on a fresh Debian 12 machine: system packages, a virtual
# environment in .venv, and the package itself (editable). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  dataset-fashion-mnist            # the built-in calibration/evaluation data (IDX files)
  g++-aarch64-linux-gnu            # cross-links aarch64 shared libraries (ARM targets)
  binutils-aarch64-linux-gnu       # aarch64 objdump: proves sdot kernels
  qemu-user                        # runs aarch64 artifacts here, under emulation
  gcc                              # builds benchmarks/arm_cost's qemu block-counting plugin
  shellcheck                       # checks the Jetson bundle's shell script
  time                             # /usr/bin/time -v: peak memory in benchmarks/data_scale.py
)

source scripts/common.sh

apt_install_missing "${APT_PACKAGES[@]}"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
venv_pip install -q --upgrade pip
# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU build that lies on this machine's disk.
venv_pip install -q -e ".[tune,sign]"
echo "edgeresnet is installed: .venv/bin/edgeresnet"
