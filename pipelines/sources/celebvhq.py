"""CelebV-HQ (Zhu et al. 2022): one item per clip of ``celebvhq_info.json``.

Layout read (DATASETS.md section 2)::

    <root>/**/celebvhq_info.json        required (at the root or anywhere below; the shallowest is used)
    <root>/**/<clip key>.mp4            processed clips (the official script writes ``processed/<key>.mp4``)
    <root>/**/<ytb_id>.mp4              raw YouTube downloads (the official script writes ``raw/<ytb_id>.mp4``)

* ``clips`` maps a clip key (``<ytb_id>_<n>`` or ``<ytb_id>_<n>_<m>``) to ``ytb_id``, ``duration``
  (``start_sec``/``end_sec`` in the YouTube video), ``bbox`` (``left/top/right/bottom``, fractions of the
  frame) and multi-hot ``attributes`` whose names are in ``meta_info.{appearance,action}_mapping``.
  YouTube ids contain ``_`` and ``-``: the video id is always the ``ytb_id`` field, never a split of the key.
* A processed clip file is the whole item. Without one, the raw video gives a window ``start_sec..end_sec``
  with ``box`` = the bbox. Entries with neither are skipped (one warning with the count).
* item id ``celebvhq/<clip key>``; speaker id = ``ytb_id`` (the corpus publishes no identity labels).
* meta: ``ytb_id``, the names of the ``appearance`` and ``action`` attributes that are on, and ``emotion``
  (a label, or a list of ``{emotion, start_sec, end_sec}`` segments relative to the clip when ``sep_flag``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from pipelines.sources.base import SourceItem
from pipelines.sources.common import Skipped, clamp_box, layout_error, make_item_id, open_tree

logger = logging.getLogger(__name__)

DATASET = "celebvhq"
INFO_FILE = "celebvhq_info.json"
EXPECTED_LAYOUT = (f"{INFO_FILE} at the root or below, with processed clips <clip key>.mp4 (e.g. processed/) "
                   "and/or raw YouTube videos <ytb_id>.mp4 (e.g. raw/) anywhere below the root")


@dataclass(frozen=True)
class CelebVClip:
    """One entry of ``celebvhq_info.json``'s ``clips``."""

    key: str
    ytb_id: str
    start_s: float
    end_s: float
    box: tuple[float, float, float, float]
    """``(left, top, right, bottom)``, fractions of the frame width/height."""
    appearance: list[str] = field(default_factory=list)
    action: list[str] = field(default_factory=list)
    emotion: Any = None


def _names_on(flags: list[Any] | None, names: list[str]) -> list[str]:
    """The names whose multi-hot flag is set (flags beyond the mapping get ``#<index>``)."""
    return [names[i] if i < len(names) else f"#{i}" for i, flag in enumerate(flags or []) if flag]


def parse_celebvhq_info(text: str) -> dict[str, CelebVClip]:
    """``{clip key: CelebVClip}`` from the text of ``celebvhq_info.json``. Raises ``ValueError`` if malformed."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("clips"), dict):
        raise ValueError(f"{INFO_FILE} has no 'clips' object")
    mapping = data.get("meta_info") or {}
    appearance_names = list(mapping.get("appearance_mapping") or [])
    action_names = list(mapping.get("action_mapping") or [])
    clips = {}
    for key, entry in data["clips"].items():
        try:
            duration, bbox = entry["duration"], entry["bbox"]
            attributes = entry.get("attributes") or {}
            emotion = attributes.get("emotion") or {}
            clips[key] = CelebVClip(
                key=key, ytb_id=str(entry["ytb_id"]),
                start_s=float(duration["start_sec"]), end_s=float(duration["end_sec"]),
                box=clamp_box((bbox["left"], bbox["top"], bbox["right"], bbox["bottom"])),
                appearance=_names_on(attributes.get("appearance"), appearance_names),
                action=_names_on(attributes.get("action"), action_names),
                emotion=emotion.get("labels"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{INFO_FILE}: clip {key!r} lacks or mistypes {exc}") from exc
    return clips


def list_celebvhq(root: str, filesystem: pafs.FileSystem | None = None) -> list[SourceItem]:
    """One :class:`SourceItem` per CelebV-HQ clip with a processed file or a raw video below ``root``."""
    tree = open_tree(root, filesystem)
    found = tree.find_named([INFO_FILE]).get(INFO_FILE)
    if not found:
        raise layout_error(tree, DATASET, EXPECTED_LAYOUT, reason=f"no {INFO_FILE}")
    if len(found) > 1:
        logger.warning("%s: several %s below %r; using %s", DATASET, INFO_FILE, root, found[0])
    clips = parse_celebvhq_info(tree.read_text(found[0]))
    by_stem = tree.videos_by_stem()
    items, skipped = [], Skipped()
    for key, clip in clips.items():
        meta = {"ytb_id": clip.ytb_id, "appearance": clip.appearance, "action": clip.action, "emotion": clip.emotion}
        common = dict(item_id=make_item_id(DATASET, key), dataset=DATASET, speaker_id=clip.ytb_id, meta=meta)
        if key in by_stem:
            items.append(SourceItem(uri=tree.uri(by_stem[key]), **common))
        elif clip.ytb_id in by_stem:
            items.append(SourceItem(uri=tree.uri(by_stem[clip.ytb_id]), start_s=clip.start_s, end_s=clip.end_s,
                                    box=clip.box, **common))
        else:
            skipped.add("clips with neither a clip file nor the raw video", key)
    skipped.warn(logger, DATASET)
    if not items:
        raise layout_error(tree, DATASET, EXPECTED_LAYOUT,
                           reason=f"none of the {len(clips)} clips of {found[0]} has a video")
    return items
