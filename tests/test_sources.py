"""Source adapters: each corpus layout as a small tree of real (symlinked) videos, the metadata parsers on
the real annotation files, URI roots, and the layout errors."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pipelines.sources.base import SourceItem, SourceLayoutError
from pipelines.sources.celebvhq import parse_celebvhq_info
from pipelines.sources.common import VIDEO_EXTENSIONS, decode_text, make_item_id, open_tree, sanitize_id
from pipelines.sources.hdtf import (parse_hdtf_crop_ratio, parse_hdtf_crop_wh, parse_hdtf_intervals,
                                    parse_hdtf_resolution, parse_hdtf_urls, speaker_of)
from pipelines.sources.registry import SOURCES, list_items
from pipelines.sources.vfhq import parse_vfhq_clip_name, parse_vfhq_meta
from pipelines.sources.voxceleb2 import parse_vox_meta, parse_vox_txt

# The VoxCeleb2 txt example of DATASETS.md 1.3, tabs and trailing " \t" included.
VOX_TXT = ("Identity  : \tid00012\nReference : \t_raOc3-IRsw\nOffset    : \t2\nFV Conf   : \t20.230\t(1)\n"
           "ASD Conf  : \t2.765\n\nFRAME \tX \tY \tW \tH \n"
           "000349 \t0.319 \t0.067 \t0.424 \t0.753 \n000350 \t0.319 \t0.067 \t0.424 \t0.753 \n")


def _vfhq_meta(video_id: str, fps: float, start: int, end: int, crop: str = "CROP_BBOX 480 108 1440 972",
               landmarks: bool = True) -> str:
    """A VFHQ meta txt in the reconstructed format of DATASETS.md 3.2 (1920x1080 source)."""
    lines = [f"Video {video_id}", "H 1080", "W 1920", f"FPS {fps}", "", "FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]", ""]
    for frame in range(start, end + 1):
        row = f"{frame:08d} 00000000 700.5 250.0 400.0 480.0"
        lines.append(row + (" 800 400 1000 400 900 500 820 600 980 600" if landmarks else ""))
    return "\n".join(lines + [crop])


def _link(root: Path, rel: str, src: Path) -> Path:
    dst = root / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)
    return dst


def _write(root: Path, rel: str, text: str | bytes) -> Path:
    dst = root / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    (dst.write_bytes if isinstance(text, bytes) else dst.write_text)(text)
    return dst


@pytest.fixture
def videos(shared_data) -> list[Path]:
    found = sorted(p.resolve() for p in (shared_data / "videos").glob("*.mp4"))  # symlinked checkouts too
    assert len(found) >= 3
    return found


# ------------------------------------------------------------------------------------------ trees
def build_folder(root: Path, videos: list[Path]) -> Path:
    _link(root, "alice/a.mp4", videos[0])
    _link(root, "alice/sub/b.MOV", videos[1])
    _link(root, "top level (1).mkv", videos[2])
    _link(root, ".hidden/x.mp4", videos[0])
    _link(root, "bob/._resource.mp4", videos[0])
    _write(root, "notes.txt", "not a video")
    return root


def build_voxceleb2(root: Path, videos: list[Path], shared: Path) -> Path:
    shutil.copy(shared / "metadata/voxceleb2/vox2_meta_kaneel.csv", root / "vox2_meta.csv")
    _link(root, "dev/mp4/id00012/21Uxsk56VDQ/00001.mp4", videos[0])
    _link(root, "dev/mp4/id00012/_raOc3-IRsw/00002.mp4", videos[1])
    _link(root, "dev/aac/id00012/21Uxsk56VDQ/00001.m4a", videos[0])  # audio: not an item
    _link(root, "mp4/id00017/abcdefghijk/00001.mp4", videos[2])        # test zip layout, no prefix
    _link(root, "test/mp4/id99999/zzzzzzzzzzz/00003.mp4", videos[0])   # not in the meta csv
    _link(root, "dev/mp4/stray.mp4", videos[1])                        # outside the layout
    _write(root, "txt/id00012/_raOc3-IRsw/00002.txt", VOX_TXT)
    return root


CELEBV_INFO = {
    "meta_info": {"appearance_mapping": ["Blurry", "Male", "Young"], "action_mapping": ["blow", "chew", "talk"]},
    "clips": {
        "M2Ohb0FAaJU_1": {"ytb_id": "M2Ohb0FAaJU", "duration": {"start_sec": 81.62, "end_sec": 86.17},
                          "bbox": {"top": 0.0, "bottom": 0.8815, "left": 0.1964, "right": 0.6922},
                          "attributes": {"appearance": [0, 1, 1], "action": [0, 0, 1],
                                         "emotion": {"sep_flag": False, "labels": "neutral"}}, "version": "v0.1"},
        "_0tf2n3rlJU_0": {"ytb_id": "_0tf2n3rlJU", "duration": {"start_sec": 10.5, "end_sec": 14.0},
                          "bbox": {"top": 0.1, "bottom": 0.9, "left": 0.25, "right": 0.75},
                          "attributes": {"appearance": [1, 0, 0], "action": [0, 1, 1], "emotion": {
                              "sep_flag": True, "labels": [{"emotion": "neutral", "start_sec": 0, "end_sec": 0.28},
                                                           {"emotion": "happy", "start_sec": 1.28, "end_sec": 3.28}]}},
                          "version": "v0.1"},
        "--xLdkFg5O0_15_0": {"ytb_id": "--xLdkFg5O0", "duration": {"start_sec": 1.0, "end_sec": 3.0},
                             "bbox": {"top": -0.01, "bottom": 1.02, "left": 0.3, "right": 0.6},
                             "attributes": {"appearance": [0, 0, 0], "action": [0, 0, 0],
                                            "emotion": {"sep_flag": False, "labels": "sad"}}},
        "NoVideoHere_3": {"ytb_id": "NoVideoHere", "duration": {"start_sec": 0, "end_sec": 2},
                          "bbox": {"top": 0, "bottom": 1, "left": 0, "right": 1},
                          "attributes": {"appearance": [], "action": [], "emotion": {"sep_flag": False, "labels": "x"}}},
    },
}


def build_celebvhq(root: Path, videos: list[Path]) -> Path:
    _write(root, "meta/celebvhq_info.json", json.dumps(CELEBV_INFO))
    _link(root, "processed/M2Ohb0FAaJU_1.mp4", videos[0])   # clip file ...
    _link(root, "raw/M2Ohb0FAaJU.mp4", videos[1])           # ... wins over its raw video
    _link(root, "raw/_0tf2n3rlJU.mp4", videos[2])
    _link(root, "raw/--xLdkFg5O0.mp4", videos[0])
    return root


VFHQ_CLIP = "Clip+_-91nXXjrVo+P0+C0+F1537-1825"
VFHQ_RAW_CLIP = "Clip+XZ2qCoO0gbU+P3+C2+F157105-157607"


def build_vfhq(root: Path, videos: list[Path]) -> Path:
    _write(root, f"meta_info/VFHQ-Train/{VFHQ_CLIP}.txt", _vfhq_meta("_-91nXXjrVo", 29.97, 1537, 1540))
    _write(root, f"meta_info/VFHQ-Test/{VFHQ_RAW_CLIP}.txt", _vfhq_meta("XZ2qCoO0gbU", 25.0, 157105, 157107))
    _write(root, "meta_info/VFHQ-Train/Clip+zJh4x2g8nQI+P8+C0+F13955-14271.txt", _vfhq_meta("zJh4x2g8nQI", 25, 1, 2))
    _link(root, f"clips/{VFHQ_CLIP}.mp4", videos[0])
    _link(root, "raw/XZ2qCoO0gbU.webm", videos[1])
    return root


def build_hdtf(root: Path, videos: list[Path], shared: Path) -> Path:
    for src in (shared / "metadata/hdtf").glob("*.txt"):
        _write(root, f"HDTF_dataset/{src.name}", src.read_bytes())
    _link(root, "clips/WRA_AdamKinzinger2_001.mp4", videos[0])     # universome clip name
    _link(root, "_videos_raw/WRA_AdamKinzinger2.mp4", videos[1])   # its raw video: gives clips 000 and 002
    _link(root, "_videos_raw/WRA_KevinMcCarthy1.mp4", videos[2])   # resolution 0 in the files
    _link(root, "RD/Radio11_1.mp4", videos[0])                     # official clip name in a subset folder
    _link(root, "HDTF_WDA/AdamSchiff.mp4", videos[1])              # raw, subset from the folder
    _link(root, "misc/AmyKlobuchar0_0.mp4", videos[2])             # subset from the annotation files
    _link(root, "raw/RD_Radio24.mp4", videos[0])                   # no time annotation: whole file
    _link(root, "misc/holiday.mp4", videos[1])                     # not HDTF
    return root


def _tree(name: str, root: Path, videos: list[Path], shared: Path) -> Path:
    return {"folder": lambda: build_folder(root, videos), "voxceleb2": lambda: build_voxceleb2(root, videos, shared),
            "celebvhq": lambda: build_celebvhq(root, videos), "vfhq": lambda: build_vfhq(root, videos),
            "hdtf": lambda: build_hdtf(root, videos, shared)}[name]()


def _by_id(items: list[SourceItem]) -> dict[str, SourceItem]:
    return {item.item_id: item for item in items}


# ------------------------------------------------------------------------------------------ common
def test_sanitize_id_keeps_the_allowed_characters_only():
    assert sanitize_id("a-Z_0.9+b=c/d") == "a-Z_0.9+b=c/d"
    assert sanitize_id("top level (1)é") == "top_level__1__"
    assert make_item_id("vfhq", "Clip+x y") == "vfhq/Clip+x_y"


def test_decode_text_drops_bom_and_crlf():
    assert decode_text("\ufeffa b\r\nc \r\nd".encode()) == "a b\nc \nd"


@pytest.mark.realdata
def test_open_tree_lists_relative_paths_without_hidden_entries(tmp_path, videos):
    tree = open_tree(str(build_folder(tmp_path, videos)))
    assert tree.files == ("alice/a.mp4", "alice/sub/b.MOV", "notes.txt", "top level (1).mkv")
    assert tree.videos() == ["alice/a.mp4", "alice/sub/b.MOV", "top level (1).mkv"]
    assert tree.uri("alice/a.mp4") == str(tmp_path / "alice/a.mp4")
    assert {".mp4", ".ts", ".mpeg", ".webm"} <= VIDEO_EXTENSIONS


def test_open_tree_rejects_a_missing_root_or_a_file(tmp_path):
    with pytest.raises(SourceLayoutError, match="does not exist"):
        open_tree(str(tmp_path / "nope"))
    _write(tmp_path, "f.mp4", b"x")
    with pytest.raises(SourceLayoutError, match="not a folder"):
        open_tree(str(tmp_path / "f.mp4"))


# ------------------------------------------------------------------------------------------ folder
@pytest.mark.realdata
def test_folder_lists_every_video_recursively(tmp_path, videos):
    items = list_items("folder", str(build_folder(tmp_path, videos)))
    assert [(i.item_id, i.speaker_id) for i in items] == [
        ("folder/alice/a", "alice"), ("folder/alice/sub/b", "alice"), ("folder/top_level__1_", "top level (1)")]
    assert items[1].uri == str(tmp_path / "alice/sub/b.MOV") and Path(items[1].uri).resolve() == videos[1]
    assert all(i.start_s is None and i.end_s is None and i.box is None and i.meta == {} for i in items)


@pytest.mark.realdata
def test_duplicate_item_ids_are_an_error(tmp_path, videos):
    _link(tmp_path, "s/a.mp4", videos[0])
    _link(tmp_path, "s/a.mov", videos[1])
    with pytest.raises(SourceLayoutError, match=r"'folder/s/a'.*a\.mov.*a\.mp4"):
        list_items("folder", str(tmp_path))


# ------------------------------------------------------------------------------------------ voxceleb2
def test_parse_vox_txt_on_the_documented_example():
    assert parse_vox_txt(VOX_TXT) == {"identity": "id00012", "reference": "_raOc3-IRsw", "av_offset": 2,
                                      "fv_conf": 20.23, "asd_conf": 2.765, "first_frame": 349, "last_frame": 350,
                                      "num_frames": 2}
    crlf = parse_vox_txt(VOX_TXT.replace("\n", "\r\n").rstrip())
    assert crlf["last_frame"] == 350 and crlf["av_offset"] == 2
    with pytest.raises(ValueError):
        parse_vox_txt("Offset    : \tabc\n")


@pytest.mark.realdata
def test_parse_vox_meta_on_both_real_copies(shared_data):
    folder = shared_data / "metadata/voxceleb2"
    published = parse_vox_meta(decode_text((folder / "vox2_meta_kaneel.csv").read_bytes()))
    resaved = parse_vox_meta(decode_text((folder / "vox2_meta_sin.csv").read_bytes()))
    assert len(published) == 6114
    assert sum(r["set"] == "test" for r in published.values()) == 120
    assert sum(r["set"] == "dev" for r in published.values()) == 5994
    assert sum(r["gender"] == "m" for r in published.values()) == 3763
    assert published["id00134"] == {"vggface2_id": "n000140", "gender": "f", "set": "dev"}
    assert published["id00012"] == {"vggface2_id": "n000012", "gender": "m", "set": "dev"}
    assert resaved == published
    headerless = parse_vox_meta("id00017 ,n000017 ,m ,test \n")
    spaced = parse_vox_meta("VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set\r\nid00017 ,n000017 ,m ,test \r\n")
    assert headerless == spaced == {"id00017": {"vggface2_id": "n000017", "gender": "m", "set": "test"}}


@pytest.mark.realdata
def test_voxceleb2_items(tmp_path, videos, shared_data, caplog):
    root = build_voxceleb2(tmp_path, videos, shared_data)
    with caplog.at_level(logging.WARNING, logger="pipelines.sources.voxceleb2"):
        items = _by_id(list_items("voxceleb2", str(root)))
    assert list(items) == ["voxceleb2/id00012/21Uxsk56VDQ/00001", "voxceleb2/id00012/_raOc3-IRsw/00002",
                           "voxceleb2/id00017/abcdefghijk/00001", "voxceleb2/id99999/zzzzzzzzzzz/00003"]
    first = items["voxceleb2/id00012/21Uxsk56VDQ/00001"]
    assert first.speaker_id == "id00012" and first.uri == str(root / "dev/mp4/id00012/21Uxsk56VDQ/00001.mp4")
    assert first.meta == {"vggface2_id": "n000012", "gender": "m", "set": "dev"}
    tracked = items["voxceleb2/id00012/_raOc3-IRsw/00002"]
    assert tracked.meta == {"vggface2_id": "n000012", "gender": "m", "set": "dev", "av_offset": 2, "fv_conf": 20.23,
                            "asd_conf": 2.765, "first_frame": 349, "last_frame": 350}
    assert tracked.box is None and tracked.start_s is None
    assert items["voxceleb2/id00017/abcdefghijk/00001"].meta["set"] == "test"
    assert items["voxceleb2/id99999/zzzzzzzzzzz/00003"].meta == {"set": "test"}  # split from the path only
    assert "1 videos outside the mp4/idNNNNN/<ytid>/ layout (e.g. dev/mp4/stray.mp4)" in caplog.text


@pytest.mark.realdata
def test_voxceleb2_split_from_path_without_meta(tmp_path, videos):
    _link(tmp_path, "dev/mp4/id00012/21Uxsk56VDQ/00001.mp4", videos[0])
    assert list_items("voxceleb2", str(tmp_path))[0].meta == {"set": "dev"}
    dev_root = tmp_path / "dev"  # the user points at dev/ itself: mp4/ at the root, the folder says dev
    assert list_items("voxceleb2", str(dev_root))[0].meta == {"set": "dev"}


# ------------------------------------------------------------------------------------------ celebvhq
@pytest.mark.realdata
def test_celebvhq_items(tmp_path, videos, caplog):
    root = build_celebvhq(tmp_path, videos)
    with caplog.at_level(logging.WARNING, logger="pipelines.sources.celebvhq"):
        items = _by_id(list_items("celebvhq", str(root)))
    assert sorted(items) == ["celebvhq/--xLdkFg5O0_15_0", "celebvhq/M2Ohb0FAaJU_1", "celebvhq/_0tf2n3rlJU_0"]
    clip = items["celebvhq/M2Ohb0FAaJU_1"]
    assert clip.uri == str(root / "processed/M2Ohb0FAaJU_1.mp4")
    assert (clip.start_s, clip.end_s, clip.box, clip.speaker_id) == (None, None, None, "M2Ohb0FAaJU")
    assert clip.meta == {"ytb_id": "M2Ohb0FAaJU", "appearance": ["Male", "Young"], "action": ["talk"],
                         "emotion": "neutral"}
    raw = items["celebvhq/_0tf2n3rlJU_0"]
    assert raw.uri == str(root / "raw/_0tf2n3rlJU.mp4") and raw.speaker_id == "_0tf2n3rlJU"
    assert (raw.start_s, raw.end_s) == (10.5, 14.0)
    assert raw.box == (0.25, 0.1, 0.75, 0.9)  # (left, top, right, bottom)
    assert raw.meta["appearance"] == ["Blurry"] and raw.meta["action"] == ["chew", "talk"]
    assert raw.meta["emotion"][1] == {"emotion": "happy", "start_sec": 1.28, "end_sec": 3.28}
    dashed = items["celebvhq/--xLdkFg5O0_15_0"]
    assert dashed.speaker_id == "--xLdkFg5O0" and dashed.box == (0.3, 0.0, 0.6, 1.0)  # clamped to [0, 1]
    assert "1 clips with neither a clip file nor the raw video (e.g. NoVideoHere_3)" in caplog.text


def test_parse_celebvhq_info_rejects_a_malformed_file():
    with pytest.raises(ValueError, match="clips"):
        parse_celebvhq_info('{"meta_info": {}}')
    with pytest.raises(ValueError, match="a_1"):
        parse_celebvhq_info('{"clips": {"a_1": {"ytb_id": "a"}}}')


@pytest.mark.realdata
def test_celebvhq_without_info_json_says_what_it_expects(tmp_path, videos):
    _link(tmp_path, "processed/M2Ohb0FAaJU_1.mp4", videos[0])
    with pytest.raises(SourceLayoutError, match=r"no celebvhq_info\.json.*Expected layout.*1 videos"):
        list_items("celebvhq", str(tmp_path))


# ------------------------------------------------------------------------------------------ vfhq
def test_parse_vfhq_meta_and_clip_name():
    parsed = parse_vfhq_meta(_vfhq_meta("XZ2qCoO0gbU", 29.97, 10, 12))
    assert (parsed["video_id"], parsed["height"], parsed["width"], parsed["fps"]) == ("XZ2qCoO0gbU", 1080, 1920, 29.97)
    assert parsed["crop_box"] == (480, 108, 1440, 972)
    assert [f["frame"] for f in parsed["frames"]] == [10, 11, 12]
    assert parsed["frames"][0]["box"] == (700.5, 250.0, 400.0, 480.0)
    assert parsed["frames"][0]["landmarks"][2] == (900.0, 500.0)
    # a colon after the keys, CRLF, rows without landmarks
    variant = _vfhq_meta("v", 25, 1, 1, crop="CROP_BBOX: 1 2 3 4", landmarks=False).replace("H ", "H: ")
    parsed = parse_vfhq_meta(variant.replace("\n", "\r\n"))
    assert parsed["height"] == 1080 and parsed["crop_box"] == (1, 2, 3, 4) and parsed["frames"][0]["landmarks"] is None
    with pytest.raises(ValueError, match="crop_box"):
        parse_vfhq_meta("Video v\nH 10\nW 10\nFPS 25\n")
    name = parse_vfhq_clip_name("Clip+_-91nXXjrVo+P0+C1+F1537-1825")
    assert (name.video_id, name.person, name.clip, name.start_frame, name.end_frame) == ("_-91nXXjrVo", 0, 1, 1537, 1825)
    assert name.speaker_id == "_-91nXXjrVo+P0"
    assert parse_vfhq_clip_name("Clip+abc+P0+F1-2") is None


@pytest.mark.realdata
def test_vfhq_items(tmp_path, videos, caplog):
    root = build_vfhq(tmp_path, videos)
    with caplog.at_level(logging.WARNING, logger="pipelines.sources.vfhq"):
        items = _by_id(list_items("vfhq", str(root)))
    assert list(items) == [f"vfhq/{VFHQ_RAW_CLIP}", f"vfhq/{VFHQ_CLIP}"]  # sorted by item id
    clip = items[f"vfhq/{VFHQ_CLIP}"]
    assert clip.uri == str(root / f"clips/{VFHQ_CLIP}.mp4") and clip.speaker_id == "_-91nXXjrVo+P0"
    assert (clip.start_s, clip.end_s, clip.box) == (None, None, None)
    assert clip.meta["split"] == "train" and clip.meta["fps"] == 29.97 and clip.meta["crop_box_px"] == [480, 108, 1440, 972]
    raw = items[f"vfhq/{VFHQ_RAW_CLIP}"]
    assert raw.uri == str(root / "raw/XZ2qCoO0gbU.webm") and raw.speaker_id == "XZ2qCoO0gbU+P3"
    assert raw.start_s == pytest.approx(157106 / 25) and raw.end_s == pytest.approx(157606 / 25)
    assert raw.box == pytest.approx((0.25, 0.1, 0.75, 0.9))
    assert raw.meta["split"] == "test" and raw.meta["num_frame_rows"] == 3
    assert "1 meta files with neither a clip video nor the raw video" in caplog.text


@pytest.mark.realdata
def test_vfhq_without_meta_files_says_what_it_expects(tmp_path, videos):
    _link(tmp_path, f"clips/{VFHQ_CLIP}.mp4", videos[0])
    with pytest.raises(SourceLayoutError, match=r"no clip meta file.*Clip\+<ytid>\+P<pid>"):
        list_items("vfhq", str(tmp_path))


# ------------------------------------------------------------------------------------------ hdtf
def _hdtf_text(shared: Path, subset: str, kind: str) -> str:
    return decode_text((shared / f"metadata/hdtf/{subset}_{kind}.txt").read_bytes())


@pytest.mark.realdata
def test_hdtf_parsers_on_the_real_files(shared_data):
    subsets = ("RD", "WDA", "WRA")
    intervals = {s: parse_hdtf_intervals(_hdtf_text(shared_data, s, "annotion_time")) for s in subsets}
    crops = {s: parse_hdtf_crop_wh(_hdtf_text(shared_data, s, "crop_wh")) for s in subsets}
    ratios = {s: parse_hdtf_crop_ratio(_hdtf_text(shared_data, s, "crop_ratio")) for s in subsets}
    urls = {s: parse_hdtf_urls(_hdtf_text(shared_data, s, "video_url")) for s in subsets}
    resolutions = {s: parse_hdtf_resolution(_hdtf_text(shared_data, s, "resolution")) for s in subsets}
    assert [len(intervals[s]) for s in subsets] == [56, 183, 130]
    assert [sum(map(len, intervals[s].values())) for s in subsets] == [66, 195, 175]
    assert sum(len(crops[s]) for s in subsets) == 421 and sum(len(ratios[s]) for s in subsets) == 421
    assert [len(urls[s]) for s in subsets] == [57, 183, 130]
    hours = sum(end - start for s in subsets for ivs in intervals[s].values() for start, end in ivs) / 3600
    assert hours == pytest.approx(17.07, abs=0.01)
    assert "Radio24" not in intervals["RD"] and "Radio24" in urls["RD"] and resolutions["RD"]["Radio24"] == 720
    assert urls["WDA"]["CarolynMaloney2"] == "https://www.youtube.com/watch?v=RApGxN-O9Qc"  # key after the BOM
    assert intervals["RD"]["Radio11"] == [(30.0, 60.0), (90.0, 150.0)]
    assert intervals["WRA"]["AdamKinzinger2"] == [(40.0, 80.0), (120.0, 160.0), (210.0, 230.0)]  # trailing space
    assert crops["RD"]["Radio11", 0] == (412, 599, 0, 599)
    assert all(w == h for s in subsets for _, w, _, h in crops[s].values())
    assert ratios["WRA"]["AdamKinzinger2", 1] == 1.2 and resolutions["WRA"]["KevinMcCarthy1"] == 0
    assert ("Radio15", 0) not in crops["RD"] and "Radio15" in intervals["RD"]


def test_hdtf_speaker_ids():
    assert speaker_of("WDA", "BarackObama") == "WDA_BarackObama"
    assert speaker_of("WRA", "AdamKinzinger2") == "WRA_AdamKinzinger"
    assert speaker_of("RD", "Radio11") == "RD_Radio11"


@pytest.mark.realdata
def test_hdtf_items(tmp_path, videos, shared_data, caplog):
    root = build_hdtf(tmp_path, videos, shared_data)
    with caplog.at_level(logging.WARNING, logger="pipelines.sources.hdtf"):
        items = _by_id(list_items("hdtf", str(root)))
    assert sorted(items) == ["hdtf/RD_Radio11_001", "hdtf/RD_Radio24", "hdtf/WDA_AdamSchiff_000",
                             "hdtf/WDA_AmyKlobuchar0_000", "hdtf/WRA_AdamKinzinger2_000", "hdtf/WRA_AdamKinzinger2_001",
                             "hdtf/WRA_AdamKinzinger2_002", "hdtf/WRA_KevinMcCarthy1_000", "hdtf/WRA_KevinMcCarthy1_001"]
    clip = items["hdtf/WRA_AdamKinzinger2_001"]  # the clip file wins over the raw window of the same interval
    assert clip.uri == str(root / "clips/WRA_AdamKinzinger2_001.mp4") and clip.speaker_id == "WRA_AdamKinzinger"
    assert (clip.start_s, clip.end_s, clip.box) == (None, None, None)
    assert clip.meta == {"subset": "WRA", "video_name": "AdamKinzinger2", "clip_index": 1, "resolution": 720,
                         "url": "https://www.youtube.com/watch?v=xObrQqUkBSo", "source_start_s": 120.0,
                         "source_end_s": 160.0, "crop_xywh": [416, 498, 12, 498], "crop_ratio": 1.2}
    window = items["hdtf/WRA_AdamKinzinger2_002"]
    assert window.uri == str(root / "_videos_raw/WRA_AdamKinzinger2.mp4")
    assert (window.start_s, window.end_s, window.box) == (210.0, 230.0, None)
    assert window.meta["crop_xywh"] == [396, 465, 32, 465]
    mccarthy = items["hdtf/WRA_KevinMcCarthy1_001"]
    assert (mccarthy.start_s, mccarthy.end_s, mccarthy.speaker_id) == (65.0, 80.0, "WRA_KevinMcCarthy")
    assert "resolution" not in mccarthy.meta  # the files say 0
    official = items["hdtf/RD_Radio11_001"]
    assert official.speaker_id == "RD_Radio11" and official.meta["crop_xywh"] == [557, 478, 0, 478]
    schiff = items["hdtf/WDA_AdamSchiff_000"]
    assert (schiff.start_s, schiff.end_s, schiff.speaker_id) == (5.0, 280.0, "WDA_AdamSchiff")
    assert items["hdtf/WDA_AmyKlobuchar0_000"].speaker_id == "WDA_AmyKlobuchar"
    radio24 = items["hdtf/RD_Radio24"]
    assert (radio24.start_s, radio24.end_s, radio24.meta["annotated"]) == (None, None, False)
    assert "skipped 1 videos whose subset neither a folder name nor the annotation files tell (e.g. misc/holiday.mp4)" in caplog.text
    assert "kept 1 raw videos without annotated intervals" in caplog.text


@pytest.mark.realdata
def test_hdtf_raw_video_needs_a_subset(tmp_path, videos):
    _link(tmp_path, "videos/AdamSchiff.mp4", videos[0])  # no annotation files, no subset folder
    with pytest.raises(SourceLayoutError, match=r"hdtf: no video found.*<RD\|WDA\|WRA>_<Name>_<NNN>\.mp4"):
        list_items("hdtf", str(tmp_path))


# ------------------------------------------------------------------------------------------ registry
def test_registry_names_and_unknown_source(tmp_path):
    assert sorted(SOURCES) == ["celebvhq", "folder", "hdtf", "vfhq", "voxceleb2"]
    with pytest.raises(SourceLayoutError, match=r"unknown source 'lrs3'.*celebvhq, folder, hdtf, vfhq, voxceleb2"):
        list_items("lrs3", str(tmp_path))


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_empty_tree_is_a_layout_error(tmp_path, source):
    with pytest.raises(SourceLayoutError, match="(?s)Expected layout.*found no"):
        list_items(source, str(tmp_path))


@pytest.mark.parametrize("source", ["voxceleb2", "vfhq", "hdtf"])
@pytest.mark.realdata
def test_a_plain_folder_of_videos_is_not_a_corpus(tmp_path, videos, source):
    build_folder(tmp_path, videos)
    with pytest.raises(SourceLayoutError, match=r"Expected layout.*found 4 files.*3 videos.*alice/a\.mp4"):
        list_items(source, str(tmp_path))


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.realdata
def test_file_uri_root_gives_the_same_items(tmp_path, videos, shared_data, source):
    root = _tree(source, tmp_path, videos, shared_data)
    local = list_items(source, str(root))
    remote = list_items(source, root.as_uri())
    assert local and [i.item_id for i in local] == sorted(i.item_id for i in local)
    assert [i.uri for i in remote] == ["file://" + i.uri for i in local]
    strip = [SourceItem(**{**vars(i), "uri": i.uri[len("file://"):]}) for i in remote]
    assert strip == local
    explicit = list_items(source, str(root), filesystem=pafs.LocalFileSystem())
    assert explicit == local
    for item in local:  # every item travels as JSON and is a real video
        assert SourceItem.from_json(item.to_json()) == item
        assert Path(item.uri).is_file() and Path(item.uri).resolve() in videos
        assert item.item_id.startswith(f"{source}/") and sanitize_id(item.item_id) == item.item_id


@pytest.mark.realdata
def test_a_filesystem_object_is_used_for_listing_and_metadata(tmp_path, videos, shared_data):
    (tmp_path / "corpus").mkdir()
    root = build_voxceleb2(tmp_path / "corpus", videos, shared_data)
    subtree = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    items = _by_id(list_items("voxceleb2", "corpus", filesystem=subtree))
    local = _by_id(list_items("voxceleb2", str(root)))
    assert list(items) == list(local)
    tracked = items["voxceleb2/id00012/_raOc3-IRsw/00002"]
    assert tracked.uri == "corpus/dev/mp4/id00012/_raOc3-IRsw/00002.mp4"  # the path inside that filesystem
    assert tracked.meta == local["voxceleb2/id00012/_raOc3-IRsw/00002"].meta and tracked.meta["av_offset"] == 2
    whole = list_items("folder", "/", filesystem=subtree)  # the filesystem's own root
    assert whole[0].item_id == "folder/corpus/dev/mp4/id00012/21Uxsk56VDQ/00001" and whole[0].speaker_id == "corpus"


@pytest.mark.realdata
def test_hdtf_accepts_the_corrected_spelling_and_names_a_malformed_file(tmp_path, videos):
    _link(tmp_path, "WDA/AdamSchiff.mp4", videos[0])
    _write(tmp_path, "meta/WDA_annotation_time.txt", "AdamSchiff.mp4 00:05-01:00 1:02:03-1:02:13\r\n")
    items = list_items("hdtf", str(tmp_path))
    assert [(i.item_id, i.start_s, i.end_s) for i in items] == [
        ("hdtf/WDA_AdamSchiff_000", 5.0, 60.0), ("hdtf/WDA_AdamSchiff_001", 3723.0, 3733.0)]
    _write(tmp_path, "meta/WDA_crop_wh.txt", "AdamSchiff.mp4 1 2 3 4\n")  # no clip index
    with pytest.raises(SourceLayoutError, match=r"WDA_crop_wh\.txt is malformed"):
        list_items("hdtf", str(tmp_path))
