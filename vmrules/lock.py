"""One `apply` at a time per output directory: an advisory lock file, waited for with a notice."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator

LOCK_NAME = ".vmrules.lock"


@contextlib.contextmanager
def run_lock(output_dir: str, notice: Callable[[str], None]) -> Iterator[None]:
    """Hold the output directory's lock; a second run waits (and says so) until the first ends.

    The lock is the kernel's (flock): it goes away with the process, so a killed
    run never leaves a stale lock behind.
    """
    os.makedirs(output_dir, exist_ok=True)
    fd = os.open(os.path.join(output_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
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
