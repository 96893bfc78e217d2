"""VFHQ (Xie et al. 2022): one item per clip meta file that has a video.

Layout read (DATASETS.md section 3)::

    <root>/**/Clip+<ytid>+P<pid>+C<idx>+F<start>-<end>.txt    meta_info (e.g. meta_info/VFHQ-Train/, VFHQ-Test/)
    <root>/**/<clip stem>.mp4                                  a clip video (already cropped): the whole file
    <root>/**/<ytid>.mp4                                       or the raw YouTube video: a window of it

* The clip stem splits on ``+`` into ``Clip``, the YouTube id (which may hold ``_``/``-``, never ``+``),
  ``P<person>``, ``C<clip>``, ``F<start>-<end>`` (frame numbers of the source video).
* The meta txt holds ``Video``, ``H``, ``W``, ``FPS`` lines, a header, frame rows
  ``<frame> <index> <x0> <y0> <w> <h> [5 landmarks]`` and a last ``CROP_BBOX x0 y0 x1 y1`` line (source pixels).
  Values are read from the last token(s) of a line, as the official-style scripts do.
* Raw video window: the official extraction keeps frames ``start+1 .. end-1``, so ``start_s = (start+1)/FPS``,
  ``end_s = (end-1)/FPS``; ``box`` = CROP_BBOX divided by (W, H).
* item id ``vfhq/<clip stem>``; speaker id ``<ytid>+P<pid>`` (no identity across videos is published).
* Meta files without a video, or that cannot be parsed, are skipped (one warning with the counts).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from pipelines.sources.base import SourceItem
from pipelines.sources.common import (SourceTree, Skipped, basename_stem, clamp_box, layout_error, make_item_id,
                                      open_tree, split_ext)

logger = logging.getLogger(__name__)

DATASET = "vfhq"
EXPECTED_LAYOUT = ("meta files Clip+<ytid>+P<pid>+C<idx>+F<start>-<end>.txt anywhere below the root "
                   "(e.g. meta_info/VFHQ-Train/) and, for each, a clip video <clip stem>.mp4 or the raw video <ytid>.mp4")

_CLIP_STEM = re.compile(r"^Clip\+(?P<yt>[^+]+)\+P(?P<pid>\d+)\+C(?P<clip>\d+)\+F(?P<start>\d+)-(?P<end>\d+)$")
_SPLIT_DIRS = {"vfhq-train": "train", "vfhq-test": "test"}


@dataclass(frozen=True)
class VfhqClipName:
    """The parts of a VFHQ clip stem ``Clip+<ytid>+P<pid>+C<idx>+F<start>-<end>``."""

    stem: str
    video_id: str
    person: int
    clip: int
    start_frame: int
    end_frame: int

    @property
    def speaker_id(self) -> str:
        """``<ytid>+P<pid>``: the person key within one video."""
        return f"{self.video_id}+P{self.person}"


def parse_vfhq_clip_name(stem: str) -> VfhqClipName | None:
    """The parts of a clip stem, or ``None`` when ``stem`` is not a VFHQ clip name."""
    match = _CLIP_STEM.match(stem)
    if match is None:
        return None
    return VfhqClipName(stem=stem, video_id=match["yt"], person=int(match["pid"]), clip=int(match["clip"]),
                        start_frame=int(match["start"]), end_frame=int(match["end"]))


def _key_and_values(line: str) -> tuple[str, list[str]]:
    """``("KEY", [values])`` of a ``KEY<sep>values`` line, where ``<sep>`` is whitespace and/or ``:``."""
    head, *rest = line.split()
    if ":" in head:
        head, _, glued = head.partition(":")
        rest = ([glued] if glued else []) + rest
    return head.upper(), [token for token in rest if token != ":"]


def parse_vfhq_meta(text: str) -> dict[str, Any]:
    """The content of a VFHQ clip meta txt.

    Returns ``video_id`` (str), ``height``, ``width`` (int, source pixels), ``fps`` (float), ``crop_box``
    (``(x0, y0, x1, y1)`` ints, source pixels) and ``frames``: one dict per frame row with ``frame``,
    ``index`` (ints), ``box`` (``(x0, y0, w, h)``) and ``landmarks`` (5 ``(x, y)`` pairs, or ``None`` when
    the row has no landmark columns). Raises ``ValueError`` when H, W, FPS or CROP_BBOX is missing or malformed.
    """
    out: dict[str, Any] = {"frames": []}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, values = _key_and_values(line)
        if key.isdigit():
            numbers = [float(v) for v in values]
            if len(numbers) < 5:
                raise ValueError(f"VFHQ meta: frame row with {len(numbers) + 1} columns: {line!r}")
            landmarks = [(numbers[i], numbers[i + 1]) for i in range(5, 15, 2)] if len(numbers) >= 15 else None
            out["frames"].append({"frame": int(key), "index": int(numbers[0]), "box": tuple(numbers[1:5]),
                                  "landmarks": landmarks})
        elif key == "VIDEO" and values:
            out["video_id"] = values[-1]
        elif key in ("H", "W") and values:
            out["height" if key == "H" else "width"] = int(float(values[-1]))
        elif key == "FPS" and values:
            out["fps"] = float(values[-1])
        elif key.startswith("CROP") and len(values) >= 4:
            out["crop_box"] = tuple(int(float(v)) for v in values[-4:])
    missing = [name for name in ("height", "width", "fps", "crop_box") if name not in out]
    if missing:
        raise ValueError(f"VFHQ meta: missing {', '.join(missing)}")
    if out["height"] <= 0 or out["width"] <= 0 or out["fps"] <= 0:
        raise ValueError(f"VFHQ meta: non-positive H/W/FPS {out['height']}/{out['width']}/{out['fps']}")
    return out


def _split_of(rel: str) -> str | None:
    """``train``/``test`` when a folder of ``rel`` is ``VFHQ-Train``/``VFHQ-Test``."""
    for part in rel.split("/")[:-1]:
        if part.lower() in _SPLIT_DIRS:
            return _SPLIT_DIRS[part.lower()]
    return None


def _item(tree: SourceTree, name: VfhqClipName, meta_rel: str, parsed: dict[str, Any],
          videos: dict[str, str]) -> SourceItem | None:
    """The item of one clip: its clip video, else a window of the raw video, else ``None``."""
    x0, y0, x1, y1 = parsed["crop_box"]
    meta = {"video_id": name.video_id, "person": name.person, "clip": name.clip, "start_frame": name.start_frame,
            "end_frame": name.end_frame, "fps": parsed["fps"], "source_height": parsed["height"],
            "source_width": parsed["width"], "crop_box_px": [x0, y0, x1, y1], "num_frame_rows": len(parsed["frames"])}
    split = _split_of(meta_rel)
    if split:
        meta["split"] = split
    common = dict(item_id=make_item_id(DATASET, name.stem), dataset=DATASET, speaker_id=name.speaker_id, meta=meta)
    if name.stem in videos:
        return SourceItem(uri=tree.uri(videos[name.stem]), **common)
    if name.video_id in videos:
        w, h, fps = parsed["width"], parsed["height"], parsed["fps"]
        return SourceItem(uri=tree.uri(videos[name.video_id]), start_s=(name.start_frame + 1) / fps,
                          end_s=(name.end_frame - 1) / fps, box=clamp_box((x0 / w, y0 / h, x1 / w, y1 / h)), **common)
    return None


def list_vfhq(root: str, filesystem: pafs.FileSystem | None = None) -> list[SourceItem]:
    """One :class:`SourceItem` per VFHQ clip meta file below ``root`` that has a clip or raw video."""
    tree = open_tree(root, filesystem)
    metas = {}
    for rel in tree.files:
        if split_ext(rel)[1] == ".txt" and (name := parse_vfhq_clip_name(basename_stem(rel))) is not None:
            metas[rel] = name
    if not metas:
        raise layout_error(tree, DATASET, EXPECTED_LAYOUT, reason="no clip meta file")
    videos = tree.videos_by_stem()
    wanted = {rel: name for rel, name in metas.items() if name.stem in videos or name.video_id in videos}
    texts = tree.read_texts(wanted)
    items, skipped = [], Skipped()
    for rel, name in metas.items():
        if rel not in wanted:
            skipped.add("meta files with neither a clip video nor the raw video", rel)
            continue
        try:
            parsed = parse_vfhq_meta(texts[rel])
        except ValueError as exc:
            skipped.add("unreadable meta files", f"{rel}: {exc}")
            continue
        items.append(_item(tree, name, rel, parsed, videos))
    skipped.warn(logger, DATASET)
    if not items:
        raise layout_error(tree, DATASET, EXPECTED_LAYOUT,
                           reason=f"none of the {len(metas)} clip meta files has a usable video")
    return items
