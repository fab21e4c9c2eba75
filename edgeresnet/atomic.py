"""Writing outputs so that a crash, a full disk or a kill never leaves a half-written one.

Everything is built beside its destination (same file system, so the final
rename is atomic) and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

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


@contextlib.contextmanager
def atomic_directory(destination: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes `destination`, on any failure it is removed.

    An existing destination is refused unless `force`; with `force` it is
    replaced only after the new folder is complete.
    """
    destination = Path(destination)
    if destination.exists() and not force:
        raise InputError(f"{destination} already exists; pass --force to replace it")
    if destination.exists() and not destination.is_dir():
        raise InputError(f"{destination} exists and is not a folder")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent))
        os.chmod(staging, 0o777 & ~_umask())
    except OSError as exc:
        raise _explain(exc, destination) from None
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
