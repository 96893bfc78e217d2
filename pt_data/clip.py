"""`Clip`: one curated clip in memory, and its conversion to and from a shard row."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from pt_data.shard_schema import FPS, NUM_LANDMARKS, POSE_DIM, SAMPLES_PER_FRAME


class ClipValidationError(ValueError):
    """A clip violates the shard contract (frame count, array shapes, audio length)."""


def _as_f32(a: Any | None) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.float32)


@dataclass
class Clip:
    """One face track of one speaker, 25 fps, as stored in a clip shard (schema v1).

    Arrays use their natural shapes here; they are flattened only inside the Parquet file.
    ``frames`` holds JPEG bytes of 256x256 RGB crops; ``audio`` 16 kHz mono int16 samples.
    """

    clip_id: str
    dataset: str
    speaker_id: str
    source_uri: str
    start_s: float
    end_s: float
    frames: list[bytes]
    audio: np.ndarray
    crop_affine: np.ndarray
    landmarks: np.ndarray
    fps: float = FPS
    face_model_id: str | None = None
    shape: np.ndarray | None = None
    expression: np.ndarray | None = None
    pose: np.ndarray | None = None
    fit_landmark_error_px: float | None = None
    fit_jitter: float | None = None
    iqa_score: float | None = None
    iqa_frame_scores: np.ndarray | None = None
    iqa_model: str | None = None
    sync_offset: int | None = None
    sync_conf: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def validate(self) -> "Clip":
        """Check the contract; raise :class:`ClipValidationError` naming the clip and the problem."""
        t = self.num_frames
        problems = []
        if not self.clip_id:
            problems.append("empty clip_id")
        if t == 0:
            problems.append("no frames")
        if abs(self.fps - FPS) > 1e-6:
            problems.append(f"fps {self.fps}, the contract is {FPS}")
        audio = np.asarray(self.audio)
        if audio.dtype != np.int16 or audio.ndim != 1:
            problems.append(f"audio must be 1-D int16, got {audio.dtype} {audio.shape}")
        elif abs(len(audio) - t * SAMPLES_PER_FRAME) > SAMPLES_PER_FRAME:
            problems.append(f"{len(audio)} audio samples for {t} frames (want {t * SAMPLES_PER_FRAME} +- 640)")
        expect = {
            "crop_affine": (t, 2, 3),
            "landmarks": (t, NUM_LANDMARKS, 2),
            "pose": (t, POSE_DIM),
            "iqa_frame_scores": (t,),
        }
        for name, shp in expect.items():
            v = getattr(self, name)
            if v is not None and np.shape(v) != shp:
                problems.append(f"{name} has shape {np.shape(v)}, want {shp}")
        if self.expression is not None and (np.ndim(self.expression) != 2 or len(self.expression) != t):
            problems.append(f"expression has shape {np.shape(self.expression)}, want ({t}, E)")
        if self.shape is not None and np.ndim(self.shape) != 1:
            problems.append(f"shape (identity) has shape {np.shape(self.shape)}, want (S,)")
        if problems:
            raise ClipValidationError(f"clip {self.clip_id!r}: " + "; ".join(problems))
        return self

    def to_row(self) -> dict[str, Any]:
        """The Parquet row of this clip (validated first)."""
        self.validate()

        def flat(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(a, dtype=np.float32).reshape(-1)

        audio = np.ascontiguousarray(self.audio, dtype="<i2")
        return {
            "clip_id": self.clip_id,
            "dataset": self.dataset,
            "speaker_id": self.speaker_id,
            "source_uri": self.source_uri,
            "start_s": float(self.start_s),
            "end_s": float(self.end_s),
            "fps": float(self.fps),
            "num_frames": self.num_frames,
            "frames": list(self.frames),
            "audio_pcm16": audio.tobytes(),
            "audio_num_samples": int(audio.shape[0]),
            "crop_affine": flat(self.crop_affine),
            "landmarks": flat(self.landmarks),
            "face_model_id": self.face_model_id,
            "shape": flat(self.shape),
            "expression": flat(self.expression),
            "pose": flat(self.pose),
            "fit_landmark_error_px": self.fit_landmark_error_px,
            "fit_jitter": self.fit_jitter,
            "iqa_score": self.iqa_score,
            "iqa_frame_scores": flat(self.iqa_frame_scores),
            "iqa_model": self.iqa_model,
            "sync_offset": self.sync_offset,
            "sync_conf": self.sync_conf,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Clip":
        """Rebuild a clip from a row dict (as given by :func:`pt_data.shards.iter_clip_rows`)."""
        t = int(row["num_frames"])

        def shaped(name: str, shp: tuple[int, ...]) -> np.ndarray | None:
            v = row.get(name)
            return None if v is None else _as_f32(v).reshape(shp)

        known = {f.name for f in fields(cls)} | {"num_frames", "audio_pcm16", "audio_num_samples"}
        expr = row.get("expression")
        return cls(
            clip_id=row["clip_id"],
            dataset=row["dataset"],
            speaker_id=row["speaker_id"],
            source_uri=row["source_uri"],
            start_s=float(row["start_s"]),
            end_s=float(row["end_s"]),
            fps=float(row["fps"]),
            frames=list(row["frames"]),
            audio=np.frombuffer(row["audio_pcm16"], dtype="<i2").astype(np.int16),
            crop_affine=shaped("crop_affine", (t, 2, 3)),
            landmarks=shaped("landmarks", (t, NUM_LANDMARKS, 2)),
            face_model_id=row.get("face_model_id"),
            shape=_as_f32(row.get("shape")),
            expression=None if expr is None else _as_f32(expr).reshape(t, -1),
            pose=shaped("pose", (t, POSE_DIM)),
            fit_landmark_error_px=row.get("fit_landmark_error_px"),
            fit_jitter=row.get("fit_jitter"),
            iqa_score=row.get("iqa_score"),
            iqa_frame_scores=shaped("iqa_frame_scores", (t,)),
            iqa_model=row.get("iqa_model"),
            sync_offset=row.get("sync_offset"),
            sync_conf=row.get("sync_conf"),
            extra={k: v for k, v in row.items() if k not in known},
        )
