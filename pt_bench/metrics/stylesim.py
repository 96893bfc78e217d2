"""StyleSim: cosine similarity of the speaking-style vectors of a generated video and its reference.

PersonaTalk's persona metric (PAPER.md, section 4.2): a pretrained speaking-style encoder applied to the
expression-only vertices of both videos. Pinned protocol:

- landmarks: the benchmark's MediaPipe face mesh (IMAGE mode, full frames; :meth:`BenchVideo.landmarks`,
  shared with LMD and CSIM and cached by the runner), mapped into each video's OWN 256x256 face crop
  (:func:`pt_bench.video.face_crop_transforms`, the curation's crop framing), frames without a face
  interpolated by the fit;
- fit: :func:`pt_data.fitting.fit_clips` (hybrid 3DMM fit, default :class:`FitConfig`) of the whole video as
  one clip with the default face model (``$PT_FACE_MODEL`` or the ICT light face), giving expression
  coefficients per frame; identity and pose are discarded;
- time: the first ``min(T_pred, T_ref)`` frames, resampled to 25 fps (linear interpolation of the
  coefficients) when the video has another rate;
- style vector: :meth:`pt_bench.style_encoder.StyleEncoder.embed_sequence` (mean of the unit embeddings of
  windows with hop window/2, re-normalised) of the registry file ``style-encoder``, trained by
  ``pt train style``; the file must have been trained on expressions of the same face model;
- value: cosine of the two style vectors (1 = the same speaking style).

The landmarks come from the benchmark's full-frame detector, not from the curation's tracked loose crops, so
that the metric needs neither a file path nor an audio track and costs only the fit once the other metrics
have detected the landmarks.

:meth:`StyleSim.features` gives one video's style vector (for the t-SNE figure); :func:`save_style_embeddings`
writes a set of them in the format :func:`pt_bench.figures.load_style_embeddings` reads.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from pt_data.crop import apply_affine_points
from pt_data.face_model import FaceModel
from pt_data.fit_config import FitConfig
from pt_data.shard_schema import FPS

from pt_bench.metrics.base import Metric, MetricResult, paired_length
from pt_bench.video import BenchVideo, NoFaceError, face_crop_transforms

WEIGHTS_NAME = "style-encoder"


def resample_sequence(values: np.ndarray, fps: float, target_fps: float = FPS) -> np.ndarray:
    """``(T', ...)`` values of a ``(T, ...)`` sequence at ``fps`` re-timed to ``target_fps`` by linear
    interpolation (frame ``i`` is the instant ``i / fps``); unchanged when the rates agree."""
    values = np.asarray(values)
    if abs(fps - target_fps) < 1e-6 or len(values) < 2:
        return values
    t_in = np.arange(len(values)) / fps
    n_out = max(int(np.floor(t_in[-1] * target_fps + 1e-9)) + 1, 1)
    t_out = np.arange(n_out) / target_fps
    flat = values.reshape(len(values), -1).astype(np.float64)
    out = np.stack([np.interp(t_out, t_in, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    return out.reshape((n_out,) + values.shape[1:]).astype(values.dtype)


def fit_video_expressions(video: BenchVideo, face_model: FaceModel, fit: FitConfig | None = None) -> np.ndarray:
    """``(T, E)`` expression coefficients of every frame of ``video`` at its own frame rate (see the module doc).

    Raises :class:`NoFaceError` when no frame has a face.
    """
    from pt_data.fitting import fit_clips  # noqa: PLC0415 - torch

    landmarks = video.landmarks()
    if np.isnan(landmarks).any(axis=(1, 2)).all():
        raise NoFaceError(f"{video.name}: MediaPipe found no face in any of its {video.num_frames} frames")
    crop_points = apply_affine_points(face_crop_transforms(video), landmarks)  # NaN frames stay NaN
    return fit_clips([crop_points], face_model, fit or FitConfig())[0].expression


class StyleSim(Metric):
    """StyleSim (see the module doc). Options: ``face_model`` (a :class:`FaceModel` or a converted model
    ``.npz``; default ``$PT_FACE_MODEL`` or the ICT light face), ``fit`` (a :class:`FitConfig`) and
    ``random_config`` (the encoder sizes of a ``random_weights`` encoder; default the paper preset's)."""

    name = "stylesim"
    higher_is_better = True
    region = "expression-only vertices (lower face + subsampled upper face) of the fitted 3DMM"
    weights = (WEIGHTS_NAME,)
    extra_columns = ("stylesim_frames",)

    def __init__(self, *, face_model: str | os.PathLike | FaceModel | None = None, fit: FitConfig | None = None,
                 random_config=None, **kwargs) -> None:
        super().__init__(**kwargs)
        from pt_data.face_model_convert import default_face_model  # noqa: PLC0415

        from pt_bench.style_encoder import (StyleEncoderConfig, build_style_encoder,  # noqa: PLC0415 - torch
                                            load_style_encoder)

        path = None if self.random_weights else self.registry.path(WEIGHTS_NAME)  # MissingWeightsError first
        self.face_model = face_model if isinstance(face_model, FaceModel) else default_face_model(face_model)
        self.fit = fit or FitConfig(device="cuda" if self.device.startswith("cuda") else "cpu")
        if path is None:
            self.encoder = build_style_encoder(random_config or StyleEncoderConfig(), self.face_model, seed=self.seed)
        else:
            self.encoder = load_style_encoder(path, face_model_id=self.face_model.model_id).model
        self.encoder = self.encoder.to(self.device).eval()
        self.protocol = ("StyleSim: cosine of speaking-style vectors (style encoder of `pt train style`, mean of "
                         f"{self.encoder.config.window}-frame window embeddings) of the expression coefficients "
                         f"of a hybrid 3DMM fit ({self.face_model.model_id}) to MediaPipe landmarks (IMAGE mode) in "
                         "each video's own 256 face crop; first min(T) frames at 25 fps")

    def cache_key(self) -> str:
        """The base key plus the face model and fit settings (the expressions depend on both)."""
        fit = hashlib.sha1(json.dumps(self.fit.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{super().cache_key()}/{self.face_model.model_id}/fit-{fit}"

    def expressions(self, video: BenchVideo) -> np.ndarray:
        """``(T, E)`` fitted expressions of the whole video at its own rate (memoised on the video)."""
        key = f"stylesim-expressions:{self.cache_key()}"
        return video.memo(key, lambda: fit_video_expressions(video, self.face_model, self.fit))

    def style_vector(self, video: BenchVideo, num_frames: int | None = None) -> tuple[np.ndarray, int]:
        """The unit style vector of the first ``num_frames`` frames (all when None), and how many 25 fps frames
        it was computed from."""
        n = video.num_frames if num_frames is None else min(num_frames, video.num_frames)

        def compute() -> tuple[np.ndarray, int]:
            expr = resample_sequence(self.expressions(video)[:n], video.fps, FPS)
            if len(expr) < 2:
                raise NoFaceError(f"StyleSim of {video.name}: {len(expr)} frame(s) at {FPS} fps; need at least 2")
            return self.encoder.embed_sequence(expr).astype(np.float64), len(expr)

        return video.memo(f"stylesim:{self.cache_key()}:{n}", compute)

    def evaluate(self, pred: BenchVideo, ref: BenchVideo) -> MetricResult:
        n = paired_length(pred, ref)
        (p, frames), (r, _) = self.style_vector(pred, n), self.style_vector(ref, n)
        cos = float(np.clip(p @ r / max(np.linalg.norm(p) * np.linalg.norm(r), 1e-12), -1.0, 1.0))
        return MetricResult(cos, {"stylesim_frames": float(frames)})

    def features(self, video: BenchVideo, ref: BenchVideo | None = None) -> np.ndarray:
        """The ``(D,)`` unit style vector of the whole ``video`` (``ref`` unused): what the t-SNE shows."""
        return self.style_vector(video)[0].astype(np.float32)


def save_style_embeddings(path: str | os.PathLike, embeddings: np.ndarray | Sequence[np.ndarray],
                          speakers: Sequence[str], kinds: Sequence[str], *, names: Sequence[str] | None = None,
                          real_weights: bool = True) -> Path:
    """Write the t-SNE input of :func:`pt_bench.figures.report_figures` (``STYLE_EMBEDDINGS_FILE`` in a bench
    folder): ``embeddings`` (N, D), ``speakers`` (N,), ``kinds`` (N,) ("original" / "dubbed"), and optionally
    the video ``names`` and whether the encoder had real weights (plain arrays, no pickle)."""
    emb = np.asarray(np.stack(list(embeddings)) if not isinstance(embeddings, np.ndarray) else embeddings,
                     np.float32)
    if emb.ndim != 2 or not len(emb) == len(speakers) == len(kinds):
        raise ValueError(f"{emb.shape} embeddings for {len(speakers)} speakers and {len(kinds)} kinds")
    arrays = {"embeddings": emb, "speakers": np.asarray(speakers, dtype=str), "kinds": np.asarray(kinds, dtype=str),
              "real_weights": np.bool_(real_weights)}
    if names is not None:
        arrays["names"] = np.asarray(names, dtype=str)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


__all__ = ["StyleSim", "fit_video_expressions", "resample_sequence", "save_style_embeddings", "WEIGHTS_NAME"]
