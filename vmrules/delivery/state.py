"""Incremental runs: a watermark per rule, kept in the output directory, moved only after a commit.

The state file `.vmrules-state.json` holds, per rule, the last point (milliseconds,
on the rule's step) that every target of the rule has received. The next
incremental run fetches the points after it, so a boundary sample lands in
exactly one run.

Files and watermarks commit together through a redo journal: the run first
prepares every file beside its final path, then writes the state with a
`pending` record (the renames to do and the watermarks to set), then renames,
then writes the state without it. A run killed after the journal is finished by
the next run (`recover`) before it does anything else; a run killed before it
left nothing behind but temporary files, and its windows are simply fetched again.
SQLite tables keep their own watermark in the same transaction as their rows
(`vmrules_watermarks`, see targets/sqlite.py), so rows a table already has are never appended twice.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vmrules.errors import VmrulesError

STATE_NAME = ".vmrules-state.json"
VERSION = 1


@dataclass
class Rename:
    """A prepared file waiting beside its final path; `ino` tells whether the rename already happened."""

    ready: str
    final: str
    ino: int


@dataclass(frozen=True)
class Carry:
    """A rule's alert states at the end of a window (`as_of`, ms), for a window that continues it.

    `state` is evaluate.EvalState.to_doc() (per series: threshold states, open
    episodes); `fingerprint` is the rule's state_fingerprint(): states of a rule
    that has changed since are not used.
    """

    fingerprint: str
    as_of_ms: int
    state: dict[str, Any]

    def to_doc(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "as_of_ms": self.as_of_ms, "state": self.state}

    @classmethod
    def from_doc(cls, doc: Any) -> Carry:
        if not isinstance(doc, dict) or not isinstance(doc.get("state"), dict) or \
                not all(isinstance(v, list) for v in doc["state"].values()):
            raise ValueError("alert_state is not a mapping with a state")
        return cls(str(doc["fingerprint"]), _ms(doc["as_of_ms"]), doc["state"])

    @property
    def size(self) -> int:
        """How many series and thresholds, and open episodes, it holds."""
        return sum(len(v) for v in self.state.values())

    def continues(self, fingerprint: str, start_ms: int, step_ms: int) -> bool:
        """Whether a window starting at `start_ms` picks up exactly where this state was left."""
        return self.fingerprint == fingerprint and self.as_of_ms == start_ms - step_ms


@dataclass
class State:
    """Watermarks per rule (last point delivered, ms), their alert states, and a journal of a commit in progress."""

    path: str
    watermarks: dict[str, int] = field(default_factory=dict)
    pending: dict[str, Any] | None = None
    carries: dict[str, Carry] = field(default_factory=dict)
    firsts: dict[str, int] = field(default_factory=dict)   # rules without a watermark: where their first run began

    @classmethod
    def load(cls, output_dir: str) -> State:
        path = os.path.join(output_dir, STATE_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise StateError(f"{path}: cannot read the incremental state: {exc}") from None
        try:
            if not isinstance(doc, dict) or doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version') if isinstance(doc, dict) else None!r}")
            marks = {str(name): _ms(v["watermark_ms"]) for name, v in doc["rules"].items()}
            carries = {str(name): Carry.from_doc(v["alert_state"]) for name, v in doc["rules"].items()
                       if "alert_state" in v}
            firsts = {str(name): _ms(v) for name, v in doc.get("first_windows", {}).items()}
            pending = doc.get("pending")
            if pending is not None:
                _check_pending(pending, output_dir)
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise StateError(f"{path}: not a vmrules state file of version {VERSION} ({exc}); "
                             "move it away to start the watermarks afresh") from None
        return cls(path, marks, pending, carries, firsts)

    def save(self) -> None:
        from vmrules.delivery.atomic import atomic_path  # vmrules.targets loads pyarrow: not before the request

        rules: dict[str, dict[str, Any]] = {n: {"watermark_ms": ms} for n, ms in sorted(self.watermarks.items())}
        for name, carry in self.carries.items():
            if name in rules:
                rules[name]["alert_state"] = carry.to_doc()
        doc: dict[str, object] = {"version": VERSION, "rules": rules}
        firsts = {n: ms for n, ms in sorted(self.firsts.items()) if n not in self.watermarks}
        if firsts:
            doc["first_windows"] = firsts
        if self.pending is not None:
            doc["pending"] = self.pending
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")

    def begin(self, starts: Mapping[str, int]) -> None:
        """Before the first run of rules fetches anything: where their windows begin, so that a run killed
        after some of its targets committed is fetched again from there (not from a later `range`)."""
        new = {n: ms for n, ms in starts.items() if n not in self.watermarks and n not in self.firsts}
        if new:
            self.firsts.update(new)
            self.save()

    def commit(self, renames: list[Rename], marks: Mapping[str, int], log: Callable[[str], None],
               carries: Mapping[str, Carry | None] | None = None) -> None:
        """Rename the prepared files into place and move the watermarks (and the alert states that go with
        them), as one step that survives a kill."""
        self.pending = {"renames": [[r.ready, r.final, r.ino] for r in renames], "watermarks": dict(marks),
                        "alert_states": {n: None if c is None else c.to_doc() for n, c in (carries or {}).items()}}
        self.save()
        self.recover(log)

    def recover(self, log: Callable[[str], None]) -> None:
        """Finish the commit a killed run journaled (or the one just journaled by `commit`)."""
        if self.pending is None:
            return
        from vmrules.delivery.atomic import fsync_dir

        folders = set()
        for ready, final, ino in self.pending.get("renames", []):
            if os.path.exists(ready):
                os.replace(ready, final)
                folders.add(os.path.dirname(final))
            elif _inode(final) != ino:
                log(f"incremental state: {final} was changed after the run that wrote it")
        for folder in folders:
            fsync_dir(folder)
        self.watermarks.update({k: int(v) for k, v in self.pending.get("watermarks", {}).items()})
        for name, doc in self.pending.get("alert_states", {}).items():
            if doc is None:
                self.carries.pop(name, None)
            else:
                self.carries[name] = Carry.from_doc(doc)
        self.pending = None
        self.save()


class StateError(VmrulesError):
    """The state file cannot be used; the message names it."""


MAX_MS = 253_402_300_799_999        # 9999-12-31T23:59:59.999Z
RESERVED = (STATE_NAME, ".vmrules.lock")    # vmrules' own files in the output directory; never a target's


def _ms(value: Any) -> int:
    """A watermark: whole milliseconds between 1970 and 9999 (`1e400` or "x" are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not 0 <= value <= MAX_MS:
        raise ValueError(f"watermark {value!r} is not a time in milliseconds")
    return int(value)


def _check_pending(pending: Any, output_dir: str) -> None:
    """The journal renames only prepared files of this output directory into place in it, and sets
    watermarks; an entry that points elsewhere, or at vmrules' own files, is refused."""
    if not isinstance(pending, dict) or set(pending) - {"renames", "watermarks", "alert_states"}:
        raise ValueError("pending is not a journal of renames, watermarks and alert states")
    root = os.path.realpath(output_dir)
    for entry in pending.get("renames", []):
        if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(p, str) for p in entry[:2])
                and isinstance(entry[2], int) and not isinstance(entry[2], bool)):
            raise ValueError(f"journal entry {str(entry)[:80]} is not [prepared, final, inode]")
        ready, final = (os.path.realpath(os.path.join(root, p)) for p in entry[:2])
        for p in (ready, final):
            inside = os.path.relpath(p, root)
            if os.path.commonpath([root, p]) != root or inside in RESERVED or inside == ".":
                raise ValueError(f"journal entry {str(entry)[:120]} is not a file of the output directory")
        if os.path.dirname(ready) != os.path.dirname(final) \
                or not os.path.basename(ready).startswith(f".{os.path.basename(final)}."):
            raise ValueError(f"journal entry {str(entry)[:120]} does not rename a prepared file beside its path")
    marks = pending.get("watermarks", {})
    if not isinstance(marks, dict):
        raise ValueError("pending watermarks are not a mapping")
    for v in marks.values():
        _ms(v)
    states = pending.get("alert_states", {})
    if not isinstance(states, dict):
        raise ValueError("pending alert states are not a mapping")
    for doc in states.values():
        if doc is not None:
            Carry.from_doc(doc)


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def remove_files(paths: Iterable[str]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            os.unlink(p)
