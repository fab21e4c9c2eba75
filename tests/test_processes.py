"""Helper processes never outlive edgeresnet, and a termination signal ends a compile promptly and cleanly.

Phases are detected by events (a helper process appearing), never by fixed sleeps; the bound checked on
the exit is Docker's 10 s between SIGTERM and SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from edgeresnet.processes import descendants

DOCKER_GRACE_S = 10.0
PHASE_TIMEOUT_S = 600.0


def _python(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_descendants_lists_grandchildren():
    parent = subprocess.Popen(["sh", "-c", "sh -c 'sleep 600; true' & wait"])
    try:
        process = psutil.Process(parent.pid)
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while len(process.children(recursive=True)) < 2 and time.monotonic() < deadline:  # the inner sh, then its sleep
            time.sleep(0.02)
        expected = {p.pid for p in process.children(recursive=True)}
        assert len(expected) == 2
        assert set(descendants(parent.pid)) == expected
    finally:
        for pid in descendants(parent.pid):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_a_helper_dies_with_its_parent_even_on_sigkill():
    parent = _python("""
        import subprocess
        from edgeresnet.processes import die_with_parent
        child = subprocess.Popen(["sleep", "600"], preexec_fn=die_with_parent())
        print(child.pid, flush=True)
        child.wait()
    """)
    helper = psutil.Process(int(parent.stdout.readline()))
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    helper.wait(timeout=DOCKER_GRACE_S)  # raises TimeoutExpired if the helper outlived its parent
    assert not helper.is_running()


def test_sigterm_exits_and_removes_staging_even_when_the_main_thread_does_not_unwind(tmp_path):
    """The main thread swallows the interrupt (as a C extension may): the watcher removes the staging
    folder and exits with 128 + SIGTERM after its grace period, and the helper is killed at once."""
    staging = tmp_path / ".out.partial"
    staging.mkdir()
    process = _python("""
        import subprocess, sys, time
        from edgeresnet.atomic import terminate_like_ctrl_c
        from edgeresnet.processes import remove_on_forced_exit
        terminate_like_ctrl_c()
        remove_on_forced_exit(sys.argv[1])
        helper = subprocess.Popen(["sleep", "600"])
        print(helper.pid, flush=True)
        while True:
            try:
                time.sleep(600)
            except BaseException:
                print("swallowed", file=sys.stderr, flush=True)
    """, str(staging))
    helper = psutil.Process(int(process.stdout.readline()))
    process.send_signal(signal.SIGTERM)
    helper.wait(timeout=DOCKER_GRACE_S)
    assert process.wait(timeout=DOCKER_GRACE_S) == 128 + signal.SIGTERM
    stderr = process.stderr.read()
    assert "swallowed" in stderr and "edgeresnet: terminated (SIGTERM); stopped after 5 s" in stderr
    assert not staging.exists()


def _compile_until(tmp_path: Path, small_data: dict, appears) -> tuple[subprocess.Popen, Path, list[psutil.Process]]:
    """Start compile for rpi5 and return once a descendant process satisfying `appears` exists."""
    out = tmp_path / "rpi5"
    command = [sys.executable, "-m", "edgeresnet.cli", "compile", "--target", "rpi5", "--model", "resnet20",
               "--calib", str(small_data["calib"]), "--eval", str(small_data["eval"]), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(tmp_path / "stderr").open("w"))
    compile_process = psutil.Process(process.pid)
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            helpers = compile_process.children(recursive=True)
            if any(appears(helper) for helper in helpers):
                return process, out, helpers
        except psutil.Error:
            pass
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"compile never reached the phase (exit {process.poll()}): {(tmp_path / 'stderr').read_text()[-2000:]}")


def _is_host_build(helper: psutil.Process) -> bool:
    """The spawned child that builds the host twin beside the board build."""
    with_spawn = " ".join(helper.cmdline())
    return "multiprocessing" in with_spawn and "resource_tracker" not in with_spawn


def _is_qemu(helper: psutil.Process) -> bool:
    return helper.name().startswith("qemu-aarch64")


@pytest.mark.slow
@pytest.mark.parametrize("signum, appears, code, message", [
    (signal.SIGTERM, _is_host_build, 143, "terminated (SIGTERM)"),
    (signal.SIGTERM, _is_qemu, 143, "terminated (SIGTERM)"),
    (signal.SIGINT, _is_host_build, 130, "aborted"),
], ids=["sigterm-board-build", "sigterm-emulation", "ctrl-c-board-build"])
def test_termination_stops_compile_promptly_and_leaves_nothing(tmp_path, small_data, signum, appears, code, message):
    process, out, helpers = _compile_until(tmp_path, small_data, appears)
    process.send_signal(signum)
    assert process.wait(timeout=DOCKER_GRACE_S) == code, (tmp_path / "stderr").read_text()[-2000:]
    assert (tmp_path / "stderr").read_text().splitlines()[-1] == f"edgeresnet: {message}" + (
        "; nothing half-written was left" if signum == signal.SIGTERM else "")
    _, alive = psutil.wait_procs(helpers, timeout=DOCKER_GRACE_S)
    assert not alive, [" ".join(p.cmdline()) for p in alive]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rpi5")] == []


@pytest.mark.slow
@pytest.mark.parametrize("appears", [_is_host_build, _is_qemu], ids=["board-build", "emulation"])
def test_no_helper_outlives_a_killed_compile(tmp_path, small_data, appears):
    process, _, helpers = _compile_until(tmp_path, small_data, appears)
    process.send_signal(signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(helpers, timeout=DOCKER_GRACE_S)
    assert not alive, [" ".join(p.cmdline()) for p in alive]
