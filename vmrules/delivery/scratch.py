"""A run's scratch files, and the removal of those a killed run left behind.

Spills (rows of SQLite tables and services, kept until the rule is done) live in
`OUTPUT_DIR/.vmrules-scratch/RUN_ID/`. Parts, which must sit beside their final
files to be renamed into place, are listed in that folder's `parts` file before
they are made. The next run holds the run lock, so no other run is live: it
removes the listed files (never one vmrules did not make) and the folder. A file
that an incremental commit journal still names is left for that commit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator

FOLDER = ".vmrules-scratch"
_LIST = "parts"
_SUFFIXES = (".part", ".tmp")
_lock = threading.Lock()


def folder(output_dir: str, run_id: str) -> str:
    """The run's folder for spills (made on first use)."""
    path = os.path.join(output_dir, FOLDER, run_id)
    os.makedirs(path, exist_ok=True)
    return path


def record(output_dir: str, run_id: str, path: str) -> None:
    """Note a file about to be made beside a final path, so that a later run can remove it."""
    line = os.path.relpath(os.path.realpath(path), os.path.realpath(output_dir)) + "\n"
    with _lock, open(os.path.join(folder(output_dir, run_id), _LIST), "a", encoding="utf-8") as f:
        f.write(line)


@contextlib.contextmanager
def space(output_dir: str, run_id: str, log: Callable[[str], None]) -> Iterator[None]:
    """Around a run that holds the lock: first what earlier runs left is removed, at the end its own."""
    sweep(output_dir, run_id, log)
    try:
        yield
    finally:
        forget(output_dir, run_id)


def sweep(output_dir: str, run_id: str, log: Callable[[str], None]) -> None:
    """Remove what earlier runs left (the caller holds the run lock)."""
    root = os.path.join(output_dir, FOLDER)
    try:
        runs = sorted(n for n in os.listdir(root) if n != run_id)
    except OSError:
        return
    if not runs:
        return
    keep = _journaled(output_dir)
    if keep is None:
        log(f"left {root} as it is: the incremental state cannot be read")
        return
    for name in runs:
        removed = _clear(output_dir, os.path.join(root, name), keep)
        log(f"removed the scratch files of run {name}, which did not finish ({removed} beside outputs)")


def forget(output_dir: str, run_id: str) -> None:
    """At the run's end: its folder and anything listed that is still there (the caller holds the lock)."""
    own = os.path.join(output_dir, FOLDER, run_id)
    if os.path.isdir(own):
        _clear(output_dir, own, _journaled(output_dir) or set())
    with contextlib.suppress(OSError):
        os.rmdir(os.path.join(output_dir, FOLDER))


def _clear(output_dir: str, run_folder: str, keep: set[str]) -> int:
    removed = 0
    for path in _listed(output_dir, run_folder):
        if path not in keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed += 1
    shutil.rmtree(run_folder, ignore_errors=True)
    return removed


def _listed(output_dir: str, run_folder: str) -> list[str]:
    """The files a run listed, only as vmrules names them and only inside the output directory."""
    try:
        with open(os.path.join(run_folder, _LIST), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    root = os.path.realpath(output_dir)
    out = []
    for line in lines:
        path = os.path.normpath(os.path.join(root, line))
        name = os.path.basename(path)
        if os.path.commonpath([root, path]) == root and name.startswith(".") and name.endswith(_SUFFIXES):
            out.append(path)
    return out


def _journaled(output_dir: str) -> set[str] | None:
    """Files an unfinished incremental commit still has to rename (None: the state cannot be read)."""
    from vmrules.delivery.state import State, StateError

    try:
        pending = State.load(output_dir).pending or {}
    except StateError:
        return None
    return {os.path.realpath(r[0]) for r in pending.get("renames", [])
            if isinstance(r, list) and r and isinstance(r[0], str)}
