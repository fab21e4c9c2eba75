"""What the aarch64 build runs under emulation by default, and the native runner's compile cache."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from edgeresnet.targets.tvm import emulation, native


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
