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


def cli_in_process(monkeypatch, capsys, *args: str) -> tuple[int, str, list[str]]:
    """The `edgeresnet` command line run in this process (fast, for many small cases): (exit code, stdout,
    stderr lines). SIGTERM handling stays pytest's."""
    import edgeresnet.processes
    from edgeresnet.cli import main

    monkeypatch.setattr(edgeresnet.processes, "handle_termination", lambda: None)
    monkeypatch.setattr(edgeresnet.processes, "stop_interrupting", lambda: None)
    monkeypatch.setattr(sys, "argv", ["edgeresnet", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def tree_state(folder: Path) -> list[tuple[str, str]]:
    """Every entry under `folder` with its kind and content digest: equal before and after means untouched."""
    import hashlib

    state = []
    for path in sorted(folder.rglob("*")):
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if kind == "file" else os.readlink(path) if kind == "link" else ""
        state.append((str(path.relative_to(folder)), f"{kind}:{digest}"))
    return state


def rehash(folder: Path, *names: str) -> None:
    """Write the sha256 of `names` into the artifact's manifest, as an adversary who edited them would."""
    import hashlib
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    for name in names:
        manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def run_kernels_on_a72(tmp_path: Path, kernels: dict[str, tuple]) -> dict:
    """Scheduled TIR kernels, each `name: (module, inputs, output shape)` with int8/int16 numpy
    inputs and an int32 output, cross-compiled for the rpi4 target and run under qemu -cpu
    cortex-a72 on 4 threads with the aarch64 TVM runtime. Returns each kernel's output."""
    import numpy as np
    import tvm

    from edgeresnet.targets import get_target
    from edgeresnet.targets.tvm import emulation
    from edgeresnet.targets.tvm.backend import llvm_target

    profile = get_target("rpi4")
    target = tvm.target.Target(llvm_target(profile))
    for name, (module, inputs, shape) in kernels.items():
        tvm.compile(module, target=target).export_library(str(tmp_path / f"{name}.so"), cc=profile.details.cross_compiler)
        for index, array in enumerate(inputs):
            np.save(tmp_path / f"{name}-in{index}.npy", array)
    script = tmp_path / "run_kernels.py"
    script.write_text(f"""
import numpy as np, tvm.runtime
for name, count, shape in {[(name, len(inputs), tuple(shape)) for name, (_, inputs, shape) in kernels.items()]!r}:
    f = tvm.runtime.load_module("{tmp_path}/" + name + ".so")["main"]
    inputs = [tvm.runtime.tensor(np.load("{tmp_path}/" + name + f"-in{{i}}.npy")) for i in range(count)]
    out = tvm.runtime.tensor(np.zeros(shape, np.int32))
    f(*inputs, out)
    np.save("{tmp_path}/" + name + "-out.npy", out.numpy())
""")
    command, env = emulation.python_command(emulation.build_runtime(), profile.details.qemu_cpu, script)
    result = subprocess.run(command, env={**env, "TVM_NUM_THREADS": "4"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return {name: np.load(tmp_path / f"{name}-out.npy") for name in kernels}



def direct_conv_nchw8c(data, weight, stride: int = 1, pad: int = 1):
    """numpy's int64 convolution, the reference the integer kernels must equal: data [1, C/8, H, W, 8]
    int8, weight [O, C, K, K] -> [1, O/8, OH, OW, 8], zero padding `pad` on every side."""
    import numpy as np

    _, blocks, height, width, _ = data.shape
    taps = weight.shape[-1]
    image = np.pad(data[0].transpose(0, 3, 1, 2).reshape(blocks * 8, height, width).astype(np.int64),
                   [(0, 0), (pad, pad), (pad, pad)])
    windows = np.lib.stride_tricks.sliding_window_view(image, (taps, taps), axis=(1, 2))[:, ::stride, ::stride]
    sums = np.einsum("ocij,cyxij->oyx", weight.astype(np.int64), windows)  # [O, OH, OW]
    return sums.reshape(weight.shape[0] // 8, 8, *sums.shape[1:]).transpose(0, 2, 3, 1)[None]
