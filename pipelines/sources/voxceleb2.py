"""VoxCeleb2 (Chung et al. 2018) as released: one item per utterance video.

Layout read (DATASETS.md section 1)::

    <root>/vox2_meta.csv                          optional: speaker -> VGGFace2 id, gender, split
    <root>/dev/mp4/idNNNNN/<ytid>/NNNNN.mp4       dev archive
    <root>/mp4/idNNNNN/<ytid>/NNNNN.mp4           test archive (no ``test/`` prefix; ``test/mp4/`` also accepted)
    <root>/txt/idNNNNN/<ytid>/NNNNN.txt           optional face tracks (``dev/txt``, ``test/txt`` also accepted)

* item id ``voxceleb2/<idNNNNN>/<ytid>/<utt>``; speaker id = the ``idNNNNN`` folder.
* split: the ``Set`` column of ``vox2_meta.csv`` when the speaker is listed, else the path (``dev/mp4`` -> dev,
  ``test/mp4`` -> test, a bare ``mp4/`` -> the root's folder name when it is ``dev``/``test``, else test,
  which is how the test zip unpacks).
* ``vox2_meta.csv``: the published copy has a BOM, a space before every comma and a trailing space; re-saved
  copies have CRLF and ``VoxCeleb2ID`` without spaces. All fields are stripped and both spellings accepted.
* The txt gives the AV offset, the two confidences and the frame range in the *original YouTube video*
  (25 fps); its normalised boxes are relative to that frame, not to the 224x224 mp4, so no ``box`` is set.
"""
from __future__ import annotations

import csv
import io
import logging
import posixpath
import re
from typing import Any

import pyarrow.fs as pafs

from pipelines.sources.base import SourceItem
from pipelines.sources.common import SourceTree, Skipped, is_video, layout_error, make_item_id, open_tree, split_ext

logger = logging.getLogger(__name__)

DATASET = "voxceleb2"
META_FILE = "vox2_meta.csv"
EXPECTED_LAYOUT = ("dev/mp4/idNNNNN/<youtube id>/NNNNN.mp4 and/or mp4/idNNNNN/<youtube id>/NNNNN.mp4 (test; "
                   "test/mp4/... also accepted), optional vox2_meta.csv at the root and txt/idNNNNN/<youtube id>/NNNNN.txt")

# <prefix/>{mp4|txt}/idNNNNN/<ytid>/<utt>.<ext>
_UTTERANCE = re.compile(r"^(?:(?P<prefix>.*)/)?(?P<kind>mp4|txt)/(?P<spk>id\d+)/(?P<yt>[^/]+)/(?P<utt>[^/]+)\.(?P<ext>[^./]+)$")
_SPLITS = ("dev", "test")
_TXT_KEYS = {"identity": "identity", "reference": "reference", "offset": "av_offset", "fv conf": "fv_conf",
             "asd conf": "asd_conf"}


def parse_vox_meta(text: str) -> dict[str, dict[str, str]]:
    """``{speaker id: {"vggface2_id", "gender", "set"}}`` from the text of ``vox2_meta.csv``.

    Tolerates a BOM, CRLF, spaces around fields and both header spellings (``VoxCeleb2 ID`` / ``VoxCeleb2ID``);
    without a recognised header the columns are taken in the published order.
    """
    rows = [[field.strip() for field in row] for row in csv.reader(io.StringIO(text.lstrip("\ufeff")))]
    rows = [row for row in rows if any(row)]
    if not rows:
        return {}
    names = {"voxceleb2id": "speaker", "vggface2id": "vggface2_id", "gender": "gender", "set": "set"}
    header = [names.get(re.sub(r"\s+", "", col).lower()) for col in rows[0]]
    if "speaker" in header:
        columns, rows = header, rows[1:]
    else:
        columns = ["speaker", "vggface2_id", "gender", "set"]
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        record = {col: value for col, value in zip(columns, row) if col}
        speaker = record.pop("speaker", "")
        if speaker:
            out[speaker] = record
    return out


def parse_vox_txt(text: str) -> dict[str, Any]:
    """The header values and frame range of a VoxCeleb2 per-utterance face-track ``.txt``.

    Returns ``identity``, ``reference`` (YouTube id), ``av_offset`` (int, frames), ``fv_conf``, ``asd_conf``
    (floats) for the keys present, and ``first_frame``/``last_frame``/``num_frames`` (frame numbers of the
    original YouTube video at 25 fps) when there are frame rows. Raises ``ValueError`` on a malformed number.
    """
    out: dict[str, Any] = {}
    frames: list[int] = []
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            name = _TXT_KEYS.get(" ".join(key.split()).lower())
            tokens = value.split()
            if name and tokens:
                out[name] = tokens[0]
            continue
        tokens = line.split()
        if len(tokens) >= 5 and tokens[0].isdigit():
            frames.append(int(tokens[0]))
    if "av_offset" in out:
        out["av_offset"] = int(out["av_offset"])
    for name in ("fv_conf", "asd_conf"):
        if name in out:
            out[name] = float(out[name])
    if frames:
        out.update(first_frame=min(frames), last_frame=max(frames), num_frames=len(frames))
    return out


def _path_split(prefix: str | None, root_name: str) -> str | None:
    """The split a path says: ``dev``/``test`` from the folder above ``mp4/``, else from the root's name."""
    if prefix:
        last = prefix.rsplit("/", 1)[-1]
        return last if last in _SPLITS else None
    return root_name if root_name in _SPLITS else "test"


def _item_meta(split: str | None, speaker_meta: dict[str, str] | None, track: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if speaker_meta:
        meta.update({k: v for k, v in speaker_meta.items() if v})
    if "set" not in meta and split:
        meta["set"] = split
    if track:
        meta.update({k: track[k] for k in ("av_offset", "fv_conf", "asd_conf", "first_frame", "last_frame") if k in track})
    return meta


def _read_tracks(tree: SourceTree, txt_by_key: dict[tuple[str, str, str], str],
                 keys: list[tuple[str, str, str]], skipped: Skipped) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Parsed face-track txts of the utterances ``keys`` that have one (malformed ones are counted and left out)."""
    wanted = {key: txt_by_key[key] for key in keys if key in txt_by_key}
    texts = tree.read_texts(wanted.values())
    tracks = {}
    for key, rel in wanted.items():
        try:
            tracks[key] = parse_vox_txt(texts[rel])
        except ValueError:
            skipped.add("malformed face-track txt files (videos kept without their values)", rel)
    return tracks


def list_voxceleb2(root: str, filesystem: pafs.FileSystem | None = None) -> list[SourceItem]:
    """One :class:`SourceItem` per VoxCeleb2 utterance video below ``root`` (layout in the module docstring)."""
    tree = open_tree(root, filesystem)
    speakers = parse_vox_meta(tree.read_text(META_FILE)) if META_FILE in tree.files else {}
    root_name = posixpath.basename(tree.fs_root.rstrip("/"))
    videos: list[tuple[tuple[str, str, str], str, str | None]] = []
    txt_by_key: dict[tuple[str, str, str], str] = {}
    skipped = Skipped()
    for rel in tree.files:
        match = _UTTERANCE.match(rel)
        if match is None:
            if is_video(rel):
                skipped.add("videos outside the mp4/idNNNNN/<ytid>/ layout", rel)
            continue
        key = (match["spk"], match["yt"], match["utt"])
        if match["kind"] == "txt" and split_ext(rel)[1] == ".txt":
            txt_by_key.setdefault(key, rel)
        elif match["kind"] == "mp4" and is_video(rel):
            videos.append((key, rel, _path_split(match["prefix"], root_name)))
    if not videos:
        raise layout_error(tree, DATASET, EXPECTED_LAYOUT)
    tracks = _read_tracks(tree, txt_by_key, [key for key, _, _ in videos], skipped)
    skipped.warn(logger, DATASET)
    return [
        SourceItem(item_id=make_item_id(DATASET, "/".join(key)), dataset=DATASET, uri=tree.uri(rel), speaker_id=key[0],
                   meta=_item_meta(split, speakers.get(key[0]), tracks.get(key)))
        for key, rel, split in videos
    ]
