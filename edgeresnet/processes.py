"""Helper processes that never outlive the edgeresnet process that started them.

Two mechanisms, one for each way the parent can end:
- `die_with_parent` (a subprocess `preexec_fn`, a process pool's `initializer`) asks Linux to send the
  child SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), which covers a SIGKILL of the parent.
  Linux sends it when the thread that started the child ends, so start children from threads that wait on them.
- `handle_termination` (the command line, first thing) reacts to SIGTERM, SIGHUP and SIGINT from a thread of its own
  (`signal.set_wakeup_fd` wakes it even while the main thread is inside a C extension such as ONNX
  Runtime or TVM's compiler): it terminates every descendant at once, then gives the main thread a grace period
  to unwind and remove its staging folders, and past it removes them itself and exits. The whole stays
  under Docker's 10 s between SIGTERM and SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
GRACE_S = 5.0  # the main thread's time to unwind after a termination signal, before the forced exit
_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

_paths_to_remove: set[str] = set()
_received: list[int] = []  # the first termination signal's number, once one arrived
_interrupting = True  # the main thread's handler raises Terminated (once)
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


def remove_on_forced_exit(path: str | Path) -> None:
    """`path` (a staging or temporary folder, a lock file) is removed should a termination signal force the
    process to exit before its owner removed it."""
    _paths_to_remove.add(str(path))


def forget_on_forced_exit(path: str | Path) -> None:
    _paths_to_remove.discard(str(path))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


@contextlib.contextmanager
def temporary_folder(prefix: str) -> Iterator[str]:
    """`tempfile.TemporaryDirectory` that a forced exit removes as well."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        remove_on_forced_exit(folder)
        try:
            yield folder
        finally:
            forget_on_forced_exit(folder)


class Terminated(KeyboardInterrupt):
    """SIGTERM, SIGHUP or SIGINT, raised in the main thread like Ctrl-C so that every `finally` and context
    manager cleans up (code that catches KeyboardInterrupt treats all three alike)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def termination_received() -> int | None:
    """The number of the first termination signal received, even if the code it interrupted turned the
    exception into another one (a C extension interrupted while importing raises ImportError) or swallowed it."""
    return _received[0] if _received else None


def stop_interrupting() -> None:
    """From now on a termination signal is only recorded: the command has finished and is choosing its exit code."""
    global _interrupting
    _interrupting = False


def _interrupt_main_thread(signum: int, _frame) -> None:
    # One exception at most: a second signal while the first unwinds must not cut its cleanup short (the
    # watcher ends the process if the first one was swallowed).
    global _interrupting
    record_termination(signum)
    if _interrupting:
        _interrupting = False
        raise Terminated(signum)


def record_termination(signum: int) -> None:
    """Remember `signum` as the termination signal unless one was received before."""
    if not _received:
        _received.append(signum)


def handle_termination() -> None:
    """From now on SIGTERM, SIGHUP and SIGINT raise `Terminated` in the main thread, and a thread of its own
    kills every helper process at once and ends this process with 128 + the signal's number if the main thread
    has not ended it within `GRACE_S`. Call it first thing in the main thread.

    The wakeup fd is set and the watcher started before the handlers: a signal that arrives in between still
    reaches the watcher (Python's own SIGINT handler writes to the fd as well; SIGTERM still has its default
    action then, which ends the process before it has written or started anything).
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    _wakeup_sockets.extend((reader, writer))
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(reader,), name="edgeresnet-termination", daemon=True).start()
    for signum in _SIGNALS:
        signal.signal(signum, _interrupt_main_thread)


def _watch(reader: socket.socket) -> None:
    while True:
        received = [signum for signum in reader.recv(64) if signum in _SIGNALS]
        if received:
            break
    record_termination(received[0])  # the main thread may be inside a C call and not run its handler for a while
    # SIGTERM ends the helpers at once (none handles it); multiprocessing's resource tracker ignores it and
    # leaves by itself when this process is gone. Whatever the main thread waited on has ended now.
    signal_descendants(signal.SIGTERM)
    time.sleep(GRACE_S)
    signal_descendants(signal.SIGKILL)
    for path in list(_paths_to_remove):
        _remove(path)
    signum = _received[0]
    os.write(2, f"edgeresnet: terminated ({signal.Signals(signum).name}); forced to stop after {GRACE_S:g} s, "
                "staging folders and lock files removed\n".encode())
    os._exit(128 + signum)
