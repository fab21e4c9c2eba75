"""Helper processes that never outlive the edgeresnet process that started them.

Two mechanisms, one for each way the parent can end:
- `die_with_parent` (a subprocess `preexec_fn`, a process pool's `initializer`) asks Linux to send the
  child SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), which covers a SIGKILL of the parent.
  Linux sends it when the thread that started the child ends, so start children from threads that wait on them.
- `watch_for_termination` (the command line) reacts to SIGTERM, SIGHUP and SIGINT from a thread of its own
  (`signal.set_wakeup_fd` wakes it even while the main thread is inside a C extension such as ONNX
  Runtime or TVM's compiler): it terminates every descendant at once, then gives the main thread a grace period
  to unwind and remove its staging folders, and past it removes them itself and exits. The whole stays
  under Docker's 10 s between SIGTERM and SIGKILL.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
GRACE_S = 5.0  # the main thread's time to unwind after a termination signal, before the forced exit
_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

_folders_to_remove: set[str] = set()
_prctl = None
_wakeup_sockets: list[socket.socket] = []  # open as long as the process: the wakeup fd must stay valid


def _libc_prctl():
    global _prctl
    if _prctl is None:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _prctl


def _set_parent_death_signal(parent_pid: int) -> None:
    _libc_prctl()(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died between the fork and the prctl
        os._exit(1)


def die_with_parent() -> Callable[[], None]:
    """A function for the child to call first (`preexec_fn=`, `initializer=`): it dies when this process does."""
    _libc_prctl()  # opened here, in the parent: a child forked from a threaded process should do as little as it can
    return functools.partial(_set_parent_death_signal, os.getpid())  # picklable, for a spawned pool's initializer


def descendants(pid: int | None = None) -> list[int]:
    """The pids of every living descendant of `pid` (this process by default), read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name in parentheses may hold spaces
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [os.getpid() if pid is None else pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def signal_descendants(signum: int) -> None:
    for pid in descendants():
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def remove_on_forced_exit(folder: str | Path) -> None:
    """`folder` (a staging folder) is removed should a termination signal end the process before its owner does."""
    _folders_to_remove.add(str(folder))


def forget_on_forced_exit(folder: str | Path) -> None:
    _folders_to_remove.discard(str(folder))


def watch_for_termination(on_signal: Callable[[int], None]) -> None:
    """Start the thread that, on SIGTERM/SIGHUP/SIGINT, kills every helper process at once and ends this
    process with 128 + the signal's number if the main thread has not ended it within `GRACE_S`.

    `on_signal` is called with the signal's number first (the main thread may not have run its handler yet).
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            data = reader.recv(64)
            received = [signum for signum in data if signum in _SIGNALS]
            if received:
                break
        on_signal(received[0])
        # SIGTERM ends the helpers at once (none handles it); multiprocessing's resource tracker ignores it and
        # leaves by itself when this process is gone. Whatever the main thread waited on has ended now.
        signal_descendants(signal.SIGTERM)
        threading.Event().wait(GRACE_S)
        signal_descendants(signal.SIGKILL)
        for folder in list(_folders_to_remove):
            shutil.rmtree(folder, ignore_errors=True)
        name = signal.Signals(received[0]).name
        os.write(2, f"edgeresnet: terminated ({name}); stopped after {GRACE_S:g} s, staging folders removed\n".encode())
        os._exit(128 + received[0])

    _wakeup_sockets.extend((reader, writer))
    threading.Thread(target=watch, name="edgeresnet-termination", daemon=True).start()
