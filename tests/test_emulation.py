"""What the aarch64 build runs under emulation by default, and the native runner's compile cache."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeresnet.targets.tvm import emulation, native
from helpers import compile_small


def test_default_emulated_samples_shrink_with_the_input():
    assert emulation.default_emulated_samples([1, 28, 28]) == 1000  # the reference model: as before
    assert emulation.default_emulated_samples([3, 32, 32]) == 255
    assert emulation.default_emulated_samples([3, 224, 224]) == emulation.MIN_EMULATED_SAMPLES == 32


def _recording_compiler(tmp_path: Path, real: str) -> tuple[Path, Path]:
    """A stand-in for the cross compiler that records each call and hands it to the real one; its
    --version output names this test's folder, so the cache key is this test's own."""
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "recording-g++"
    wrapper.write_text(f"""#!/bin/sh
echo "$@" >> {log}
if [ "$1" = "--version" ]; then {real} --version; echo "recorded in {tmp_path}"; exit 0; fi
exec {real} "$@"
""")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper, log


def test_native_runner_is_compiled_once_and_then_copied(tmp_path):
    real = shutil.which("aarch64-linux-gnu-g++")
    if real is None:
        pytest.skip("no aarch64 cross compiler")
    site = emulation.build_runtime() / "site"
    compiler, log = _recording_compiler(tmp_path, real)
    cache = site.parent / "native-runners"
    before = set(cache.iterdir()) if cache.exists() else set()
    first, second = tmp_path / "first", tmp_path / "second"
    try:
        for folder in (first, second):
            folder.mkdir()
            assert native.build_native_runner(folder, str(compiler), site, emulation.TVM_VERSION) == list(native.FILES)
        (made,) = set(cache.iterdir()) - before  # this compiler's own key
        assert (made / native.RUNNER).read_bytes() == (first / native.RUNNER).read_bytes()
        assert not list(made.glob(".*partial"))
    finally:
        for entry in set(cache.iterdir()) - before:
            shutil.rmtree(entry)
    compiles = [line for line in log.read_text().splitlines() if not line.startswith("--version")]
    assert len(compiles) == 1 and "edgeresnet_run.cc" in compiles[0]
    assert (first / native.RUNNER).read_bytes() == (second / native.RUNNER).read_bytes()
    assert os.access(second / native.RUNNER, os.X_OK)
    assert (second / native.RUNTIME_DIR / "libtvm_runtime.so").exists()


@pytest.mark.slow
def test_concurrent_first_use_of_an_empty_runtime_cache_succeeds_for_both(tmp_path):
    """Two compiles starting on an empty cache: one builds the runtime, the other waits and reuses it."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop(emulation.FOLDER_ENV, None)
    script = "from edgeresnet.targets.tvm import emulation; print(emulation.build_runtime())"
    users = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(user.wait(timeout=900), *user.communicate()) for user in users]
    folder = tmp_path / "cache" / "edgeresnet" / "aarch64-runtime"
    for code, stdout, stderr in results:
        assert code == 0, stderr[-2000:]
        assert stdout.strip() == str(folder)
    assert sum("building the aarch64 emulation runtime" in stderr for _, _, stderr in results) == 1
    assert (folder / emulation.COMPLETE_MARK).is_file() and (folder / "sysroot" / "usr/bin/python3.11").exists()
    assert [p.name for p in folder.parent.iterdir() if p.name != folder.name] == [".aarch64-runtime.lock"]


@pytest.mark.slow
def test_native_runner_prints_no_thread_affinity_warning(tmp_path, small_data):
    """More threads than host cores (a 4-core board emulated here): TVM cannot bind them, and says nothing."""
    out = tmp_path / "rpi5"
    assert compile_small("rpi5", out, small_data).returncode == 0
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, np.zeros((2, 3, 32, 32), np.float32))
    threads = (os.cpu_count() or 1) + 2
    command = emulation.native_command(emulation.build_runtime(), "cortex-a76", out / native.RUNNER, "--npy", str(inputs),
                                       "--warmup", "0", "--threads", str(threads))
    result = subprocess.run(command, capture_output=True, text=True, cwd=out, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "affinity" not in result.stderr and "Warning" not in result.stderr, result.stderr
    assert "2 inputs" in result.stdout + result.stderr
