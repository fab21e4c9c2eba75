"""Runners for TVM libraries: in-process on this host, or the shipped aarch64 library under qemu-user."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from edgeresnet.errors import CheckFailed
from edgeresnet.processes import die_with_parent, temporary_folder
from edgeresnet.runners import Runner

from . import emulation, native


class TvmHostRunner(Runner):
    """A TVM library built for this machine, run in-process by the Relax VM."""

    def __init__(self, library: Path, batch: int, threads: int, label: str):
        import tvm
        from tvm import relax

        os.environ.setdefault("TVM_NUM_THREADS", str(threads))  # the x86 runtime defaults to half the threads
        self._tvm = tvm
        self.device = tvm.cpu()
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), self.device)
        self.static_batch = batch
        self.label = label

    @property
    def runtime(self) -> str:
        return f"tvm {self._tvm.__version__} {platform.machine()} ({self.label})"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.vm["main"](self._tvm.runtime.tensor(batch, self.device)).numpy()


class QemuRunner(Runner):
    """The shipped aarch64 library under qemu-user with the board's CPU model, run by the artifact's own
    native runner (edgeresnet-run), or by its run.py where the artifact has no native runner."""

    images_per_call = 4096  # each call starts qemu (and run.py a Python runtime: ~10 s): stream it large chunks

    def __init__(self, artifact: Path, runtime: Path, qemu_cpu: str, batch: int, threads: int):
        self.artifact, self.runtime_folder, self.qemu_cpu = artifact, runtime, qemu_cpu
        self.static_batch = batch
        self.threads = threads

    @property
    def runtime(self) -> str:
        return f"tvm aarch64 (qemu emulation, -cpu {self.qemu_cpu})"

    @property
    def arch(self) -> str:
        return "aarch64 (emulated)"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.run_all(batch)

    def batches(self, images: np.ndarray, batch_size: int = 256):
        yield len(images), self.run_all(images)

    def run_all(self, images: np.ndarray) -> np.ndarray:
        with temporary_folder(prefix="edgeresnet-qemu-") as tmp:
            inputs, logits = Path(tmp, "inputs.npy"), Path(tmp, "logits.npy")
            np.save(inputs, np.ascontiguousarray(images, dtype=np.float32))
            program = self.artifact / native.RUNNER
            if program.exists():
                command = emulation.native_command(self.runtime_folder, self.qemu_cpu, program, "--npy", str(inputs),
                                                   "--logits-out", str(logits), "--warmup", "0", "--threads", str(self.threads))
                env = dict(os.environ)
            else:
                command, env = emulation.python_command(self.runtime_folder, self.qemu_cpu, self.artifact / "run.py", "--npy",
                                                        str(inputs), "--logits-out", str(logits), "--warmup", "0", "--quiet")
            env["TVM_NUM_THREADS"] = str(self.threads)
            result = subprocess.run(command, env=env, capture_output=True, text=True, preexec_fn=die_with_parent())
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
                raise CheckFailed(f"the aarch64 library failed under qemu -cpu {self.qemu_cpu} (exit {result.returncode}): {' | '.join(tail)}")
            return np.load(logits)
