"""Helpers shared by the source adapters: one listing of a corpus tree, text reading, id sanitising.

A corpus root may be a local path or a URI of any pyarrow filesystem (``s3://bucket/vox2``,
``file:///data/hdtf``); :func:`open_tree` lists every non-hidden file below it once, and the adapters match
paths relative to the root against their layout. Small metadata files are read through the same
filesystem (``utf-8-sig``, so a BOM is dropped; CRLF is turned into LF).
"""
from __future__ import annotations

import logging
import posixpath
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable

import pyarrow.fs as pafs

from pipelines.sources.base import SourceLayoutError
from pt_data.shards import resolve_filesystem

#: Extensions (lower case, with the dot) of the files treated as videos.
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".ts"})

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.+=\-/]")
#: Threads used to read many small metadata files (I/O bound; object stores reward concurrency).
_READ_THREADS = 16
#: URI schemes of pyarrow filesystem types (``FileSystem.type_name``) that a uri can name.
_STORE_SCHEMES = {"s3": "s3://", "gcs": "gs://", "hdfs": "hdfs://", "abfs": "abfs://"}


def sanitize_id(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9_.+=-/]`` replaced by ``_``."""
    return _UNSAFE_ID_CHARS.sub("_", text)


def make_item_id(dataset: str, key: str) -> str:
    """The item id ``<dataset>/<key>``, sanitised."""
    return sanitize_id(f"{dataset}/{key}")


def split_ext(rel: str) -> tuple[str, str]:
    """``(path without extension, lower-case extension)`` of a relative path."""
    stem, ext = posixpath.splitext(rel)
    return stem, ext.lower()


def is_video(rel: str) -> bool:
    """Whether a path names a video file (by its extension, case-insensitive)."""
    return split_ext(rel)[1] in VIDEO_EXTENSIONS


def basename_stem(rel: str) -> str:
    """The file name of ``rel`` without its extension."""
    return posixpath.splitext(posixpath.basename(rel))[0]


def decode_text(data: bytes) -> str:
    """Bytes of a metadata file as text: UTF-8 with an optional BOM, line ends normalised to ``\\n``."""
    return data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")


def clamp_box(box: Iterable[float]) -> tuple[float, float, float, float]:
    """A normalised ``(x0, y0, x1, y1)`` box clamped to [0, 1]."""
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in box)
    return (x0, y0, x1, y1)


def _is_hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _uri_prefix(root: str, fs: pafs.FileSystem, explicit_fs: bool) -> str:
    """What is put before a path inside ``fs`` to make an item's uri.

    The URI's scheme for a URI root; '' for a local root; for a filesystem passed in, the scheme of the
    object stores pyarrow knows, else '' (the uri is then the path inside that filesystem).
    """
    if "://" in root:
        return root.split("://", 1)[0] + "://"
    if explicit_fs:
        return _STORE_SCHEMES.get(fs.type_name, "")
    return ""


@dataclass(frozen=True)
class SourceTree:
    """The files below a corpus root, listed once: relative POSIX paths, hidden files and folders left out."""

    root: str
    """The root as the user gave it (for messages)."""
    fs: pafs.FileSystem
    fs_root: str
    """The root's path inside ``fs``, without a trailing slash."""
    uri_prefix: str
    files: tuple[str, ...]
    """Paths relative to the root, sorted."""

    def path(self, rel: str) -> str:
        """The path of ``rel`` inside the filesystem."""
        return posixpath.join(self.fs_root, rel) if self.fs_root else rel

    def uri(self, rel: str) -> str:
        """What an item's ``uri`` is for ``rel``: a local absolute path, or ``scheme://`` + the path in the filesystem."""
        return self.uri_prefix + self.path(rel)

    def videos(self) -> list[str]:
        """Relative paths of the video files, sorted."""
        return [rel for rel in self.files if is_video(rel)]

    def videos_by_stem(self) -> dict[str, str]:
        """``{file stem: relative path}`` of the videos (the first in path order when a stem repeats)."""
        out: dict[str, str] = {}
        for rel in self.videos():
            out.setdefault(basename_stem(rel), rel)
        return out

    def read_text(self, rel: str) -> str:
        """The text of a small metadata file (see :func:`decode_text`)."""
        with self.fs.open_input_stream(self.path(rel)) as stream:
            return decode_text(stream.read())

    def read_texts(self, rels: Iterable[str]) -> dict[str, str]:
        """The texts of many small files, read concurrently; ``{rel: text}``."""
        rels = list(rels)
        with ThreadPoolExecutor(max_workers=min(_READ_THREADS, max(1, len(rels)))) as pool:
            return dict(zip(rels, pool.map(self.read_text, rels)))

    def find_named(self, names: Iterable[str]) -> dict[str, list[str]]:
        """``{file name: [relative paths, shallowest first]}`` for the files whose base name is in ``names``."""
        wanted = set(names)
        found: dict[str, list[str]] = {}
        for rel in self.files:
            name = posixpath.basename(rel)
            if name in wanted:
                found.setdefault(name, []).append(rel)
        return {name: sorted(rels, key=lambda r: (r.count("/"), r)) for name, rels in found.items()}

    def describe(self, max_entries: int = 8) -> str:
        """A short account of what is under the root (for layout errors)."""
        if not self.files:
            return f"found no (non-hidden) files under {self.root!r}"
        top = sorted({rel.split("/", 1)[0] + ("/" if "/" in rel else "") for rel in self.files})
        exts = Counter(split_ext(rel)[1] or "(none)" for rel in self.files)
        videos = self.videos()
        parts = [
            f"found {len(self.files)} files under {self.root!r} ({len(videos)} videos)",
            "top-level entries: " + ", ".join(top[:max_entries]) + (", ..." if len(top) > max_entries else ""),
            "extensions: " + ", ".join(f"{ext} x{n}" for ext, n in exts.most_common(max_entries)),
        ]
        if videos:
            parts.append("e.g. " + ", ".join(videos[:3]))
        return "; ".join(parts)


def open_tree(root: str, filesystem: pafs.FileSystem | None = None) -> SourceTree:
    """List every non-hidden file below ``root`` (a local path or a URI; see :func:`resolve_filesystem`).

    Raises :class:`SourceLayoutError` when the root does not exist or is not a folder.
    """
    fs, fs_root = resolve_filesystem(str(root), filesystem)
    fs_root = fs_root.rstrip("/") or fs_root
    info = fs.get_file_info(fs_root)
    if info.type == pafs.FileType.NotFound:
        raise SourceLayoutError(f"source root {root!r} does not exist")
    if info.type != pafs.FileType.Directory:
        raise SourceLayoutError(f"source root {root!r} is not a folder (give the folder that holds the corpus)")
    prefix = fs_root.strip("/") + "/" if fs_root.strip("/") else ""
    files = []
    for entry in fs.get_file_info(pafs.FileSelector(fs_root, recursive=True)):
        path = entry.path.lstrip("/")
        if entry.type != pafs.FileType.File or not path.startswith(prefix):
            continue
        rel = path[len(prefix):]
        if rel and not _is_hidden(rel):
            files.append(rel)
    return SourceTree(root=str(root), fs=fs, fs_root=fs_root, uri_prefix=_uri_prefix(str(root), fs, filesystem is not None),
                      files=tuple(sorted(files)))


def layout_error(tree: SourceTree, dataset: str, expected: str, reason: str = "no video found") -> SourceLayoutError:
    """A :class:`SourceLayoutError` saying what layout ``dataset`` expects and what the tree holds."""
    return SourceLayoutError(f"{dataset}: {reason} in {tree.root!r}. Expected layout: {expected}. Instead, {tree.describe()}.")


@dataclass
class Skipped:
    """Entries an adapter passed over (or treated specially), counted by reason with one example each,
    reported in one warning."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        """Count one entry skipped for ``reason``."""
        self.counts[reason] += 1
        self.examples.setdefault(reason, example)

    def warn(self, logger: logging.Logger, dataset: str, verb: str = "skipped") -> None:
        """Log one warning ``<dataset>: <verb> <counts by reason>`` (nothing when nothing was counted)."""
        if self.counts:
            logger.warning("%s: %s %s", dataset, verb, "; ".join(
                f"{n} {reason} (e.g. {self.examples[reason]})" for reason, n in sorted(self.counts.items())))
