"""Fit one video end to end: face tracks and crops (the curation blocks), hybrid 3DMM fit, overlay video.

:func:`fit_video` is the API under ``pt fit``; ``pt dub`` uses :func:`extract_and_fit` for its reference.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pt_data.clip import Clip
from pt_data.extract import ClipExtractor, ClipSource, ExtractConfig, ExtractionError
from pt_data.face_model import FaceModel
from pt_data.fit_config import CAMERA_CONVENTION, FitConfig
from pt_data.jpeg import decode_frames
from pt_data.shard_schema import FPS
from pt_data.video_io import write_video


class FitVideoError(RuntimeError):
    """The video cannot be fitted (unreadable, no face track); the message says why."""


@dataclass
class FitVideoConfig:
    """What ``pt fit`` does."""

    extract: ExtractConfig = field(default_factory=ExtractConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    face_model: str | None = None  # converted model path; None: $PT_FACE_MODEL or the ICT default
    overlay: bool = True  # write the overlay video (crop | PNCC blended on the crop)
    overlay_alpha: float = 0.45


@dataclass
class ClipFit:
    """A clip with its fit (shape, expression, pose filled in)."""

    clip: Clip
    landmark_error_px: float
    jitter: float


@dataclass
class FitVideoReport:
    """What :func:`fit_video` wrote and measured."""

    video: str
    face_model_id: str
    clips: list[dict]
    files: list[str]

    def table(self) -> str:
        """A readable per-clip table."""
        lines = [f"{'clip':40s} {'frames':>6s} {'lmk err px':>10s} {'jitter mm/f2':>12s}"]
        for c in self.clips:
            lines.append(f"{c['clip_id']:40s} {c['num_frames']:6d} {c['landmark_error_px']:10.2f} {c['jitter']:12.3f}")
        return "\n".join(lines)


def extract_and_fit(video: str | os.PathLike, model: FaceModel, extract: ExtractConfig | None = None,
                    fit: FitConfig | None = None) -> list[ClipFit]:
    """Face-track clips of ``video`` (25 fps, 256 crops, landmarks) with their hybrid fit, all clips batched."""
    from pt_data.fitting import fit_clips  # noqa: PLC0415 - torch

    path = str(video)
    if not os.path.isfile(path):
        raise FitVideoError(f"no such file: {path}")
    stem = Path(path).stem
    try:
        res = ClipExtractor(extract or ExtractConfig()).extract(ClipSource(path, stem, "video", stem, path))
    except ExtractionError as e:
        raise FitVideoError(f"{path}: cannot read the video ({e.stage}: {e.reason})") from e
    if not res.clips:
        raise FitVideoError(f"{path}: no usable face track ({res.reason_if_empty()}); the video needs one "
                            f"clearly visible face for at least a second")
    fits = fit_clips([c.landmarks for c in res.clips], model, fit)
    out = []
    for c, f in zip(res.clips, fits):
        c.face_model_id, c.shape, c.expression, c.pose = model.model_id, f.shape, f.expression, f.pose
        c.fit_landmark_error_px, c.fit_jitter = f.landmark_error_px, f.jitter
        out.append(ClipFit(c, f.landmark_error_px, f.jitter))
    return out


def overlay_frames(model: FaceModel, clip: Clip, alpha: float = 0.45, batch: int = 32, renderer=None) -> np.ndarray:
    """(T, 256, 512, 3) uint8: the crop beside the crop with the fitted PNCC blended on it.

    ``renderer``: a :class:`~pt_data.render.PNCCRenderer` of ``model`` to reuse across clips (default: a new one).
    """
    import torch  # noqa: PLC0415

    from pt_data.render import PNCCRenderer, overlay  # noqa: PLC0415

    renderer = renderer or PNCCRenderer(model)
    frames = decode_frames(clip.frames)
    out = np.empty((len(frames), frames.shape[1], frames.shape[2] * 2, 3), np.uint8)
    for s in range(0, len(frames), batch):
        sl = slice(s, s + batch)
        n = len(frames[sl])
        with torch.no_grad():
            r = renderer.render(torch.as_tensor(np.repeat(clip.shape[None], n, 0)), torch.as_tensor(clip.expression[sl]),
                                torch.as_tensor(clip.pose[sl]))
        for i in range(n):
            out[s + i, :, : frames.shape[2]] = frames[s + i]
            out[s + i, :, frames.shape[2]:] = overlay(frames[s + i], r.pncc[i], r.mask[i], alpha)
    return out


def fit_video(video: str | os.PathLike, out_dir: str | os.PathLike, config: FitVideoConfig | None = None,
              model: FaceModel | None = None) -> FitVideoReport:
    """Fit ``video`` and write ``<stem>_fit.npz`` (coefficients per clip), ``<stem>_fit.json`` (summary) and,
    when asked, ``<stem>_overlay.mp4`` (crop | PNCC overlay, with the clip audio) into ``out_dir``."""
    from pt_data.face_model_convert import default_face_model  # noqa: PLC0415

    cfg = config or FitVideoConfig()
    model = model or default_face_model(cfg.face_model)
    fits = extract_and_fit(video, model, cfg.extract, cfg.fit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(video).stem
    arrays: dict[str, np.ndarray] = {}
    clips = []
    for i, f in enumerate(fits):
        c = f.clip
        for name in ("shape", "expression", "pose", "landmarks", "crop_affine"):
            arrays[f"clip{i}_{name}"] = np.asarray(getattr(c, name), np.float32)
        clips.append({"index": i, "clip_id": c.clip_id, "start_s": c.start_s, "end_s": c.end_s,
                      "num_frames": c.num_frames, "landmark_error_px": round(f.landmark_error_px, 4),
                      "jitter": round(f.jitter, 5)})
    npz = out / f"{stem}_fit.npz"
    np.savez(npz, face_model_id=np.str_(model.model_id), num_clips=np.int64(len(fits)), **arrays)
    files = [str(npz)]
    if cfg.overlay:
        from pt_data.render import PNCCRenderer  # noqa: PLC0415 - torch

        renderer = PNCCRenderer(model)
        frames = np.concatenate([overlay_frames(model, f.clip, cfg.overlay_alpha, renderer=renderer) for f in fits])
        audio = np.concatenate([np.asarray(f.clip.audio) for f in fits])
        mp4 = out / f"{stem}_overlay.mp4"
        write_video(str(mp4), frames, fps=FPS, audio=audio)
        files.append(str(mp4))
    summary = {"video": str(video), "face_model_id": model.model_id, "camera": CAMERA_CONVENTION,
               "fit": cfg.fit.to_dict(), "clips": clips,
               "arrays": "clip{i}_shape (S,), clip{i}_expression (T,E), clip{i}_pose (T,6), clip{i}_landmarks "
                         "(T,478,2) crop px, clip{i}_crop_affine (T,2,3) source px -> crop px"}
    js = out / f"{stem}_fit.json"
    js.write_text(json.dumps(summary, indent=2) + "\n")
    files.append(str(js))
    return FitVideoReport(video=str(video), face_model_id=model.model_id, clips=clips, files=files)
