"""One `apply` at a time per output directory: an advisory lock file, waited for with a notice;
and the check that a folder can be written before a run's work is done."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Callable, Iterator

from vmrules.errors import UsageError

LOCK_NAME = ".vmrules.lock"


@contextlib.contextmanager
def run_lock(output_dir: str, notice: Callable[[str], None]) -> Iterator[None]:
    """Hold the output directory's lock; a second run waits (and says so) until the first ends.

    The lock is the kernel's (flock): it goes away with the process, so a killed
    run never leaves a stale lock behind. A lock file that is a symbolic link is
    refused (it would truncate whatever it points at); an output directory that
    cannot be written is a UsageError naming it.
    """
    path = os.path.join(output_dir, LOCK_NAME)
    try:
        os.makedirs(output_dir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{path} is a symbolic link; vmrules only uses a lock file of its own there "
                             "(remove the link)") from None
        raise UsageError(f"cannot write to the output directory {output_dir}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            raise UsageError(f"{path} is not a plain file of its own (a hard link or a special file); "
                             "vmrules only uses a lock file of its own there")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            notice(f"waiting for another vmrules apply on {output_dir} (pid {holder}) to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def writable_folder(path: str) -> None:
    """OSError when no file can be created beside `path` (the folder is made when missing)."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".vmrules-probe.", dir=folder)
    os.close(fd)
    os.unlink(probe)
