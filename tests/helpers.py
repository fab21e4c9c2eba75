"""Helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the installed `edgeresnet` command as a user would, capturing its output."""
    command = [sys.executable, "-m", "edgeresnet.cli", *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def compile_small(target: str, out: Path, small_data: dict, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("compile", "--target", target, "--model", "resnet20", "--calib", str(small_data["calib"]),
                   "--eval", str(small_data["eval"]), "--out", str(out), *extra, env=env)
