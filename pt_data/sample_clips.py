"""Short talking-head sample clips made from a real face photo, for tests and the demo.

Used when ``../shared/data`` is absent. The face is a real photograph shipped inside a dependency
(scikit-image's ``astronaut``, Eileen Collins, public domain; or insightface's ``Tom_Hanks_54745.png``),
the speech comes from espeak-ng (or a synthetic voice-like signal when espeak-ng is missing), the jaw
drops and the mouth opens with the speech energy, and the head moves a little. 25 fps, 16 kHz mono.

Because the generator knows the head motion, every sample carries the exact face-crop transform per frame
(``crop_affine``), which :func:`sample_to_clip` uses to turn a sample into a shard :class:`~pt_data.clip.Clip`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pt_data.audio import float_to_pcm16, frame_energy, resample_audio
from pt_data.clip import Clip
from pt_data.crop import apply_affine_points, invert_affines
from pt_data.jpeg import encode_jpeg
from pt_data.landmarks import (LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT, UPPER_INNER_LIP, FaceMeshConfig,
                               FaceMeshDetector, detect_video_landmarks)
from pt_data.shard_schema import CROP_SIZE, FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from pt_data.video_io import iter_video_frames, read_audio, write_video

SENTENCES = (
    "The quick brown fox jumps over the lazy dog, and then it rests in the warm afternoon sun.",
    "Please call me back tomorrow morning, because we still have a lot of work to finish.",
    "Every picture tells a story, but only a moving face can tell us how it was spoken.",
    "We measured the signal twice, and both times the numbers agreed with each other.",
)
VOICES = ("en-us", "en-gb", "en-us+m3", "en-gb+m2")
CHIN = 152


class SampleClipError(RuntimeError):
    """The sample face could not be prepared (for example MediaPipe finds no face in the photo)."""


@dataclass
class SampleClipConfig:
    """What one sample clip looks and sounds like."""

    text: str = SENTENCES[0]
    voice: str = VOICES[0]
    speech: str = "auto"  # "auto": espeak-ng when installed, else synthetic; "espeak" or "synthetic"
    face: str = "astronaut"  # "astronaut", "tom_hanks", or a path to a photo with one frontal face
    size: int = 512
    max_duration_s: float = 6.0
    mouth_open: float = 0.55  # largest inner-lip gap, as a fraction of the mouth width
    head_motion: float = 1.0  # 0 keeps the head still
    seed: int = 0


@dataclass
class SampleClip:
    """A written sample video with what the generator knows about it."""

    path: str
    speaker_id: str
    num_frames: int
    speech_source: str
    mouth_open: np.ndarray = field(repr=False)  # (T,) opening drive in [0, 1]
    crop_affine: np.ndarray = field(repr=False)  # (T, 2, 3) frame pixels -> 256 crop


# ------------------------------------------------------------------------------------------------ speech
def synthesize_speech(text: str, voice: str = "en-us", mode: str = "auto", seed: int = 0,
                      sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, str]:
    """Speech for ``text`` as float32 mono at ``sample_rate``, and its source ("espeak-ng"/"synthetic")."""
    exe = shutil.which("espeak-ng")
    if mode == "espeak" and exe is None:
        raise SampleClipError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    if mode != "synthetic" and exe is not None:
        import soundfile as sf

        with tempfile.TemporaryDirectory() as d:
            wav = os.path.join(d, "speech.wav")
            subprocess.run([exe, "-v", voice, "-s", "150", "-w", wav, text], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            x, sr = sf.read(wav, dtype="float32", always_2d=True)
        x = resample_audio(x.mean(axis=1), sr, sample_rate)
        return (0.9 * x / max(float(np.abs(x).max()), 1e-6)).astype(np.float32), "espeak-ng"
    return _synthetic_speech(len(text.split()), seed, sample_rate), "synthetic"


def _synthetic_speech(num_words: int, seed: int, sr: int) -> np.ndarray:
    """A voice-like signal: harmonic source with a moving pitch, syllable envelopes and pauses."""
    rng = np.random.default_rng(seed)
    pieces = [np.zeros(int(0.25 * sr), np.float32)]
    for _ in range(num_words):
        for _ in range(int(rng.integers(1, 3))):
            n = int(rng.uniform(0.12, 0.25) * sr)
            t = np.arange(n) / sr
            f0 = rng.uniform(100, 180) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
            phase = 2 * np.pi * np.cumsum(f0) / sr
            src = sum(np.sin(k * phase) / k for k in range(1, 12))
            env = np.sin(np.pi * np.arange(n) / n) ** 2
            pieces.append((src * env * rng.uniform(0.5, 1.0)).astype(np.float32))
        pieces.append(np.zeros(int(rng.uniform(0.04, 0.2) * sr), np.float32))
    x = np.concatenate(pieces)
    return (0.9 * x / np.abs(x).max()).astype(np.float32)


def mouth_drive(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """Per-frame mouth opening in [0, 1] from the speech energy (smoothed like a jaw would move)."""
    e = frame_energy(audio, num_frames)
    e = np.convolve(np.pad(e, 1, mode="edge"), np.array([0.25, 0.5, 0.25]), mode="valid")
    lo, hi = np.percentile(e, 20), np.percentile(e, 95)
    return np.clip((e - lo) / max(hi - lo, 1e-9), 0.0, 1.0)


# -------------------------------------------------------------------------------------------------- face
def load_face_photo(face: str) -> tuple[np.ndarray, str]:
    """An RGB photo of one face and a speaker id for it."""
    if face == "astronaut":
        from skimage import data

        return data.astronaut(), "astronaut"
    if face == "tom_hanks":
        import insightface

        p = Path(insightface.__file__).parent / "data" / "images" / "Tom_Hanks_54745.png"
        face = str(p)
    img = cv2.imread(face, cv2.IMREAD_COLOR)
    if img is None:
        raise SampleClipError(f"{face}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), Path(face).stem.lower()


def _face_landmarks(rgb: np.ndarray, what: str) -> np.ndarray:
    with FaceMeshDetector(FaceMeshConfig(video=False, max_num_faces=1)) as det:
        faces = det.detect(rgb)
    if not faces:
        raise SampleClipError(f"MediaPipe finds no face in the photo {what!r}")
    return faces[0][:, :2]


def _framed_portrait(photo: np.ndarray, size: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The photo cropped to a square around the face (face about 40 % of the side) at ``size`` px."""
    lm = _face_landmarks(photo, what)
    lo, hi = lm.min(0), lm.max(0)
    side = 2.4 * float((hi - lo).max())
    cx, cy = (lo + hi) / 2
    s = size / side
    m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], dtype=np.float64)
    img = cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return img, _face_landmarks(img, what)


# ------------------------------------------------------------------------------------------- animation
def _open_mouth(img: np.ndarray, lm: np.ndarray, open_px: float) -> np.ndarray:
    """Drop the jaw by ``open_px`` below the lip line and paint the mouth cavity in the gap."""
    if open_px < 0.5:
        return img
    h, w = img.shape[:2]
    y0 = float(lm[UPPER_INNER_LIP, 1] + lm[LOWER_INNER_LIP, 1]) / 2
    xl, xr = float(lm[MOUTH_LEFT, 0]), float(lm[MOUTH_RIGHT, 0])
    xc, mw = (xl + xr) / 2, xr - xl
    chin = float(lm[CHIN, 1])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    wx = np.clip(1 - ((xs - xc) / (1.1 * mw)) ** 2, 0, 1) ** 1.5
    below = 0.5 * (1 + np.tanh((ys - y0) / 1.4))  # a smooth step at the lip line
    fade = np.clip(1 - (ys - chin) / (0.6 * mw), 0, 1)
    dy = np.float32(open_px) * wx * below * fade
    map_y = (ys - dy).astype(np.float32)  # both maps must be float32 (mixed types hang OpenCV 5)
    out = cv2.remap(img, xs, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # the cavity: a dark, feathered ellipse between the lips
    mask = np.zeros((h, w), np.float32)
    axes = (max(int(0.36 * mw), 1), max(int(open_px / 2), 1))
    cv2.ellipse(mask, (int(round(xc)), int(round(y0 + open_px / 2))), axes, 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.2)[..., None]
    cavity = np.array([70, 25, 30], np.float32)
    return (out * (1 - mask) + cavity * mask).astype(np.uint8)


def _head_motion(num_frames: int, size: int, amount: float, seed: int) -> np.ndarray:
    """(T, 2, 3) small similarity transforms about the image centre: nods, turns, sway."""
    rng = np.random.default_rng(seed + 1)
    t = np.arange(num_frames) / FPS
    ph = rng.uniform(0, 2 * np.pi, 4)
    ang = amount * 2.5 * np.sin(2 * np.pi * 0.31 * t + ph[0])
    tx = amount * size / 512 * 6 * np.sin(2 * np.pi * 0.23 * t + ph[1])
    ty = amount * size / 512 * 4 * np.sin(2 * np.pi * 0.41 * t + ph[2])
    sc = 1 + amount * 0.015 * np.sin(2 * np.pi * 0.17 * t + ph[3])
    c = size / 2
    ms = []
    for a, x, y, s in zip(ang, tx, ty, sc):
        m = cv2.getRotationMatrix2D((c, c), float(a), float(s))
        m[:, 2] += (x, y)
        ms.append(m)
    return np.stack(ms)


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The affine ``a`` after ``b`` (both 2x3)."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def make_sample_clip(path: str | os.PathLike, config: SampleClipConfig | None = None) -> SampleClip:
    """Write one sample talking-head mp4 (H.264 + AAC, 25 fps, 16 kHz mono) and describe it."""
    cfg = config or SampleClipConfig()
    photo, speaker = load_face_photo(cfg.face)
    base, lm = _framed_portrait(photo, cfg.size, cfg.face)
    speech, source = synthesize_speech(cfg.text, cfg.voice, cfg.speech, cfg.seed)
    speech = np.concatenate([np.zeros(int(0.2 * SAMPLE_RATE), np.float32), speech])
    n = min(int(np.ceil(len(speech) / SAMPLES_PER_FRAME)) + 5, int(cfg.max_duration_s * FPS))
    audio = np.zeros(n * SAMPLES_PER_FRAME, np.float32)
    audio[:min(len(speech), len(audio))] = speech[:len(audio)]
    drive = mouth_drive(audio, n)
    mouth_w = float(np.linalg.norm(lm[MOUTH_RIGHT] - lm[MOUTH_LEFT]))
    motion = _head_motion(n, cfg.size, cfg.head_motion, cfg.seed)
    frames = []
    for i in range(n):
        img = _open_mouth(base, lm, cfg.mouth_open * mouth_w * drive[i])
        frames.append(cv2.warpAffine(img, motion[i], (cfg.size, cfg.size), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT))
    write_video(str(path), frames, FPS, audio, SAMPLE_RATE)
    # crop: a square around the face in the still portrait, followed back through the head motion
    lo, hi = lm.min(0), lm.max(0)
    side = 1.5 * float((hi - lo).max())
    cx, cy = (lo + hi) / 2
    s = CROP_SIZE / side
    crop = np.array([[s, 0, CROP_SIZE / 2 - s * cx], [0, s, CROP_SIZE / 2 - s * cy]])
    affines = np.stack([_compose(crop, m_inv) for m_inv in invert_affines(motion)]).astype(np.float32)
    return SampleClip(str(path), speaker, n, source, drive.astype(np.float32), affines)


def sample_configs(n: int = 3, *, seed: int = 0, speech: str = "auto", face: str = "astronaut"
                   ) -> list[SampleClipConfig]:
    """``n`` varied sample configurations: different sentences, voices, head motion."""
    return [SampleClipConfig(text=SENTENCES[i % len(SENTENCES)], voice=VOICES[i % len(VOICES)],
                             speech=speech, face=face, seed=seed + i) for i in range(n)]


def make_sample_clips(out_dir: str | os.PathLike, n: int = 3, *, seed: int = 0, speech: str = "auto",
                      face: str = "astronaut") -> list[SampleClip]:
    """Write ``n`` sample clips ``sample_XX.mp4`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [make_sample_clip(out / f"sample_{i:02d}.mp4", c)
            for i, c in enumerate(sample_configs(n, seed=seed, speech=speech, face=face))]


def sample_to_clip(sample: SampleClip, *, dataset: str = "sample") -> Clip:
    """Decode a sample video back and build its shard :class:`Clip` (256 crops, MediaPipe landmarks)."""
    frames = [f for _, f in iter_video_frames(sample.path)]
    if len(frames) != sample.num_frames:
        raise SampleClipError(f"{sample.path}: decoded {len(frames)} frames, wrote {sample.num_frames}")
    crops = [cv2.warpAffine(f, a, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
             for f, a in zip(frames, sample.crop_affine.astype(np.float64))]
    lm, counts = detect_video_landmarks(frames)
    if (counts == 0).any():
        raise SampleClipError(f"{sample.path}: no face in frames {np.flatnonzero(counts == 0).tolist()[:10]}")
    a = sample.crop_affine
    lm_crop = apply_affine_points(a, lm)
    audio = read_audio(sample.path)
    want = sample.num_frames * SAMPLES_PER_FRAME
    audio = np.pad(audio[:want], (0, max(0, want - len(audio))))
    digest = hashlib.sha1(f"{dataset}:{Path(sample.path).name}".encode()).hexdigest()[:12]
    return Clip(
        clip_id=f"{dataset}-{Path(sample.path).stem}-{digest}", dataset=dataset, speaker_id=sample.speaker_id,
        source_uri=str(sample.path), start_s=0.0, end_s=sample.num_frames / FPS,
        frames=[encode_jpeg(c) for c in crops], audio=audio.astype(np.int16),
        crop_affine=a.astype(np.float32), landmarks=lm_crop.astype(np.float32),
    ).validate()


__all__ = ["SampleClip", "SampleClipConfig", "SampleClipError", "make_sample_clip", "make_sample_clips",
           "sample_configs", "sample_to_clip", "synthesize_speech", "mouth_drive", "float_to_pcm16"]
