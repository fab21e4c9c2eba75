"""Writing outputs so that a crash, a full disk or a kill never leaves a half-written one.

Everything is built beside its destination (same file system, so the final
rename is atomic) and renamed into place only when complete. A folder destination is
also locked (`fcntl.flock` on a hidden lock file beside it) for the whole build, so two
processes writing one destination cannot race; its staging folders carry the writer's
pid, so the next writer removes those a dead process left behind. `edgeresnet.processes` turns
SIGTERM and SIGHUP into the same exception as Ctrl-C, so every staging folder and temporary folder is
removed on each, and removes the staging folders itself should the process have to be forced to exit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Iterator

from edgeresnet import processes
from edgeresnet.errors import InputError


def _explain(exc: OSError, path: Path) -> InputError:
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return InputError(f"{path}: no space left on the device; nothing was written")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"{path}: not writable ({exc.strerror}); nothing was written")
    return InputError(f"{path}: cannot write ({exc.strerror or exc}); nothing was written")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp creates 0600; outputs are meant to be shared
        os.replace(tmp_name, path)
    except OSError as exc:
        if tmp_name:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        raise _explain(exc, path) from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(destination: Path) -> list[Path]:
    """Remove `.NAME.PID.*.partial` (and `.old`) folders beside `destination` whose writer is dead.

    Called with the destination's lock held, so no live edgeresnet process is writing them;
    the pid check keeps this safe even against a writer that did not take the lock.
    """
    pattern = re.compile(rf"^\.{re.escape(destination.name)}\.(\d+)\.[^/]*\.(partial|old)$")
    removed = []
    with contextlib.suppress(OSError):
        for path in destination.parent.iterdir():
            match = pattern.match(path.name)
            if match and path.is_dir() and not path.is_symlink() and not _pid_alive(int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def lock_file_of(destination: Path) -> Path:
    return destination.with_name(f".{destination.name}.lock")


@contextlib.contextmanager
def exclusive_lock(destination: Path) -> Iterator[None]:
    """Hold an exclusive flock on `.NAME.lock` beside `destination`; fail at once, naming the holder, if taken.

    The lock file is removed on release; a process that opened it just before is
    made to notice (the inode it locked is no longer the path's) and to try again.
    """
    path = lock_file_of(destination)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _explain(exc, destination) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(f"{destination}: another edgeresnet process (pid {holder}) is writing it now; "
                             f"nothing was written (wait for it, or choose another --out)") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed it after we opened it: lock the new one
    processes.remove_on_forced_exit(path)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        processes.forget_on_forced_exit(path)
        os.close(fd)


@contextlib.contextmanager
def first_use_lock(folder: Path) -> Iterator[None]:
    """Wait for, then hold, an exclusive flock on `.NAME.lock` beside a shared cache folder: processes that find
    it missing side by side build it one at a time, so the later ones see it complete and reuse it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f".{folder.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def atomic_directory(destination: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes `destination`, on any failure it is removed.

    An existing destination is refused unless `force`; with `force` it is
    replaced only after the new folder is complete. The destination stays locked
    throughout, and staging folders of dead writers beside it are removed first.
    """
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise InputError(f"{destination} exists and is not a folder")
    if destination.exists() and not force:
        raise InputError(f"{destination} already exists; pass --force to replace it")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _explain(exc, destination) from None
    with exclusive_lock(destination):
        # Checked again under the lock: another writer may have finished it meanwhile.
        if destination.exists() and not force:
            raise InputError(f"{destination} already exists (written by another process meanwhile); pass --force to replace it")
        remove_stale_staging(destination)
        with _staged(destination) as staging:
            yield staging


@contextlib.contextmanager
def _staged(destination: Path) -> Iterator[Path]:
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.{os.getpid()}.", suffix=".partial", dir=destination.parent))
        os.chmod(staging, 0o777 & ~_umask())
    except OSError as exc:
        raise _explain(exc, destination) from None
    processes.remove_on_forced_exit(staging)
    try:
        yield staging
        if destination.exists():
            retired = staging.with_name(staging.name.replace(".partial", ".old"))
            os.replace(destination, retired)
            os.replace(staging, destination)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, destination)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise _explain(exc, destination) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        processes.forget_on_forced_exit(staging)
