"""Target `parquet`: timestamp[ms, UTC], dictionary-encoded strings, snappy by default, one row group per batch;
with `partition_by`, a hive-partitioned dataset (ROOT/KEY=VALUE/.../part-*.parquet)."""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vmrules.errors import VmrulesError
from vmrules.model import MAX_PARTITIONS, PARTITION_TIMES, Target
from vmrules.targets.registry import TargetType

NAME_MAX = 255                  # bytes of a folder name (ext4, xfs, apfs, ntfs)


class Sink:
    """A Parquet file written row group by row group, so memory does not grow with the window."""

    def __init__(self, path: str, target: Target):
        self.path = path
        self.compression = _codec(target.options.get("compression", "snappy"))
        self.writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression=self.compression,
                                           **writer_options(table.schema))
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class DatasetError(VmrulesError):
    """Rows that a partitioned dataset cannot take."""


class DatasetSink(Sink):
    """A rule's part of a partitioned dataset: one Parquet file, and the partitions its rows fall into,
    counted as they come, so that more than MAX_PARTITIONS of them, or a value too long for a folder
    name, fails the rule before anything is written."""

    def __init__(self, path: str, target: Target):
        super().__init__(path, target)
        self.keys, self.time_column = target.partition_by, target.time_column
        self.seen: set[tuple[str | None, ...]] = set()

    def write(self, table: pa.Table) -> None:
        values = keyed(table, self.keys, self.time_column).select(list(self.keys))
        for found in values.group_by(list(self.keys)).aggregate([]).to_pylist():
            names = tuple(found[k] for k in self.keys)
            if names in self.seen:
                continue
            for key, value in zip(self.keys, names, strict=True):
                if value is not None and len(f"{key}={urllib.parse.quote(value, safe='')}".encode()) > NAME_MAX:
                    raise DatasetError(f"partition_by {key}: the value {value[:60]!r}... is too long for a "
                                       f"folder name ({NAME_MAX} bytes, URI-encoded)")
            self.seen.add(names)
        if len(self.seen) > MAX_PARTITIONS:
            raise DatasetError(f"the rows fall into more than {MAX_PARTITIONS} partitions of "
                               f"{', '.join(self.keys)}: partition by fewer or coarser keys")
        super().write(table)


def sink(path: str, target: Target) -> Sink:
    return DatasetSink(path, target) if target.partition_by else Sink(path, target)


def merge(parts: list[str], path: str, target: Target | None = None) -> None:
    """One Parquet file from the parts of several rules, row group by row group."""
    codec = _codec(target.options.get("compression", "snappy") if target else "snappy")
    writer: pq.ParquetWriter | None = None
    try:
        for part in parts:
            f = pq.ParquetFile(part)
            if writer is None:
                writer = pq.ParquetWriter(path, f.schema_arrow, compression=codec, **writer_options(f.schema_arrow))
            for i in range(f.num_row_groups):
                writer.write_table(f.read_row_group(i))
    finally:
        if writer is not None:
            writer.close()


def dataset(parts: list[str], folder: str, target: Target) -> list[str]:
    """The rows of the parts as a hive-partitioned dataset in the new `folder` (partition values URI-encoded,
    a missing one as __HIVE_DEFAULT_PARTITION__, as DuckDB, Spark and pyarrow read them); returns the
    files made, relative to `folder`. More than MAX_PARTITIONS partitions in one run are refused."""
    import pyarrow.dataset as ds

    files = [pq.ParquetFile(p) for p in parts if os.path.getsize(p)]
    if not files:
        return []
    keys = target.partition_by
    schema = files[0].schema_arrow

    def batches() -> Iterator[pa.RecordBatch]:
        for f in files:
            for i in range(f.num_row_groups):
                table = f.read_row_group(i)
                yield from keyed(table if table.schema == schema else table.cast(schema), keys,
                                 target.time_column).to_batches()

    out_schema = keyed(schema.empty_table(), keys, target.time_column).schema
    stored = pa.schema([f for f in out_schema if f.name not in keys])
    fmt = ds.ParquetFileFormat()
    options = fmt.make_write_options(compression=_codec(target.options.get("compression", "snappy")) or "none",
                                     **writer_options(stored))
    made: list[str] = []
    try:
        ds.write_dataset(pa.RecordBatchReader.from_batches(out_schema, batches()), folder, format=fmt,
                         file_options=options, basename_template="part-{i}.parquet",
                         partitioning=ds.partitioning(pa.schema([(k, pa.string()) for k in keys]), flavor="hive"),
                         max_partitions=MAX_PARTITIONS, existing_data_behavior="error",
                         file_visitor=lambda written: made.append(written.path))
    except pa.ArrowInvalid as exc:
        if "partitions" in str(exc):
            raise DatasetError(f"the rows of this run fall into more than {MAX_PARTITIONS} partitions of "
                               f"{', '.join(keys)}: partition by fewer or coarser keys") from None
        raise
    return sorted(os.path.relpath(p, folder) for p in made)


def keyed(table: pa.Table, keys: tuple[str, ...], time_column: str) -> pa.Table:
    """The table with a string column per partition key (replacing a column of that name): the date or
    hour of the time column, a column's text, or a label's value; empty is missing (null)."""
    for key in keys:
        if key == "hour":                            # 0..23, read back as a number
            values = pc.hour(table.column(time_column)).cast(pa.string())
        elif key in PARTITION_TIMES:
            values = pc.strftime(table.column(time_column), format=PARTITION_TIMES[key])
        elif key in table.column_names:
            values = table.column(key).cast(pa.string())
        else:
            values = _label(table.column("labels"), key)
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        if key in table.column_names:
            table = table.set_column(table.column_names.index(key), key, values)
        else:
            table = table.append_column(key, values)
    return table


def _label(labels: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """One label's value from the labels JSON, parsed once per distinct labels text."""
    chunks = []
    for chunk in labels.chunks:
        coded = chunk if pa.types.is_dictionary(chunk.type) else pc.dictionary_encode(chunk)
        values = pa.array([json.loads(text).get(name) if text else None for text in coded.dictionary.to_pylist()],
                          pa.string())
        chunks.append(values.take(coded.indices))
    return pa.chunked_array(chunks, pa.string())


def writer_options(schema: pa.Schema) -> dict[str, list[str]]:
    """Dictionaries for every column but floats (values seldom repeat); min/max statistics for the
    columns a reader filters on by range (timestamp, value, alert), none for the label strings.

    Measured on W1's 1.44 M rows: 0.18 s -> 0.09 s per file, the same size.
    """
    plain = {f.name for f in schema if pa.types.is_floating(f.type)}
    ranged = {f.name for f in schema if not (pa.types.is_string(f.type) or pa.types.is_dictionary(f.type))}
    return {"use_dictionary": [f.name for f in schema if f.name not in plain],
            "write_statistics": [f.name for f in schema if f.name in ranged]}


def _codec(name: str) -> str | None:
    return None if name == "none" else name


def write(table: pa.Table, path: str, target: Target) -> None:
    sink = Sink(path, target)
    sink.write(table)
    sink.close()


TYPE = TargetType("parquet", "file", write, description="Parquet file (a row group per batch) or partitioned dataset",
                  sink=sink, merge=merge, dataset=dataset)
