"""Helper processes never outlive edgeresnet, and a termination signal ends a command cleanly with 128 + its number.

Every wait is on an event (a line on stderr, a helper process appearing or ending) with a deadline that only
guards against a hang: on a loaded machine any phase may take many times longer than on a quiet one, so no
test measures time. Exit codes and the last line on stderr are asserted exactly.
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

from edgeresnet.processes import GRACE_S, descendants

HANG_S = 900.0  # a deadline that only a hang reaches: reaching a phase, or ending, under any load

SIGNALS = [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]


def _python(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _lines(stderr: str) -> list[str]:
    """The lines of `stderr` but blank ones (click closes a terminal's ^C echo with one)."""
    return [line for line in stderr.splitlines() if line]


def _gone(process: psutil.Process) -> bool:
    """Ended: no longer running, or a zombie (ended, waiting for whichever process reaps orphans)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _still_running(processes: list[psutil.Process]) -> list[str]:
    """Wait until every one of `processes` has ended; the command lines of those that did not before the deadline."""
    deadline = time.monotonic() + HANG_S
    while not all(_gone(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = []
    for p in processes:
        if not _gone(p):
            try:
                alive.append(" ".join(p.cmdline()))
            except psutil.Error:
                pass
    return alive


def test_descendants_lists_grandchildren():
    parent = subprocess.Popen(["sh", "-c", "sh -c 'sleep 600; true' & wait"])
    try:
        process = psutil.Process(parent.pid)
        deadline = time.monotonic() + HANG_S
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
    assert _still_running([helper]) == []


# A command added to the real command group: it starts a helper (not one that dies with its parent: the signal
# must end it) and waits on it, or with "swallow" turns the interrupt into an ordinary error as some libraries do.
_COMMAND = """
    import subprocess, sys
    import click
    from edgeresnet import cli
    from edgeresnet.errors import CheckFailed

    @cli.cli.command("wait-on-helper")
    @click.option("--swallow", is_flag=True)
    def wait_on_helper(swallow):
        helper = subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            print(helper.pid, flush=True)  # the test signals once it reads this line: inside the try, then
            helper.wait()
        except KeyboardInterrupt:
            print("unwinding", file=sys.stderr, flush=True)
            if swallow:
                raise CheckFailed("the library's own error")
            raise

    sys.argv = ["edgeresnet", "wait-on-helper", *sys.argv[1:]]
    cli.main()
"""


@pytest.mark.parametrize("signum, code", SIGNALS, ids=[s.name for s, _ in SIGNALS])
def test_a_signal_ends_a_command_with_128_plus_its_number_and_ends_its_helpers(signum, code):
    process = _python(_COMMAND)
    helper = psutil.Process(int(process.stdout.readline()))
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=HANG_S)
    assert process.returncode == code, stderr
    assert _lines(stderr) == ["unwinding", f"edgeresnet: terminated ({signum.name}); nothing half-written was left"]
    assert _still_running([helper]) == []


def test_the_exit_code_holds_when_the_interrupt_is_turned_into_another_error():
    process = _python(_COMMAND, "--swallow")
    process.stdout.readline()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=HANG_S)
    assert process.returncode == 143, stderr
    assert _lines(stderr) == ["unwinding", "edgeresnet: terminated (SIGTERM); nothing half-written was left"]


def test_sigterm_exits_and_removes_staging_even_when_the_main_thread_does_not_unwind(tmp_path):
    """The main thread swallows the interrupt and goes on (as a C extension may): the helper is ended at once,
    and after the grace period the watcher removes the staging folder, lock file and temporary folder and exits
    with 128 + SIGTERM."""
    staging = tmp_path / ".out.partial"
    staging.mkdir()
    lock = tmp_path / ".out.lock"
    lock.touch()
    process = _python("""
        import subprocess, sys, threading
        from edgeresnet.processes import handle_termination, remove_on_forced_exit, temporary_folder
        handle_termination()
        remove_on_forced_exit(sys.argv[1])
        remove_on_forced_exit(sys.argv[2])
        with temporary_folder("edgeresnet-test-") as temporary:
            print(temporary, flush=True)
            helper = subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                print(helper.pid, flush=True)
                helper.wait()
            except BaseException:
                print("swallowed", file=sys.stderr, flush=True)
            helper.wait()  # reaps the helper the watcher ended
            print("helper ended", file=sys.stderr, flush=True)
            threading.Event().wait()
    """, str(staging), str(lock))
    temporary = Path(process.stdout.readline().strip())
    helper = psutil.Process(int(process.stdout.readline()))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=HANG_S)
    assert process.returncode == 143, stderr
    assert stderr.splitlines() == ["swallowed", "helper ended",
                                   f"edgeresnet: terminated (SIGTERM); forced to stop after {GRACE_S:g} s, staging folders and lock files removed"]
    assert temporary.name.startswith("edgeresnet-test-")
    assert not staging.exists() and not lock.exists() and not temporary.exists()
    assert not helper.is_running()


def _compile_until(tmp_path: Path, small_data: dict, appears) -> tuple[subprocess.Popen, Path, list[psutil.Process]]:
    """Start compile for rpi5 and return once a descendant process satisfying `appears` exists."""
    out = tmp_path / "rpi5"
    command = [sys.executable, "-m", "edgeresnet.cli", "compile", "--target", "rpi5", "--model", "resnet20",
               "--calib", str(small_data["calib"]), "--eval", str(small_data["eval"]), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(tmp_path / "stderr").open("w"),
                               start_new_session=True)  # its own process group, as a command started from a shell
    compile_process = psutil.Process(process.pid)
    deadline = time.monotonic() + HANG_S
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
@pytest.mark.parametrize("signum, appears", [
    (signal.SIGTERM, _is_host_build),
    (signal.SIGTERM, _is_qemu),
    (signal.SIGINT, _is_host_build),
], ids=["sigterm-board-build", "sigterm-emulation", "ctrl-c-board-build"])
def test_termination_stops_compile_and_leaves_nothing(tmp_path, small_data, signum, appears):
    process, out, helpers = _compile_until(tmp_path, small_data, appears)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)  # Ctrl-C in a terminal signals the whole foreground process group
    else:
        process.send_signal(signum)  # kill and docker stop signal the process alone
    process.wait(timeout=HANG_S)
    assert _still_running(helpers) == []
    stderr = (tmp_path / "stderr").read_text()  # complete: every process that could write to it has ended
    assert process.returncode == 128 + signum, stderr[-2000:]
    # Whether the main thread unwound within the grace period or the watcher forced the exit depends on the load
    # (and multiprocessing's resource tracker may add a warning about the pool's semaphores after a forced exit).
    assert any(line.startswith(f"edgeresnet: terminated ({signum.name}); ") for line in stderr.splitlines()), stderr[-2000:]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rpi5")] == []


@pytest.mark.slow
@pytest.mark.parametrize("appears", [_is_host_build, _is_qemu], ids=["board-build", "emulation"])
def test_no_helper_outlives_a_killed_compile(tmp_path, small_data, appears):
    process, _, helpers = _compile_until(tmp_path, small_data, appears)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _still_running(helpers) == []
