"""What a rule writes while it runs, and how its files reach their final paths.

A rule streams batches into per-rule parts: a part file beside each final file,
a spill file for each database table and service (in the run's scratch folder,
see scratch.py, which also lists the parts). Nothing reaches a final path
or a database until the rule has finished without error (`finish`); a failed
rule's parts are removed (`abort`). At the end of the run the parts of each
file are renamed into place (one rule) or merged into it (several rules).
"""

from __future__ import annotations

import contextlib
import glob
import os
import queue
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from vmrules.delivery import scratch
from vmrules.delivery.atomic import FILE_MODE, fsync_dir, new_temp
from vmrules.delivery.spill import Spill
from vmrules.delivery.state import Rename, remove_files
from vmrules.errors import RuleError, VmrulesError
from vmrules.evaluate.rows import Evaluation
from vmrules.model import reserved_table
from vmrules.net.http import HttpError
from vmrules.targets import registry
from vmrules.targets.service import Delivery
from vmrules.targets.sqlite import describe

Log = Callable[[str], None]


@dataclass
class Part:
    """One rule's finished rows for one file target, waiting beside the final path."""

    rule: str
    target: Any               # model.Target
    final: str
    path: str
    rows: int
    output_dir: str = "."
    run_id: str = ""


@dataclass
class RuleOutputs:
    """The outputs of one rule during its run."""

    rule: str
    destinations: list[Any]   # run.Destination
    run_id: str
    env: Mapping[str, str]
    log: Log
    step_ms: int
    keep_tables: bool = False
    watermark_ms: int | None = None   # incremental runs: recorded in each database table with the rows
    output_dir: str = "."             # holds the run's scratch folder
    rows: dict[str, int] = field(default_factory=dict)
    parts: list[Part] = field(default_factory=list)
    tables: dict[str, list[pa.Table]] = field(default_factory=dict)
    _open: dict[str, Any] = field(default_factory=dict)
    _writer: _Background | None = None

    def write(self, ev: Evaluation) -> None:
        """Add one batch of evaluated rows; the writing runs in a thread of its own, beside the next fetch."""
        if self._writer is None:
            self._writer = _Background(self._write_now)
        self._writer.put(ev)

    def _write_now(self, ev: Evaluation) -> None:
        for dest in self.destinations:
            table = ev.routed.get(dest.target.name)
            if table is None:
                continue
            out = self._open.get(dest.target.name) or self._start(dest)
            try:
                out.write(table, ev.table)
            except RuleError:
                raise
            except VmrulesError as exc:     # rows the target cannot take, said for the rule
                raise RuleError(self.rule, f"target {dest.target.name}: {exc}") from None
            self.rows[dest.target.name] = self.rows.get(dest.target.name, 0) + table.num_rows
            if self.keep_tables:
                self.tables.setdefault(dest.target.name, []).append(table)

    def finish(self) -> None:
        """Deliver to the services first, then commit the databases, then close the file parts: a service
        that fails leaves no database row and no file of the rule behind (the run's end renames files)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None      # no cycle left between the two
            writer.close()
        order = {_ServiceOut: 0, _DatabaseOut: 1, _FileOut: 2}
        delivered: list[str] = []
        for name, out in sorted(self._open.items(), key=lambda item: order[type(item[1])]):
            try:
                result = out.finish()
            except RuleError as exc:
                if delivered:      # services cannot take rows back: say which got them
                    raise RuleError(self.rule, f"{exc.message} (already delivered: {', '.join(delivered)})") from None
                raise
            if isinstance(out, _FileOut):
                self.parts.append(Part(self.rule, out.dest.target, out.dest.path, out.part, self.rows.get(name, 0),
                                       self.output_dir, self.run_id))
            elif result is not None:
                self.rows[name] = result
            if isinstance(out, _ServiceOut):
                delivered.append(f"{name} ({self.rows.get(name, 0)})")
            del self._open[name]

    def abort(self) -> None:
        """Remove everything this rule started; nothing of it remains."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with contextlib.suppress(Exception):
                writer.close()
        for out in self._open.values():
            with contextlib.suppress(Exception):
                out.abort()
        for part in self.parts:
            with contextlib.suppress(OSError):
                os.unlink(part.path)
        self._open.clear()
        self.parts.clear()

    def _start(self, dest: Any) -> Any:
        kind = registry.get(dest.target.type)
        out: Any
        if dest.kind == "file":
            base = os.path.basename(dest.path)
            _remove_stale(os.path.dirname(dest.path), base, ".part", self.run_id)
            part = os.path.join(os.path.dirname(dest.path), f".{base}.{self.run_id}.{self.rule}.part")
            scratch.record(self.output_dir, self.run_id, part)
            out = _FileOut(dest, kind, part)
        elif dest.kind == "database":     # spills beside the database are from versions before the scratch folder
            if os.path.isabs(dest.path):  # a database file (a server's DSN is not a path)
                _remove_stale(os.path.dirname(dest.path), os.path.basename(dest.path), ".spill", self.run_id)
            out = _DatabaseOut(dest, kind, self.rule, scratch.folder(self.output_dir, self.run_id), self.watermark_ms,
                               self.env)
        else:
            out = _ServiceOut(dest, kind, self, scratch.folder(self.output_dir, self.run_id))
        self._open[dest.target.name] = out
        return out


class _Background:
    """One worker thread fed through a short queue; its first error comes out of put() or close()."""

    def __init__(self, work: Callable[[Any], None], depth: int = 1):
        self.work = work
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="vmrules-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not _STOP:
            if self.error is None:
                try:
                    self.work(item)
                except BaseException as exc:  # noqa: BLE001 - handed to the rule's thread
                    self.error = exc

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def close(self) -> None:
        self.queue.put(_STOP)
        self.thread.join()
        if self.error is not None:
            raise self.error


_STOP = object()


class _FileOut:
    def __init__(self, dest: Any, kind: registry.TargetType, part: str):
        self.dest, self.part = dest, part
        os.makedirs(os.path.dirname(part), exist_ok=True)
        self.sink = kind.sink(part, dest.target) if kind.sink else _IpcSink(part)

    def write(self, table: pa.Table, full: pa.Table) -> None:
        self.sink.write(table)

    def finish(self) -> None:
        self.sink.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.sink.close()
        with contextlib.suppress(OSError):
            os.unlink(self.part)


class _IpcSink:
    """A plugin's rows kept as an Arrow IPC stream (dictionaries may change per batch) until its
    whole-table writer runs at the end."""

    def __init__(self, path: str):
        self.path = path
        self.sink = pa.OSFile(path, "wb")
        self.writer: Any = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pa.ipc.new_stream(self.sink, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.sink.close()


class _DatabaseOut:
    def __init__(self, dest: Any, kind: registry.TargetType, rule: str, folder: str, watermark_ms: int | None,
                 env: Mapping[str, str]):
        if why := reserved_table(dest.table):
            raise RuleError(rule, f"target {dest.target.name}: {why}")
        self.dest, self.kind, self.rule, self.watermark_ms, self.env = dest, kind, rule, watermark_ms, env
        self.spill = Spill(folder, f"{dest.target.name}.{dest.table}")

    def write(self, table: pa.Table, full: pa.Table) -> None:
        self.spill.write(table)

    def finish(self) -> int:
        """One transaction for the rule's rows; a database failure (a full disk, a refused login...) leaves the
        table as it was."""
        assert self.kind.sink is not None
        try:
            sink = self.kind.sink(self.dest.path, self.dest.table, self.rule, self.dest.target, self.watermark_ms,
                                  env=self.env)
            try:
                wrote = False
                for table in self.spill.batches():
                    sink.write(table)
                    wrote = True
                if not wrote and self.spill.schema is not None:   # no rows: the table (and index) all the same,
                    sink.write(self.spill.schema.empty_table())    # so that queries of it do not fail
            except BaseException:
                sink.abort()
                raise
            return sink.close()
        except sqlite3.Error as exc:
            raise RuleError(self.rule, f"target {self.dest.target.name}: table {self.dest.table}: "
                            f"{describe(exc, self.dest.path)}; nothing of this rule was written to it") from None
        except VmrulesError as exc:     # a database server's error, said plainly, its password never shown
            raise RuleError(self.rule, f"target {self.dest.target.name}: table {self.dest.table}: {exc}; "
                            "nothing of this rule was written to it") from None
        finally:
            self.spill.discard()

    def abort(self) -> None:
        self.spill.discard()


class _ServiceOut:
    def __init__(self, dest: Any, kind: registry.TargetType, outputs: RuleOutputs, folder: str):
        self.dest, self.kind, self.outputs = dest, kind, outputs
        self.routed = Spill(folder, dest.target.name)

    def write(self, table: pa.Table, full: pa.Table) -> None:
        self.routed.write(table)

    def finish(self) -> int:
        try:
            routed = self.routed.table()
            if routed is None:
                return 0
            o = self.outputs
            delivery = Delivery(self.dest.target, routed, routed, self.dest.context, o.step_ms, o.env, o.log)
            try:
                return int(self.kind.write(delivery))
            except HttpError as exc:
                raise RuleError(o.rule, f"target {self.dest.target.name}: {exc}") from None
        finally:
            self.abort()

    def abort(self) -> None:
        self.routed.discard()


def _remove_stale(folder: str, base: str, suffix: str, run_id: str) -> None:
    """Parts and spills left by a killed run (the run lock rules out a live one)."""
    for path in glob.glob(os.path.join(glob.escape(folder), glob.escape(f".{base}.") + "*" + suffix)):
        if f".{run_id}." not in os.path.basename(path):
            with contextlib.suppress(OSError):
                os.unlink(path)


def prepare(parts: list[Part], keep_existing: bool = False) -> tuple[list[Rename], int, list[str]]:
    """One file ready beside its final path, from the parts of the rules that feed it (or the files of a
    partitioned dataset, each beside its final path under the dataset's root).

    With `keep_existing`, a file already at the final path keeps its rows and the new
    ones follow them (incremental runs and later chunks of a backfill never lose a row
    an earlier one delivered). Returns the renames still to do, the rows, and the
    problems (then nothing is left behind).
    """
    target, final = parts[0].target, parts[0].final
    kind = registry.get(target.type)
    rows = sum(p.rows for p in parts)
    if target.partition_by:
        return _prepare_dataset(parts, kind, rows)
    ready = parts[0].path
    earlier = [final] if keep_existing and os.path.exists(final) else []
    try:
        if earlier and kind.sink is None:
            raise ValueError(f"it holds an earlier run's rows and a {target.type} file cannot be added to: "
                             "give the target a path that is new for every run, e.g. with {{ run.from }}")
        if earlier or len(parts) > 1 or kind.sink is None:
            assert kind.merge is not None
            ready = new_temp(final)
            if parts[0].run_id:
                scratch.record(parts[0].output_dir, parts[0].run_id, ready)
            kind.merge(earlier + [p.path for p in parts], ready, target)
        with open(ready, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(ready, FILE_MODE)
        return [Rename(ready, final, os.stat(ready).st_ino)], rows, []
    except Exception as exc:  # noqa: BLE001 - reported on every rule that fed the file
        remove_files([ready])
        return [], 0, [f"target {target.name}: cannot write {final}: {exc}"]
    finally:
        remove_files(p.path for p in parts if p.path != ready)


def _prepare_dataset(parts: list[Part], kind: registry.TargetType, rows: int) -> tuple[list[Rename], int, list[str]]:
    """The run's files of a partitioned dataset, each ready beside its final path ROOT/KEY=VALUE/.../
    part-RUN_ID.parquet: written in the run's scratch folder, then moved beside their final paths (made
    unique, so that no file of another run, or of an earlier chunk of this one, is ever replaced)."""
    target, root, run_id = parts[0].target, parts[0].final, parts[0].run_id
    renames: list[Rename] = []
    made = tempfile.mkdtemp(prefix="dataset-", dir=scratch.folder(parts[0].output_dir, run_id))
    try:
        if os.path.lexists(root) and not os.path.isdir(root):
            raise ValueError("it is a file; a target with partition_by writes a folder of files there")
        assert kind.dataset is not None
        files = kind.dataset([p.path for p in parts], made, target)
        place_dataset(made, files, root, f"part-{run_id}", renames,
                      lambda ready: scratch.record(parts[0].output_dir, run_id, ready))
        return renames, rows, []
    except Exception as exc:  # noqa: BLE001 - reported on every rule that fed the dataset
        remove_files(r.ready for r in renames)
        return [], 0, [f"target {target.name}: cannot write the dataset {root}: {exc}"]
    finally:
        shutil.rmtree(made, ignore_errors=True)
        remove_files(p.path for p in parts)


def place_dataset(made: str, files: list[str], root: str, stem: str, renames: list[Rename],
                  record: Callable[[str], None]) -> None:
    """Move the files of a dataset written in `made` beside their final paths under `root`, each as
    ROOT/KEY=VALUE/.../STEM.parquet (or STEM-2.parquet, ...: never a path a file already has); the
    renames still to do are added to `renames` as they are made, for the caller to undo."""
    taken: set[str] = set()
    for rel in files:
        folder = root
        for part in ["", *os.path.dirname(rel).split(os.sep)]:    # made one by one, never through a link
            folder = os.path.join(folder, part) if part else folder
            if os.path.islink(folder):
                raise ValueError(f"{folder} is a symbolic link: a dataset's folders are its own; refused")
            os.makedirs(folder, exist_ok=True)
        final = _unused(folder, stem, ".parquet", taken)
        ready = new_temp(final)
        record(ready)
        shutil.move(os.path.join(made, rel), ready)
        with open(ready, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(ready, FILE_MODE)
        renames.append(Rename(ready, final, os.stat(ready).st_ino))


def _unused(folder: str, stem: str, suffix: str, taken: set[str]) -> str:
    """FOLDER/STEM.SUFFIX, or STEM-2.SUFFIX, ... : a path no file has and this run has not chosen."""
    for n in range(1, 1_000_000):
        path = os.path.join(folder, f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
        if path not in taken and not os.path.lexists(path):
            taken.add(path)
            return path
    raise ValueError(f"no free file name in {folder}")


def commit(renames: list[Rename], log: Log) -> None:
    """Put prepared files in place (a run that is not incremental: no journal needed)."""
    for r in renames:
        os.replace(r.ready, r.final)
        fsync_dir(os.path.dirname(r.final))
        log(f"wrote {r.final}")
