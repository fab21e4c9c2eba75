#!/usr/bin/env bash
# mypy over the package as it installs: the source tree keeps targets/ and calibration/ beside
# edgeresnet/ (pyproject's package-dir), which mypy cannot map, so it checks a view of symbolic
# links laid out as the installed edgeresnet package. Configuration: [tool.mypy] in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
view=.cache/typecheck-view  # a fixed place, so mypy's cache (.cache/mypy) stays valid between runs
rm -rf "$view"
mkdir -p "$view/edgeresnet"
for entry in edgeresnet/*; do
  ln -s "$repo/$entry" "$view/edgeresnet/"
done
ln -s "$repo/targets" "$view/edgeresnet/targets"
ln -s "$repo/calibration" "$view/edgeresnet/calibration"
cd "$view"
exec "$repo/.venv/bin/python" -m mypy --config-file "$repo/pyproject.toml" --cache-dir "$repo/.cache/mypy" -p edgeresnet "$@"
