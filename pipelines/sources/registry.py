"""The source adapters by name, and :func:`list_items`, the one entry point the curation pipeline calls.

Each adapter is ``list_<name>(root, filesystem=None) -> list[SourceItem]`` over a local path or a pyarrow
filesystem URI; its module docstring describes the layout it reads (facts from the shared ``DATASETS.md``).
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

import pyarrow.fs as pafs

from pipelines.sources.base import SourceItem, SourceLayoutError
from pipelines.sources.celebvhq import list_celebvhq
from pipelines.sources.folder import list_folder
from pipelines.sources.hdtf import list_hdtf
from pipelines.sources.vfhq import list_vfhq
from pipelines.sources.voxceleb2 import list_voxceleb2

SOURCES: dict[str, Callable[..., list[SourceItem]]] = {
    "voxceleb2": list_voxceleb2,
    "celebvhq": list_celebvhq,
    "vfhq": list_vfhq,
    "hdtf": list_hdtf,
    "folder": list_folder,
}


def list_items(source: str, root: str, filesystem: pafs.FileSystem | None = None) -> list[SourceItem]:
    """The items of corpus ``source`` below ``root``, sorted by ``item_id``.

    Raises :class:`SourceLayoutError` when ``source`` is not a known name, when the root does not have the
    corpus's layout or holds no video (the message says what was expected and what was found), and when
    two items get the same id (e.g. ``a.mp4`` and ``a.mov`` in one folder).
    """
    adapter = SOURCES.get(source)
    if adapter is None:
        raise SourceLayoutError(f"unknown source {source!r}; known sources: {', '.join(sorted(SOURCES))} "
                                "('folder' takes any folder of videos)")
    items = adapter(root, filesystem)
    if not items:
        raise SourceLayoutError(f"{source}: no video found in {root!r}")
    counts = Counter(item.item_id for item in items)
    duplicates = sorted(item_id for item_id, n in counts.items() if n > 1)
    if duplicates:
        uris = sorted(item.uri for item in items if item.item_id == duplicates[0])
        raise SourceLayoutError(f"{source}: {len(duplicates)} item ids occur more than once in {root!r}, e.g. "
                                f"{duplicates[0]!r} from {', '.join(uris)}; rename or remove one of each")
    return sorted(items, key=lambda item: item.item_id)
