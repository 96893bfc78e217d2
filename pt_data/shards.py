"""Clip shards on disk: an atomic writer, a validating reader, discovery and ``manifest.json``.

Paths may be local paths or URIs of any pyarrow filesystem (``s3://bucket/prefix``); pass
``filesystem=`` to use one you configured yourself.

* A shard is written under a hidden temporary name (``.NAME.tmp-XXXX``) in its final folder and renamed
  when complete, so an interrupted write never leaves a file that :func:`discover_shards` returns.
* Row groups are cut by size (``row_group_bytes``, default 64 MiB) because one row carries hundreds of
  JPEG frames; the binary columns are stored without dictionary encoding or compression.
* The reader checks the schema name and version in the file's metadata and the required columns.
"""
from __future__ import annotations

import json
import os
import posixpath
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pt_data.clip import Clip
from pt_data.shard_schema import (
    BINARY_COLUMNS,
    REQUIRED_COLUMNS,
    SCHEMA_NAME,
    SCHEMA_NAME_KEY,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    clip_schema,
)

MANIFEST_NAME = "manifest.json"
SHARD_SUFFIX = ".parquet"
#: Shard versions this reader understands (add older versions here with an upgrade path).
READABLE_VERSIONS = (1,)


class ShardError(Exception):
    """A shard file cannot be used: unreadable, truncated, or not a clip shard."""


class ShardSchemaError(ShardError):
    """A shard of another schema version, or with missing / mistyped columns."""


def resolve_filesystem(path: str, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path inside it)`` for a local path or a pyarrow-filesystem URI."""
    if filesystem is not None:
        return filesystem, path
    if "://" in str(path):
        return pafs.FileSystem.from_uri(str(path))
    return pafs.LocalFileSystem(), os.path.abspath(os.fspath(path))


# ----------------------------------------------------------------------------------------------- writer
@dataclass
class ShardWriterConfig:
    """How shards are laid out: row-group size by bytes (and a row cap), compression of small columns."""

    row_group_bytes: int = 64 * 2**20
    max_rows_per_group: int = 256
    compression: str = "zstd"


@dataclass
class ShardInfo:
    """What one finished shard holds."""

    path: str
    num_clips: int
    num_frames: int
    num_bytes: int
    clip_ids: list[str] = field(default_factory=list, repr=False)


class ShardWriter:
    """Writes clips into one Parquet shard; the file appears under its final name only on :meth:`close`.

    Use as a context manager: on an exception the temporary file is removed and nothing is published.
    """

    def __init__(self, path: str, *, filesystem: pafs.FileSystem | None = None,
                 config: ShardWriterConfig | None = None, metadata: Mapping[str, str] | None = None) -> None:
        self.fs, self.path = resolve_filesystem(path, filesystem)
        if not self.path.endswith(SHARD_SUFFIX):
            raise ValueError(f"shard path {path!r} must end with {SHARD_SUFFIX}")
        self.config = config or ShardWriterConfig()
        self.schema = clip_schema()
        if metadata:  # extra key-value metadata (e.g. the curation bookkeeping); cannot replace pt.* keys
            extra = {k.encode(): v.encode() for k, v in metadata.items()}
            self.schema = self.schema.with_metadata({**extra, **self.schema.metadata})
        parent, name = posixpath.split(self.path.replace(os.sep, "/"))
        self.fs.create_dir(parent, recursive=True)
        self.tmp_path = posixpath.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
        compression = {f.name: ("none" if f.name in BINARY_COLUMNS else self.config.compression)
                       for f in self.schema}
        self._sink = self.fs.open_output_stream(self.tmp_path)
        self._writer = pq.ParquetWriter(
            self._sink, self.schema, compression=compression,
            use_dictionary=[f.name for f in self.schema if f.name not in BINARY_COLUMNS],
            write_statistics=["clip_id", "num_frames", "start_s", "end_s"],
        )
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._info = ShardInfo(self.path, 0, 0, 0)
        self._closed = False

    def write(self, clip: Clip | Mapping[str, Any]) -> None:
        """Append one clip (a :class:`Clip`, or a row dict in the shard's column layout)."""
        if self._closed:
            raise ShardError(f"{self.path}: writer already closed")
        row = clip.to_row() if isinstance(clip, Clip) else dict(clip)
        size = sum(len(b) for b in row["frames"]) + len(row["audio_pcm16"])
        self._pending.append(row)
        self._pending_bytes += size
        self._info.num_clips += 1
        self._info.num_frames += int(row["num_frames"])
        self._info.clip_ids.append(row["clip_id"])
        if (self._pending_bytes >= self.config.row_group_bytes
                or len(self._pending) >= self.config.max_rows_per_group):
            self._flush()

    def write_all(self, clips: Iterable[Clip | Mapping[str, Any]]) -> None:
        for c in clips:
            self.write(c)

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_pylist(self._pending, schema=self.schema)
        self._writer.write_table(table, row_group_size=len(self._pending))
        self._pending, self._pending_bytes = [], 0

    def close(self) -> ShardInfo:
        """Flush, close and rename the temporary file to its final name; return what it holds."""
        if self._closed:
            return self._info
        try:
            self._flush()
            self._writer.close()
            self._sink.close()
            self.fs.move(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._info.num_bytes = self.fs.get_file_info(self.path).size
        return self._info

    def abort(self) -> None:
        """Drop everything written so far; the final path is never created."""
        self._closed = True
        for closer in (self._writer.close, self._sink.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - best effort while discarding a partial file
                pass
        if self.fs.get_file_info(self.tmp_path).type != pafs.FileType.NotFound:
            self.fs.delete_file(self.tmp_path)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_shard(path: str, clips: Iterable[Clip | Mapping[str, Any]], *,
                filesystem: pafs.FileSystem | None = None, config: ShardWriterConfig | None = None,
                metadata: Mapping[str, str] | None = None) -> ShardInfo:
    """Write ``clips`` to one shard atomically and return its :class:`ShardInfo`."""
    with ShardWriter(path, filesystem=filesystem, config=config, metadata=metadata) as w:
        w.write_all(clips)
    return w.close()


# ----------------------------------------------------------------------------------------------- reader
def check_shard_schema(schema: pa.Schema, path: str) -> int:
    """Validate a shard's schema; return its version or raise :class:`ShardSchemaError` naming ``path``."""
    meta = schema.metadata or {}
    if meta.get(SCHEMA_NAME_KEY) != SCHEMA_NAME or SCHEMA_VERSION_KEY not in meta:
        raise ShardSchemaError(
            f"{path}: not a PersonaTalk clip shard (no '{SCHEMA_VERSION_KEY.decode()}' in its Parquet metadata); "
            "clip shards are written by `pt curate` or pt_data.shards.ShardWriter")
    raw = meta[SCHEMA_VERSION_KEY].decode()
    version = int(raw) if raw.isdigit() else -1
    if version not in READABLE_VERSIONS:
        raise ShardSchemaError(
            f"{path}: clip schema version {raw}, but this toolkit reads version(s) "
            f"{', '.join(map(str, READABLE_VERSIONS))} (current {SCHEMA_VERSION}); "
            "use the toolkit version that wrote it, or re-run `pt curate` to rewrite the shards")
    want = clip_schema(version)
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise ShardSchemaError(f"{path}: schema v{version} shard lacks required columns {missing}")
    wrong = [f"{f.name}: {schema.field(f.name).type} (want {f.type})" for f in want
             if f.name in schema.names and not schema.field(f.name).type.equals(f.type)]
    if wrong:
        raise ShardSchemaError(f"{path}: columns of the wrong type: {'; '.join(wrong)}")
    return version


def open_shard(path: str, *, filesystem: pafs.FileSystem | None = None) -> pq.ParquetFile:
    """Open and validate one shard; corrupt, truncated or foreign files raise :class:`ShardError`."""
    fs, p = resolve_filesystem(path, filesystem)
    try:
        pf = pq.ParquetFile(fs.open_input_file(p))
    except FileNotFoundError:
        raise ShardError(f"{path}: no such shard") from None
    except (pa.ArrowException, OSError) as e:
        raise ShardError(f"{path}: not a readable Parquet file (truncated or corrupted?): {e}. "
                         "Delete it and re-run the job that wrote it.") from e
    check_shard_schema(pf.schema_arrow, path)
    return pf


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows of a shard table as dicts; float list columns become flat float32 numpy arrays (fast)."""
    cols: dict[str, list[Any]] = {}
    n = table.num_rows
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        typ = col.type
        if pa.types.is_list(typ) and pa.types.is_floating(typ.value_type):
            offsets = col.offsets.to_numpy()
            values = col.values.to_numpy(zero_copy_only=False)
            valid = col.is_valid().to_numpy(zero_copy_only=False)
            cols[name] = [np.array(values[offsets[i]:offsets[i + 1]], dtype=np.float32) if valid[i] else None
                          for i in range(n)]
        else:
            cols[name] = col.to_pylist()
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


def iter_clip_rows(path: str, *, columns: Sequence[str] | None = None, row_groups: Sequence[int] | None = None,
                   filesystem: pafs.FileSystem | None = None) -> Iterator[dict[str, Any]]:
    """Yield the rows of one shard (optionally some columns / row groups) as dicts, validated first."""
    pf = open_shard(path, filesystem=filesystem)
    groups = range(pf.num_row_groups) if row_groups is None else row_groups
    for g in groups:
        try:
            table = pf.read_row_group(g, columns=list(columns) if columns else None)
        except (pa.ArrowException, OSError) as e:
            raise ShardError(f"{path}: row group {g} cannot be read (corrupted?): {e}") from e
        yield from table_rows(table)


def iter_clips(path: str, *, filesystem: pafs.FileSystem | None = None) -> Iterator[Clip]:
    """Yield every clip of one shard as a :class:`Clip`."""
    for row in iter_clip_rows(path, filesystem=filesystem):
        yield Clip.from_row(row)


def read_shard(path: str, *, columns: Sequence[str] | None = None,
               filesystem: pafs.FileSystem | None = None) -> pa.Table:
    """The whole shard (or some columns) as an Arrow table, after validation."""
    pf = open_shard(path, filesystem=filesystem)
    try:
        return pf.read(columns=list(columns) if columns else None)
    except (pa.ArrowException, OSError) as e:
        raise ShardError(f"{path}: cannot be read (corrupted?): {e}") from e


def is_shard_name(name: str) -> bool:
    """Finished shard file names: ``*.parquet``, not hidden (temporaries), not a rejects table."""
    return name.endswith(SHARD_SUFFIX) and not name.startswith(".") and not name.startswith("rejects")


def discover_shards(root: str, *, filesystem: pafs.FileSystem | None = None) -> list[str]:
    """Sorted paths of the finished shards under ``root`` (recursively); temporaries are never listed."""
    fs, p = resolve_filesystem(root, filesystem)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        raise ShardError(f"{root}: no such folder of shards")
    if info.type == pafs.FileType.File:
        return [p]
    entries = fs.get_file_info(pafs.FileSelector(p, recursive=True))
    return sorted(e.path for e in entries
                  if e.type == pafs.FileType.File and is_shard_name(e.base_name)
                  and not any(part.startswith(".") for part in e.path[len(p):].split("/")[:-1]))


# --------------------------------------------------------------------------------------------- manifest
def write_table_atomic(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """Write a small Parquet table under a temporary name and rename it (never seen half-written)."""
    parent, name = posixpath.split(path)
    fs.create_dir(parent, recursive=True)
    tmp = posixpath.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with fs.open_output_stream(tmp) as f:
            pq.write_table(table, f, compression="zstd")
        fs.move(tmp, path)
    except BaseException:
        if fs.get_file_info(tmp).type != pafs.FileType.NotFound:
            fs.delete_file(tmp)
        raise


def write_text_atomic(fs: pafs.FileSystem, path: str, text: str) -> None:
    """Write a text file under a temporary name and rename it."""
    parent, name = posixpath.split(path)
    fs.create_dir(parent, recursive=True)
    tmp = posixpath.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    with fs.open_output_stream(tmp) as f:
        f.write(text.encode())
    fs.move(tmp, path)


def write_manifest(root: str, manifest: Mapping[str, Any], *, filesystem: pafs.FileSystem | None = None) -> str:
    """Write ``manifest.json`` under ``root`` atomically; the schema version is always recorded."""
    fs, p = resolve_filesystem(root, filesystem)
    data = {"schema": SCHEMA_NAME.decode(), "schema_version": SCHEMA_VERSION, **manifest}
    path = posixpath.join(p, MANIFEST_NAME)
    write_text_atomic(fs, path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def read_manifest(root: str, *, filesystem: pafs.FileSystem | None = None) -> dict[str, Any]:
    """Read and check ``manifest.json`` of a shard folder."""
    fs, p = resolve_filesystem(root, filesystem)
    path = posixpath.join(p, MANIFEST_NAME)
    try:
        with fs.open_input_stream(path) as f:
            data = json.loads(f.read().decode())
    except FileNotFoundError:
        raise ShardError(f"{path}: no manifest; is {root} a folder written by `pt curate`?") from None
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: not valid JSON ({e})") from e
    v = data.get("schema_version")
    if v not in READABLE_VERSIONS:
        raise ShardSchemaError(f"{path}: schema version {v}, this toolkit reads {list(READABLE_VERSIONS)}")
    return data


def shard_manifest_entry(info: ShardInfo, root: str) -> dict[str, Any]:
    """The manifest record of one shard, with its path relative to ``root``."""
    d = asdict(info)
    d.pop("clip_ids")
    rel = info.path.replace(os.sep, "/")
    base = resolve_filesystem(root)[1].replace(os.sep, "/").rstrip("/") + "/"
    d["path"] = rel[len(base):] if rel.startswith(base) else rel
    return d


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
