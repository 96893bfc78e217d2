"""A plain folder of videos: every video file below the root, recursively, is one whole-file item.

Layout read::

    <root>/<video>.mp4                      speaker id = the file stem
    <root>/<speaker>/.../<video>.mp4        speaker id = the first folder below the root

* Videos are recognised by extension (``.mp4 .mov .mkv .avi .webm .m4v .flv .mpg .mpeg .ts``, any case);
  hidden files and folders are left out.
* item id ``folder/<path relative to the root without its extension>`` (characters outside
  ``[A-Za-z0-9_.+=-/]`` become ``_``).
"""
from __future__ import annotations

import pyarrow.fs as pafs

from pipelines.sources.base import SourceItem
from pipelines.sources.common import basename_stem, layout_error, make_item_id, open_tree, split_ext

DATASET = "folder"
EXPECTED_LAYOUT = "video files (.mp4, .mov, .mkv, ...) anywhere below the root, optionally in one folder per speaker"


def speaker_of(rel: str) -> str:
    """The first folder of a relative path, or the file stem when the file is directly in the root."""
    return rel.split("/", 1)[0] if "/" in rel else basename_stem(rel)


def list_folder(root: str, filesystem: pafs.FileSystem | None = None) -> list[SourceItem]:
    """One :class:`SourceItem` per video file below ``root``."""
    tree = open_tree(root, filesystem)
    videos = tree.videos()
    if not videos:
        raise layout_error(tree, DATASET, EXPECTED_LAYOUT)
    return [SourceItem(item_id=make_item_id(DATASET, split_ext(rel)[0]), dataset=DATASET, uri=tree.uri(rel),
                       speaker_id=speaker_of(rel)) for rel in videos]
