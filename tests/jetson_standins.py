"""Running the Jetson bundle's device commands here: stand-in trtexec, tensorrt module and libcudart.

What they are and record: tests/standin/README.md. Every helper runs the shipped
script as a user would (a subprocess in the bundle), so exit codes, stderr and
the files written are the script's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "standin"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NX_16GB = "nvidia,p3768-0000+p3767-0000\0nvidia,p3767-0000\0nvidia,tegra234\0"
NX_8GB = "nvidia,p3768-0000+p3767-0001\0nvidia,p3767-0001\0nvidia,tegra234\0"


def copy_bundle(bundle: Path, tmp_path: Path, name: str = "bundle") -> Path:
    copy = tmp_path / name
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def device_tree(tmp_path: Path, compatible: str, model: str = "NVIDIA Jetson Orin NX Engineering Reference Developer Kit") -> Path:
    """A stand-in /proc/device-tree: the module's part number is in `compatible`."""
    folder = tmp_path / "device-tree"
    folder.mkdir(exist_ok=True)
    (folder / "compatible").write_bytes(compatible.encode())
    (folder / "model").write_bytes(model.encode() + b"\0")
    return folder


def fake_trtexec(tmp_path: Path, banner: str, layer_info: str = "") -> Path:
    """Records its arguments; writes an engine, a copy of the calibration cache it was given, and a layer-info fixture."""
    script = tmp_path / "trtexec"
    script.write_text(f"""#!/usr/bin/env bash
printf '%s\\n' "$@" > "{tmp_path}/args.txt"
if [ "$1" = "--help" ]; then echo "&&&& RUNNING TensorRT.trtexec [TensorRT {banner}]"; exit 0; fi
for a in "$@"; do case "$a" in
  --saveEngine=*) echo engine > "${{a#--saveEngine=}}" ;;
  --calib=*) cp "${{a#--calib=}}" "{tmp_path}/calib_seen.cache" ;;
  --exportLayerInfo=*) if [ -n "{layer_info}" ]; then cp "{layer_info}" "${{a#--exportLayerInfo=}}"; fi ;;
esac; done
""")
    script.chmod(0o755)
    return script


def build_sh(bundle: Path, tmp_path: Path, version: str, *args: str, banner: str = "v0", layer_info: str = "",
             tree: Path | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """build_engine.sh --force ARGS with a stand-in trtexec; returns the result and the arguments trtexec got."""
    (tmp_path / "args.txt").unlink(missing_ok=True)
    trtexec = fake_trtexec(tmp_path, banner, layer_info)
    env = {**os.environ, "TRTEXEC": str(trtexec), "JETSON_MODEL": "NVIDIA Jetson Orin NX Developer Kit", "L4T_VERSION": "36.3.0",
           "EDGERESNET_DEVICE_TREE": str(tree or tmp_path / "no-device-tree")}
    if version:
        env["TRT_VERSION"] = version
    result = subprocess.run(["bash", str(bundle / "build_engine.sh"), "--force", *args], env=env, capture_output=True, text=True)
    recorded = (tmp_path / "args.txt").read_text().split("\n") if (tmp_path / "args.txt").exists() else []
    return result, recorded


def libcudart(tmp_path: Path) -> Path:
    """The stand-in CUDA runtime compiled into a folder for LD_LIBRARY_PATH."""
    folder = tmp_path / "cuda"
    folder.mkdir(exist_ok=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(folder / "libcudart.so"), str(STANDIN / "libcudart.c")], check=True)
    return folder


def run_python(bundle: Path, tmp_path: Path, script: str, *args: str, version: str = "10.3.0", dla_cores: int = 2,
               layer_info: str = "", cuda: Path | None = None, with_tensorrt: bool = True) -> subprocess.CompletedProcess:
    """A bundle script under the stand-in tensorrt module (and CUDA runtime); calls go to tmp_path/trt.log."""
    env = {"PATH": "/usr/bin:/bin", "JETSON_MODEL": "NVIDIA Jetson Orin NX Developer Kit", "L4T_VERSION": "36.3.0",
           "STANDIN_TRT_LOG": str(tmp_path / "trt.log"), "STANDIN_TRT_VERSION": version, "STANDIN_DLA_CORES": str(dla_cores),
           "EDGERESNET_DEVICE_TREE": str(tmp_path / "no-device-tree")}
    if with_tensorrt:
        env["PYTHONPATH"] = str(STANDIN)
    if layer_info:
        env["STANDIN_LAYER_INFO"] = layer_info
    if cuda is not None:
        env["LD_LIBRARY_PATH"] = str(cuda)
    return subprocess.run([sys.executable, str(bundle / script), *args], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)


def trt_calls(tmp_path: Path) -> list[dict]:
    log = tmp_path / "trt.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def verify(artifact: Path) -> subprocess.CompletedProcess:
    from helpers import run_cli

    return run_cli("verify", str(artifact), "--json")


ORT_ENGINE = '''
import os, sys
from pathlib import Path
bundle = Path(sys.argv[1])
sys.path.insert(0, str(bundle))
sys.dont_write_bytecode = True
import numpy as np
import onnxruntime as ort
import run

class OnnxRuntimeEngine:
    """Stands in for run.Engine: ONNX Runtime on the bundle's Q/DQ model (graph optimizations off, as on the host)."""
    def __init__(self, dla_core=None, device_dir=None):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.label = "onnxruntime stand-in for the TensorRT engine"
        self.flip_every = int(os.environ.get("STANDIN_FLIP_EVERY", "0"))
        self.calls = 0
    def facts(self):
        return {"tensorrt": "not installed (onnxruntime stand-in)", "precision": "n/a"}
    def infer(self, batch):
        logits = self.session.run(None, {"input": batch})[0]
        self.calls += 1
        if self.flip_every and self.calls % self.flip_every == 0:  # a drifting engine: its top-1 moves to another class
            logits = logits.copy()
            logits[np.arange(len(logits)), (logits.argmax(1) + 1) % logits.shape[1]] = logits.max() + 1
        return logits

run.load_engine = OnnxRuntimeEngine
sys.argv = ["run.py", *sys.argv[2:]]
run.main()
'''


def run_bundle(bundle: Path, tmp_path: Path, *args: str, flip_every: int = 0) -> subprocess.CompletedProcess:
    """The bundle's run.py with its TensorRT engine replaced by ONNX Runtime on the bundle's model.onnx (ORT_ENGINE)."""
    script = tmp_path / "standin.py"
    script.write_text(ORT_ENGINE)
    env = {"STANDIN_FLIP_EVERY": str(flip_every), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(script), str(bundle), *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=600)
