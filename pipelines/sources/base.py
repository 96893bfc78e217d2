"""What a source adapter yields: one :class:`SourceItem` per raw video (or per annotated segment of one).

An item is the unit of work and of resumption of the curation pipeline: its ``item_id`` is stable across
runs (derived from the dataset and the path or key inside the corpus, never from the run), and every clip
cut from it gets an id that starts with it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class SourceItem:
    """One video to curate, with what the corpus's metadata says about it.

    ``start_s``/``end_s`` restrict processing to a window of the source (HDTF annotation times, a
    CelebV-HQ or VFHQ clip inside a raw YouTube video); ``None`` means the whole file. ``box`` is a face box
    hint ``(x0, y0, x1, y1)`` as fractions of the frame width/height: when given, only faces whose centre lies
    inside it are considered (another person elsewhere in the frame is then not "a second face").
    ``meta`` holds JSON-able corpus metadata (gender, split, attributes, ...) kept in the manifest.
    """

    item_id: str
    dataset: str
    uri: str
    speaker_id: str
    start_s: float | None = None
    end_s: float | None = None
    box: tuple[float, float, float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """A JSON string of this item (what travels through the pipeline)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SourceItem":
        d = json.loads(text)
        if d.get("box") is not None:
            d["box"] = tuple(d["box"])
        return cls(**d)


class SourceLayoutError(ValueError):
    """The input folder does not have the layout of the requested corpus; the message says what was expected."""
