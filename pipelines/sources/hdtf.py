"""HDTF (Zhang et al. 2021): one item per annotated clip of a video.

Layouts read (DATASETS.md section 4), any mix of them below the root::

    <root>/**/<RD|WDA|WRA>_<Name>_<NNN>.mp4        clips as universome/HDTF's download.py names them
    <root>/**/<folder naming the subset>/<Name>_<i>.mp4   clips named as the official README says (e.g. WDA/)
    <root>/**/<SUBSET>_<Name>.mp4  or  <folder naming the subset>/<Name>.mp4   raw downloads, cut by
    <root>/**/<SUBSET>_annotion_time.txt           (sic) + optional _crop_wh, _crop_ratio, _resolution, _video_url

* ``<SUBSET>_annotion_time.txt`` lines are ``<Name>.mp4 MM:SS-MM:SS ...``; interval ``i`` is clip ``i``.
  A raw video gives one item per interval (``start_s``/``end_s``), id ``hdtf/<SUBSET>_<Name>_<i:03d>``, the same
  id as universome's clip file of that interval (a clip file present in the tree wins over the raw window).
  A raw video without intervals (``Radio24`` has none) is one whole-file item ``hdtf/<SUBSET>_<Name>``.
* ``_crop_wh`` gives ``x w y h`` in pixels at the ``_resolution`` height; the downloaded file may have another
  size, so it is kept as meta (``crop_xywh``, ``resolution``), never as ``box``. Some clips have no crop.
* Quirks handled: ``WDA_video_url.txt`` starts with a BOM, some files lack a final newline, some lines end
  in a space; a resolution of ``0`` (``KevinMcCarthy1``) is not kept.
* The subset of an official clip or raw ``<Name>.mp4`` comes from the nearest folder whose name has the token
  ``RD``/``WDA``/``WRA``, else from the annotation files that list the name (names are unique across subsets).
* speaker id: ``<SUBSET>_<Name without trailing digits>`` (``WDA_BarackObama``); RD videos keep the full name
  (``RD_Radio11``) because who speaks in which radio video is unknown.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from pipelines.sources.base import SourceItem, SourceLayoutError
from pipelines.sources.common import SourceTree, Skipped, basename_stem, layout_error, make_item_id, open_tree

logger = logging.getLogger(__name__)

DATASET = "hdtf"
SUBSETS = ("RD", "WDA", "WRA")
EXPECTED_LAYOUT = ("clip files <RD|WDA|WRA>_<Name>_<NNN>.mp4, or <Name>_<i>.mp4 inside a folder named after the "
                   "subset (RD/, WDA/, WRA/), or raw videos <SUBSET>_<Name>.mp4 / <subset folder>/<Name>.mp4 with "
                   "the annotation files <SUBSET>_annotion_time.txt anywhere below the root")

_SUBSET_RE = "|".join(SUBSETS)
_UNIVERSOME_CLIP = re.compile(rf"^(?P<subset>{_SUBSET_RE})_(?P<name>[^_]+)_(?P<idx>\d+)$")
_PREFIXED_RAW = re.compile(rf"^(?P<subset>{_SUBSET_RE})_(?P<name>[^_]+)$")
_OFFICIAL_CLIP = re.compile(r"^(?P<name>[^_]+)_(?P<idx>\d+)$")
_BARE_RAW = re.compile(r"^(?P<name>[^_]+)$")
_SUBSET_IN_FOLDER = re.compile(rf"(?:^|[^A-Za-z])({_SUBSET_RE})(?:$|[^A-Za-z])")


# ------------------------------------------------------------------------------------------ pure parsers
def _rows(text: str) -> list[tuple[str, list[str]]]:
    """``(key, other tokens)`` per non-blank line; a BOM is dropped, whitespace of any kind separates."""
    rows = []
    for line in text.lstrip("\ufeff").splitlines():
        tokens = line.split()
        if tokens:
            rows.append((tokens[0], tokens[1:]))
    return rows


def _video_key(token: str) -> str:
    """``Radio11.mp4`` -> ``Radio11``."""
    return token[:-4] if token.lower().endswith(".mp4") else token


def _clip_key(token: str) -> tuple[str, int]:
    """``Radio11_1.mp4`` -> ``("Radio11", 1)``."""
    name, _, idx = _video_key(token).rpartition("_")
    if not name or not idx.isdigit():
        raise ValueError(f"HDTF: {token!r} is not <name>_<clip index>.mp4")
    return name, int(idx)


def _seconds(stamp: str) -> float:
    """``MM:SS`` (or ``H:MM:SS``) -> seconds."""
    seconds = 0.0
    for part in stamp.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def parse_hdtf_intervals(text: str) -> dict[str, list[tuple[float, float]]]:
    """``{video name: [(start_s, end_s), ...]}`` from an ``xx_annotion_time.txt``; clip ``i`` is interval ``i``."""
    out = {}
    for key, tokens in _rows(text):
        intervals = []
        for token in tokens:
            start, sep, end = token.partition("-")
            if not sep:
                raise ValueError(f"HDTF: interval {token!r} of {key} is not MM:SS-MM:SS")
            intervals.append((_seconds(start), _seconds(end)))
        out[_video_key(key)] = intervals
    return out


def parse_hdtf_crop_wh(text: str) -> dict[tuple[str, int], tuple[int, int, int, int]]:
    """``{(video name, clip index): (x, w, y, h)}`` (pixels at the video's resolution) from an ``xx_crop_wh.txt``."""
    return {_clip_key(key): tuple(int(v) for v in tokens[:4]) for key, tokens in _rows(text)}


def parse_hdtf_crop_ratio(text: str) -> dict[tuple[str, int], float]:
    """``{(video name, clip index): zoom scale}`` from an ``xx_crop_ratio.txt``."""
    return {_clip_key(key): float(tokens[0]) for key, tokens in _rows(text)}


def parse_hdtf_resolution(text: str) -> dict[str, int]:
    """``{video name: download height}`` from an ``xx_resolution.txt``."""
    return {_video_key(key): int(tokens[0]) for key, tokens in _rows(text)}


def parse_hdtf_urls(text: str) -> dict[str, str]:
    """``{video name: YouTube URL}`` from an ``xx_video_url.txt``."""
    return {_video_key(key): tokens[0] for key, tokens in _rows(text)}


# file kind -> parser; the time file is spelled "annotion" (sic) in the release, "annotation" also accepted
_PARSERS = {"annotion_time": parse_hdtf_intervals, "annotation_time": parse_hdtf_intervals,
            "crop_wh": parse_hdtf_crop_wh, "crop_ratio": parse_hdtf_crop_ratio,
            "resolution": parse_hdtf_resolution, "video_url": parse_hdtf_urls}
_FIELDS = {"annotion_time": "intervals", "annotation_time": "intervals", "crop_wh": "crop_wh",
           "crop_ratio": "crop_ratio", "resolution": "resolution", "video_url": "video_url"}


@dataclass
class HdtfAnnotations:
    """What the five annotation files of one subset say (empty where a file is absent)."""

    intervals: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    crop_wh: dict[tuple[str, int], tuple[int, int, int, int]] = field(default_factory=dict)
    crop_ratio: dict[tuple[str, int], float] = field(default_factory=dict)
    resolution: dict[str, int] = field(default_factory=dict)
    video_url: dict[str, str] = field(default_factory=dict)

    def names(self) -> set[str]:
        """Every video name any of the files mentions."""
        return set(self.intervals) | set(self.resolution) | set(self.video_url) | {n for n, _ in self.crop_wh}

    def video_meta(self, name: str) -> dict[str, Any]:
        """Meta of a whole video: download height (when positive) and URL."""
        meta: dict[str, Any] = {}
        if self.resolution.get(name, 0) > 0:
            meta["resolution"] = self.resolution[name]
        if name in self.video_url:
            meta["url"] = self.video_url[name]
        return meta

    def clip_meta(self, name: str, idx: int) -> dict[str, Any]:
        """Meta of clip ``idx``: its interval in the source, crop (x, w, y, h) and zoom ratio where annotated."""
        meta = self.video_meta(name)
        intervals = self.intervals.get(name, [])
        if idx < len(intervals):
            meta["source_start_s"], meta["source_end_s"] = intervals[idx]
        if (name, idx) in self.crop_wh:
            meta["crop_xywh"] = list(self.crop_wh[name, idx])
        if (name, idx) in self.crop_ratio:
            meta["crop_ratio"] = self.crop_ratio[name, idx]
        return meta


def _load_annotations(tree: SourceTree) -> dict[str, HdtfAnnotations]:
    """The annotation files below the root, per subset (the shallowest copy of each file)."""
    names = {f"{subset}_{kind}.txt": (subset, kind) for subset in SUBSETS for kind in _PARSERS}
    found = tree.find_named(names)
    chosen = {rels[0]: names[name] for name, rels in sorted(found.items())}
    texts = tree.read_texts(chosen)
    out: dict[str, HdtfAnnotations] = {}
    for rel, (subset, kind) in chosen.items():
        try:
            parsed = _PARSERS[kind](texts[rel])
        except (ValueError, IndexError) as exc:
            raise SourceLayoutError(f"HDTF annotation file {tree.uri(rel)} is malformed: {exc}") from exc
        setattr(out.setdefault(subset, HdtfAnnotations()), _FIELDS[kind], parsed)
    return out


# ------------------------------------------------------------------------------------------ the adapter
def speaker_of(subset: str, name: str) -> str:
    """``WDA_BarackObama`` for ``("WDA", "BarackObama0")``; RD videos keep their full name (``RD_Radio11``)."""
    return f"{subset}_{name if subset == 'RD' else (name.rstrip('0123456789') or name)}"


@dataclass(frozen=True)
class _Video:
    """A video file of the tree, classified: a clip (``idx`` set) or a raw video (``idx`` None)."""

    rel: str
    subset: str
    name: str
    idx: int | None


def _folder_subset(rel: str) -> str | None:
    """The subset the nearest folder of ``rel`` names (``WDA/``, ``HDTF_RD``, ``wra_clips`` ...), if any."""
    for folder in reversed(rel.split("/")[:-1]):
        match = _SUBSET_IN_FOLDER.search(folder.upper())
        if match:
            return match.group(1)
    return None


def _classify(rel: str, annotations: dict[str, HdtfAnnotations]) -> _Video | str:
    """The :class:`_Video` of a video path, or the reason it is not an HDTF video."""
    stem = basename_stem(rel)
    for pattern in (_UNIVERSOME_CLIP, _PREFIXED_RAW):
        if match := pattern.match(stem):
            idx = match.groupdict().get("idx")
            return _Video(rel, match["subset"], match["name"], None if idx is None else int(idx))
    match = _OFFICIAL_CLIP.match(stem) or _BARE_RAW.match(stem)
    if match is None:
        return "videos whose name is not an HDTF name"
    name = match["name"]
    subset = _folder_subset(rel)
    if subset is None:
        listed = [s for s, ann in annotations.items() if name in ann.names()]
        if len(listed) != 1:
            return "videos whose subset neither a folder name nor the annotation files tell"
        subset = listed[0]
    idx = match.groupdict().get("idx")
    return _Video(rel, subset, name, None if idx is None else int(idx))


def _raw_items(tree: SourceTree, video: _Video, ann: HdtfAnnotations) -> list[SourceItem]:
    """One item per annotated interval of a raw video, or one whole-file item when it has none."""
    base = f"{video.subset}_{video.name}"
    common = dict(dataset=DATASET, uri=tree.uri(video.rel), speaker_id=speaker_of(video.subset, video.name))
    intervals = ann.intervals.get(video.name, [])
    if not intervals:
        meta = {"subset": video.subset, "video_name": video.name, "annotated": False, **ann.video_meta(video.name)}
        return [SourceItem(item_id=make_item_id(DATASET, base), meta=meta, **common)]
    items = []
    for idx, (start, end) in enumerate(intervals):
        meta = {"subset": video.subset, "video_name": video.name, "clip_index": idx, **ann.clip_meta(video.name, idx)}
        items.append(SourceItem(item_id=make_item_id(DATASET, f"{base}_{idx:03d}"), start_s=start, end_s=end,
                                meta=meta, **common))
    return items


def list_hdtf(root: str, filesystem: pafs.FileSystem | None = None) -> list[SourceItem]:
    """The HDTF clips below ``root``: clip files as they are, raw videos cut by the annotated intervals."""
    tree = open_tree(root, filesystem)
    annotations = _load_annotations(tree)
    clips, raws, skipped = [], [], Skipped()
    for rel in tree.videos():
        video = _classify(rel, annotations)
        if isinstance(video, str):
            skipped.add(video, rel)
        else:
            (raws if video.idx is None else clips).append(video)
    items = []
    for video in clips:
        ann = annotations.get(video.subset, HdtfAnnotations())
        meta = {"subset": video.subset, "video_name": video.name, "clip_index": video.idx,
                **ann.clip_meta(video.name, video.idx)}
        items.append(SourceItem(item_id=make_item_id(DATASET, f"{video.subset}_{video.name}_{video.idx:03d}"),
                                dataset=DATASET, uri=tree.uri(video.rel),
                                speaker_id=speaker_of(video.subset, video.name), meta=meta))
    have = {item.item_id for item in items}
    unannotated = Skipped()
    for video in raws:
        ann = annotations.get(video.subset, HdtfAnnotations())
        if not ann.intervals.get(video.name):
            unannotated.add("raw videos without annotated intervals, as whole files", video.rel)
        items.extend(item for item in _raw_items(tree, video, ann) if item.item_id not in have)
    skipped.warn(logger, DATASET)
    unannotated.warn(logger, DATASET, verb="kept")
    if not items:
        raise layout_error(tree, DATASET, EXPECTED_LAYOUT)
    return items
