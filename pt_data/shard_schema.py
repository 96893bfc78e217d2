"""The clip-shard contract, schema version 1 (see DESIGN.md "The data contract").

One Parquet row holds one clip: one face track of one speaker at 25 fps. Per-frame arrays are stored
flattened (row-major) in ``list<float32>`` columns; their shapes follow from ``num_frames`` and are
recorded in each field's metadata (``shape``), e.g. ``landmarks`` is ``(num_frames, 478, 2)``.

The schema version is written into every file's key-value metadata under :data:`SCHEMA_VERSION_KEY`
and into ``manifest.json``; readers refuse files of another version with an error naming both.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = b"pt.schema_version"
SCHEMA_NAME_KEY = b"pt.schema"
SCHEMA_NAME = b"personatalk.clip"

FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
CROP_SIZE = 256
NUM_LANDMARKS = 478
POSE_DIM = 6


def _field(name: str, type_: pa.DataType, nullable: bool, doc: str, shape: str = "") -> pa.Field:
    meta = {b"doc": doc.encode()}
    if shape:
        meta[b"shape"] = shape.encode()
    return pa.field(name, type_, nullable=nullable, metadata=meta)


def clip_schema(version: int = SCHEMA_VERSION) -> pa.Schema:
    """The Arrow schema of a clip shard of ``version`` (only version 1 exists so far)."""
    if version != 1:
        raise ValueError(f"no clip schema of version {version}; this toolkit knows version 1")
    f32 = pa.list_(pa.float32())
    fields = [
        # ids
        _field("clip_id", pa.string(), False, "unique, stable id: source + path + segment"),
        _field("dataset", pa.string(), False, "source corpus: voxceleb2, celebvhq, vfhq, hdtf, folder, sample"),
        _field("speaker_id", pa.string(), False, "speaker identity within the dataset"),
        _field("source_uri", pa.string(), False, "the raw video this clip was cut from"),
        _field("start_s", pa.float64(), False, "clip start in the source video, seconds"),
        _field("end_s", pa.float64(), False, "clip end in the source video, seconds"),
        _field("fps", pa.float32(), False, "frames per second (always 25)"),
        _field("num_frames", pa.int32(), False, "T, the number of frames"),
        # pixels
        _field("frames", pa.list_(pa.binary()), False, "JPEG-encoded 256x256 RGB face crops", "(T,)"),
        # audio
        _field("audio_pcm16", pa.binary(), False, "16 kHz mono little-endian int16, aligned with frame 0"),
        _field("audio_num_samples", pa.int64(), False, "number of int16 samples in audio_pcm16"),
        # geometry
        _field("crop_affine", f32, False, "2x3 affine mapping source pixels to crop pixels", "(T,2,3)"),
        _field("landmarks", f32, False, "MediaPipe face mesh points in crop pixels", "(T,478,2)"),
        _field("face_model_id", pa.string(), True, "morphable model name:hash used for the fit"),
        _field("shape", f32, True, "identity coefficients, one vector per clip", "(S,)"),
        _field("expression", f32, True, "expression coefficients per frame", "(T,E)"),
        _field("pose", f32, True, "rotation (axis-angle, 3) + translation (3) per frame", "(T,6)"),
        _field("fit_landmark_error_px", pa.float32(), True, "mean landmark reprojection error at 256 px"),
        _field("fit_jitter", pa.float32(), True, "mean vertex acceleration of the fit"),
        # quality
        _field("iqa_score", pa.float32(), True, "clip image-quality score (0..100)"),
        _field("iqa_frame_scores", f32, True, "per-frame image-quality scores", "(T,)"),
        _field("iqa_model", pa.string(), True, "name of the image-quality model"),
        _field("sync_offset", pa.int32(), True, "audio-visual offset in frames (SyncNet)"),
        _field("sync_conf", pa.float32(), True, "SyncNet confidence"),
    ]
    meta = {SCHEMA_NAME_KEY: SCHEMA_NAME, SCHEMA_VERSION_KEY: str(version).encode()}
    return pa.schema(fields, metadata=meta)


#: Columns that every reader may rely on (the acceptance checks read these names).
REQUIRED_COLUMNS = ("clip_id", "frames", "fps", "num_frames", "audio_pcm16", "landmarks")
#: Large binary columns: stored without dictionary encoding or compression.
BINARY_COLUMNS = ("frames", "audio_pcm16")
