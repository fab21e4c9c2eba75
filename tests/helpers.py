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


def reference_for_input(channel_weights: tuple[float, ...], offset: float) -> dict:
    """The shipped reference network's state dict, refolded for another input: a model whose stem reads
    x_ref = sum_c channel_weights[c] * x[c] + offset, where x_ref is the reference model's own normalized
    grayscale input ((g - 0.286) / 0.353). Exact away from the zero padding, as if trained on that input: conv1
    takes the weights per channel, and bn1's running mean absorbs the offset."""
    import torch

    from edgeresnet.models import load_model

    state = {k: v.clone() for k, v in load_model("resnet20-fmnist").module.state_dict().items()}
    weight = state["conv1.weight"]  # [16, 1, 3, 3]
    state["conv1.weight"] = torch.cat([weight * a for a in channel_weights], dim=1)
    state["bn1.running_mean"] = state["bn1.running_mean"] - offset * weight.sum(dim=(1, 2, 3))
    return state
