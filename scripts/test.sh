#!/usr/bin/env bash
# Install what the tests need on top of scripts/setup.sh, then run the whole suite.
# Extra arguments go to pytest (e.g. -m "not slow" for the fast subset).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/common.sh

# The tests read report.html in Debian's Chromium, driven through ChromeDriver (Selenium, from
# the test extras); no browser is downloaded.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (report.html is checked in a headless browser)"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

venv_pip install -q -e ".[test,tune,sign]"

# benchmarks/arm_cost.py (tests/test_arm_cost.py) fetches LLVM 19's llvm-mca with `apt-get download`
# into its cache, not installed: that needs apt's package lists.
if ! apt-cache policy llvm-19 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  sudo_if_needed apt-get update -qq
fi

# TensorRT's published type stubs, to check the Jetson scripts' API names. Unpacked
# beside the project, not installed: installed, they shadow `import tensorrt`.
STUBS=.cache/tensorrt-stubs
if [ ! -f "$STUBS/tensorrt_bindings/tensorrt.pyi" ]; then
  mkdir -p .cache/wheels "$STUBS"
  venv_pip download -q --no-deps --only-binary=:all: -d .cache/wheels "tensorrt-stubs==10.13.0.35.1"
  .venv/bin/python -m zipfile -e .cache/wheels/tensorrt_stubs-10.13.0.35.1-py3-none-any.whl "$STUBS/unpacked"
  mv "$STUBS/unpacked/tensorrt" "$STUBS/unpacked/tensorrt_bindings" "$STUBS/"
  rm -rf "$STUBS/unpacked"
fi

# The type checker first: a failure stops the run before the (long) tests.
bash scripts/typecheck.sh
exec .venv/bin/python -m pytest "$@"
