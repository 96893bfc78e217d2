"""Visual dubbing with a trained PersonaTalk (the Python API under ``pt dub``).

``dub(video, audio, out, checkpoint)``:

1. **Reference**: the video is decoded at 25 fps (:func:`pt_data.decode.iter_frames_at_fps`), MediaPipe's face
   mesh runs on every frame (the largest face; frames without a face get landmarks interpolated from their
   neighbours, a video without any face is a :class:`DubError`), the curation's smoothed 256 x 256 crop
   transforms are computed (:func:`pt_data.crop.crop_transforms`) and the crops cut, and the whole clip is
   fitted by the hybrid 3DMM fit (:func:`pt_data.fitting.fit_clips`): one identity, expressions and poses.
   The decoded frames stay in memory for paste-back (W x H x 3 bytes each: about 2 MB at 844 px, 0.3 GB for
   5 s, 1 GB per 20 s), which bounds the length of reference videos.
2. **Timeline**: the output has one frame per 40 ms of the new audio. When the audio is longer than the
   video, the reference is extended back and forth (0, 1, ..., T-1, T-2, ..., 1, 0, 1, ...), as peers do,
   so motion stays continuous; when it is shorter, the video is cut.
3. **Stage 1** turns the audio into target geometry: generated lower face + the reference frame's upper face
   (blinks, brows), with the speaker's style taken from the reference's expressions; the reference pose.
4. **Stage 2** renders each target face from the target PNCC and the reference frames chosen by
   Algorithm 1's inference strategy (:mod:`pt_model.references`): N_f face references around the source
   frame and N_l lip references spread over the reference's mouth openings (the same for every frame).
   Reference frames are encoded once; the lip references' keys and values are shared by all frames.
5. **Paste-back**: the rendered crop (upsampled to 256 when the model runs at a lower resolution) replaces
   the original where a soft mask says so: the visible surface of ``paste_region`` (default: the lower face)
   of the target and the source geometry, closed over the mouth opening, grown a little, feathered with a
   Gaussian and tapered to zero over 4 sigma before the crop border (:func:`soft_paste_mask`); the mask and
   crop are warped back into the full-resolution frame with the inverse crop transform (:func:`paste_back`),
   so outside the mask the original pixels are untouched and there is no seam.
6. **Output**: H.264 at the reference's size (odd sizes are padded by one pixel, which libx264 needs) and
   the new audio as AAC at its own sample rate (mono), written as frames are rendered.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
import torch
from tqdm import tqdm

from pt_data.audio import audio_for_frames, pcm16_to_float
from pt_data.crop import CropConfig, apply_affine_points, crop_frame, crop_transforms, invert_affines
from pt_data.decode import iter_frames_at_fps
from pt_data.face_model import FaceModel
from pt_data.face_model_convert import default_face_model
from pt_data.fitting import FitConfig, FitResult, fit_clips
from pt_data.landmarks import FaceMeshConfig, FaceMeshDetector
from pt_data.shard_schema import CROP_SIZE, FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from pt_data.video_io import MediaError, probe_video, read_audio, write_video
from pt_data.weights import default_weights_dir
from pt_model.references import SELECTION_MODES, ReferenceConfig, inference_references
from pt_model.stage1 import Stage1Model, canonical_mouth_opening
from pt_model.stage2 import Stage2Renderer
from pt_model.stage2_data import GeometryImages, frames_to_tensor

#: where ``pt dub`` looks for trained runs when no --checkpoint is given
DEFAULT_RUNS_SUBDIR = "personatalk"
PASTE_REGIONS = ("lower_face", "face")


class DubError(RuntimeError):
    """The inputs cannot be dubbed (unreadable file, no face, no trained model); the message says why."""


@dataclass
class DubConfig:
    """Options of :func:`dub`."""

    stage1: str | None = None  # stage-1 run folder; None: the one beside the stage-2 run
    device: str = "auto"
    batch_size: int = 8  # frames per stage-2 call
    num_face: int = 5  # N_f at inference
    num_lip: int = 25  # N_l at inference
    references: str = "algorithm1"  # or "random" (ablation)
    paste_region: str = "lower_face"
    paste_close: float = 0.12  # closing over the mouth opening, fraction of the crop side
    paste_grow: float = 0.03  # dilation of the region, fraction of the crop side
    feather: float = 0.035  # Gaussian sigma of the mask edge, fraction of the crop side
    colour_match: bool = True  # match the rendered face's colours to the reference crop before pasting
    stage1_window: int = 500  # output frames per stage-1 call (long audio is done in windows)
    style_frames: int = 250  # reference frames whose expressions give the speaking style
    crop: CropConfig = field(default_factory=CropConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    crf: int = 18
    progress: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.paste_region not in PASTE_REGIONS:
            raise ValueError(f"paste_region must be one of {PASTE_REGIONS}, got {self.paste_region!r}")
        if self.references not in SELECTION_MODES:
            raise ValueError(f"references must be one of {SELECTION_MODES}, got {self.references!r}")


@dataclass
class DubModels:
    """The trained (or, for tests, explicitly random) networks of a dub and where they came from."""

    stage1: Stage1Model
    stage1_context: int  # audio context frames each side the stage-1 model was trained with
    stage2: Stage2Renderer
    face_model: FaceModel
    stage1_run: str = ""
    stage2_run: str = ""
    random_weights: bool = False

    def to(self, device: torch.device) -> "DubModels":
        self.stage1.to(device).eval()
        self.stage2.to(device).eval()
        return self


@dataclass
class DubReport:
    """What a dub produced and how long each part took."""

    out: str
    num_frames: int
    fps: int
    duration_s: float
    audio_s: float
    reference_frames: int
    extended: bool  # the reference was played back and forth to cover the audio
    width: int
    height: int
    image_size: int  # the renderer's resolution (crops are 256)
    stage1_run: str
    stage2_run: str
    random_weights: bool
    frames_without_face: int
    fit_landmark_error_px: float
    timings: dict[str, float]
    frames_per_s: float  # end to end, output frames per second of wall time
    renderer_frames_per_s: float  # stage 2 alone
    realtime_factor: float  # seconds of output video per second of wall time (>= 1: faster than real time)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReferenceVideo:
    """A reference video prepared for dubbing: frames, crops, landmarks and the fit."""

    frames: list[np.ndarray]  # (H, W, 3) uint8 at 25 fps
    affines: np.ndarray  # (T, 2, 3) source pixels -> 256 crop
    crops: np.ndarray  # (T, 256, 256, 3) uint8
    landmarks: np.ndarray  # (T, 478, 2) crop pixels
    fit: FitResult
    frames_without_face: int


# --------------------------------------------------------------------------------------------- helpers
def pingpong_indices(num_out: int, num_src: int) -> np.ndarray:
    """Source frame of each output frame: 0..T-1, then back T-2..1, then forward again, ..."""
    if num_src < 1:
        raise ValueError("the reference has no frame")
    j = np.arange(num_out)
    if num_src == 1:
        return np.zeros(num_out, np.int64)
    period = 2 * (num_src - 1)
    k = j % period
    return np.where(k < num_src, k, period - k).astype(np.int64)


def fill_missing_landmarks(landmarks: np.ndarray) -> tuple[np.ndarray, int]:
    """Landmarks (T, K, 2) with NaN rows (no face) filled by linear interpolation over time (held at the
    ends); returns them and the number of filled frames. Raises :class:`DubError` when no frame has a face."""
    lm = np.asarray(landmarks, np.float32).copy()
    ok = np.isfinite(lm).all(axis=(1, 2))
    if not ok.any():
        raise DubError("no face found in any frame of the reference video")
    missing = int((~ok).sum())
    if missing:
        t = np.arange(len(lm))
        flat = lm.reshape(len(lm), -1)
        for c in range(flat.shape[1]):
            flat[~ok, c] = np.interp(t[~ok], t[ok], flat[ok, c])
        lm = flat.reshape(lm.shape)
    return lm, missing


def soft_paste_mask(region: np.ndarray, crop_size: int = CROP_SIZE, *, close: float = 0.12, grow: float = 0.03,
                    feather: float = 0.035) -> np.ndarray:
    """A (crop_size, crop_size) float32 blend mask in [0, 1] from a binary region at any resolution.

    The region is upsampled to the crop, closed (``close`` x side: the mouth opening joins the lips), dilated
    (``grow`` x side) and blurred with a Gaussian of ``feather`` x side; a smooth taper brings it to exactly
    0 at the crop border, so the pasted crop's edge never shows.
    """
    m = cv2.resize(np.asarray(region, np.float32), (crop_size, crop_size), interpolation=cv2.INTER_LINEAR)
    m = (m > 0.5).astype(np.uint8)
    kc = max(int(round(close * crop_size)) | 1, 1)
    if kc > 1:
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kc, kc)))
    kg = max(int(round(2 * grow * crop_size)) | 1, 1)
    if kg > 1:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kg, kg)))
    sigma = max(feather * crop_size, 0.5)
    soft = cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigma)
    margin = 4.0 * sigma
    x = np.arange(crop_size, dtype=np.float32) + 0.5
    d = np.minimum(x, crop_size - x)
    u = np.clip((d - 1.0) / margin, 0.0, 1.0)
    taper = u * u * (3 - 2 * u)  # smoothstep: 0 at the border pixel, 1 beyond the margin
    return np.clip(soft * taper[:, None] * taper[None, :], 0.0, 1.0).astype(np.float32)


def match_colours(crop: np.ndarray, ref_crop: np.ndarray, mask: np.ndarray, max_gain: float = 2.0) -> np.ndarray:
    """``crop`` with the per-channel mean and spread of ``ref_crop`` inside ``mask`` (weights in [0, 1]).

    Colour transfer (Reinhard-style, in RGB) before paste-back: a renderer whose colours drift from the
    reference (lighting, a model trained on other faces) is brought back to the reference frame's skin
    tone so the pasted region does not stand out. The gain is clamped to [1 / max_gain, max_gain].
    """
    w = np.asarray(mask, np.float64)[..., None]
    total = w.sum()
    if total < 1.0:
        return crop
    c, r = crop.astype(np.float64), ref_crop.astype(np.float64)
    mu_c, mu_r = (c * w).sum((0, 1)) / total, (r * w).sum((0, 1)) / total
    sd_c = np.sqrt((((c - mu_c) ** 2) * w).sum((0, 1)) / total)
    sd_r = np.sqrt((((r - mu_r) ** 2) * w).sum((0, 1)) / total)
    gain = np.clip(sd_r / np.maximum(sd_c, 1e-6), 1.0 / max_gain, max_gain)
    return np.clip((c - mu_c) * gain + mu_r + 0.5, 0, 255).astype(np.uint8)


def paste_back(frame: np.ndarray, crop: np.ndarray, affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with ``crop`` (S, S, 3) blended in by ``mask`` (S, S) in [0, 1], both warped
    back with the inverse of ``affine`` (source pixels -> crop pixels). Returns a new frame."""
    h, w = frame.shape[:2]
    s = crop.shape[0]
    inv = invert_affines(np.asarray(affine, np.float32)).astype(np.float64)
    corners = apply_affine_points(inv, np.array([[0, 0], [s, 0], [0, s], [s, s]], np.float32))
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    m = inv.copy()
    m[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    face = cv2.warpAffine(crop, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(np.asarray(mask, np.float32), m, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(region + alpha * (face.astype(np.float32) - region) + 0.5, 0, 255).astype(np.uint8)
    return out


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def audio_sample_rate(path: str) -> int:
    """The sample rate of the first audio stream of ``path``."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise DubError(f"{path}: no audio stream")
            return int(c.streams.audio[0].codec_context.sample_rate or SAMPLE_RATE)
    except av.FFmpegError as e:
        raise DubError(f"{path}: cannot read the audio ({e})") from e


# ------------------------------------------------------------------------------------------ checkpoints
def _run_task(path: Path) -> str | None:
    import json

    cfg = path / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text()).get("task")
    except (OSError, ValueError):
        return None


def _runs_in(folder: Path, task: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _run_task(p) == task) if folder.is_dir() else []


def resolve_runs(checkpoint: str | Path | None, stage1: str | Path | None = None) -> tuple[Path, Path]:
    """``(stage-1 run, stage-2 run)`` folders for a ``--checkpoint`` (a stage-2 run, or a folder holding one
    stage-1 and one stage-2 run) and an optional explicit stage-1 run. Default folder:
    ``<weights dir>/personatalk``."""
    base = Path(checkpoint) if checkpoint is not None else default_weights_dir() / DEFAULT_RUNS_SUBDIR
    hint = ("pass --checkpoint RUN: a stage-2 run folder of `pt train stage2` (or of `pt demo`, which leaves "
            "tiny trained runs under its --out folder)")
    if not base.exists():
        raise DubError(f"no trained model at {base}: {hint}")
    task = _run_task(base)
    if task == "stage2":
        s2 = base
        siblings = _runs_in(base.parent, "stage1")
    elif task is None:
        found = _runs_in(base, "stage2")
        if len(found) != 1:
            raise DubError(f"{base} holds {len(found)} stage-2 runs ({', '.join(p.name for p in found) or 'none'}); "
                           f"{hint}")
        s2 = found[0]
        siblings = _runs_in(base, "stage1")
    else:
        raise DubError(f"{base} is a {task!r} run, not a stage-2 run; {hint}")
    if stage1 is not None:
        s1 = Path(stage1)
        if _run_task(s1) != "stage1":
            raise DubError(f"{s1} is not a stage-1 run folder (no config.json of task 'stage1')")
        return s1, s2
    if len(siblings) != 1:
        names = ", ".join(p.name for p in siblings) or "none"
        raise DubError(f"found {len(siblings)} stage-1 runs beside {s2} ({names}); name one with --stage1 RUN")
    return siblings[0], s2


def load_dub_models(checkpoint: str | Path | None, stage1: str | Path | None = None,
                    device: str | torch.device = "cpu") -> DubModels:
    """Load the trained stage-1 and stage-2 runs (see :func:`resolve_runs`) and their face model."""
    from pt_model.stage1_train import load_stage1
    from pt_model.stage2_train import load_stage2

    s1_run, s2_run = resolve_runs(checkpoint, stage1)
    net2, cfg2, _ = load_stage2(s2_run)
    fm = default_face_model(cfg2.face_model)
    net1, cfg1 = load_stage1(s1_run, face_model=fm)
    return DubModels(stage1=net1, stage1_context=int(cfg1.data.context_frames), stage2=net2, face_model=fm,
                     stage1_run=str(s1_run), stage2_run=str(s2_run)).to(torch.device(device))


# --------------------------------------------------------------------------------------------- stages
def prepare_reference(video: str, face_model: FaceModel, config: DubConfig) -> ReferenceVideo:
    """Decode, track, crop and fit the reference video (step 1 of the module docstring)."""
    try:
        info = probe_video(video)
    except MediaError as e:
        raise DubError(f"cannot read the reference video: {e}") from e
    total = max(int(round(info.duration_s * FPS)), 1) if info.duration_s else None
    frames: list[np.ndarray] = []
    lms: list[np.ndarray] = []
    nan = np.full((len(face_model.mediapipe_ids), 2), np.nan, np.float32)
    try:
        with FaceMeshDetector(FaceMeshConfig(max_num_faces=2)) as det:
            for _, rgb in tqdm(iter_frames_at_fps(video), total=total, desc="reference: face mesh", unit="frame",
                               disable=not config.progress, leave=False):
                faces = det.detect(rgb)
                frames.append(rgb)
                lms.append(max(faces, key=lambda f: np.ptp(f[:, 0]) * np.ptp(f[:, 1]))[:, :2] if faces else nan)
    except MediaError as e:
        if not frames:
            raise DubError(f"cannot decode the reference video: {e}") from e
    if not frames:
        raise DubError(f"{video}: the video has no frame")
    landmarks, missing = fill_missing_landmarks(np.stack(lms))
    affines = crop_transforms(landmarks, config.crop)
    crops = np.stack([crop_frame(f, a, config.crop.size) for f, a in zip(frames, affines)])
    lm_crop = apply_affine_points(affines, landmarks) * (CROP_SIZE / config.crop.size)
    fit = fit_clips([lm_crop], face_model, config.fit)[0]
    if config.crop.size != CROP_SIZE:
        crops = np.stack([cv2.resize(c, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA) for c in crops])
        scale = np.array([[CROP_SIZE / config.crop.size]], np.float32)
        affines = affines * scale
    return ReferenceVideo(frames, affines, crops, lm_crop.astype(np.float32), fit, missing)


@torch.no_grad()
def target_vertices(models: DubModels, ref: ReferenceVideo, audio16: np.ndarray, src: np.ndarray,
                    config: DubConfig, device: torch.device) -> np.ndarray:
    """Stage 1: canonical target meshes (N, V, 3) for the output frames (``src``: their source frames)."""
    n = len(src)
    c = models.stage1_context
    shape = torch.as_tensor(ref.fit.shape, device=device)[None]
    style = ref.fit.expression[:config.style_frames]
    style_t = torch.as_tensor(style, device=device)[None]
    out = []
    for s in range(0, n, config.stage1_window):
        k = min(config.stage1_window, n - s)
        wave = pcm16_to_float(audio_for_frames(audio16, s, k, context=c * SAMPLES_PER_FRAME))
        expr = torch.as_tensor(ref.fit.expression[src[s:s + k]], device=device)[None]
        geo = models.stage1.geometry(torch.as_tensor(wave, device=device)[None], shape, expr,
                                     style_expression=style_t if models.stage1.cfg.use_style else None,
                                     context_frames=c)
        out.append(geo.vertices[0].float().cpu().numpy())
    return np.concatenate(out)


class _ReferenceBank:
    """The reference frames encoded once for stage 2 (geometry and texture latents, lip keys/values)."""

    def __init__(self, net: Stage2Renderer, pncc: torch.Tensor, tex: torch.Tensor, face: np.ndarray,
                 lip: np.ndarray, device: torch.device, batch: int) -> None:
        self.net, self.face, self.lip, self.mode = net, face, lip, net.config.attention
        geo, txt = [], []
        for s in range(0, len(pncc), batch):
            geo.append(net.encode_geometry(pncc[s:s + batch].to(device)))
            txt.append(net.encode_texture(tex[s:s + batch].to(device)))
        self.geo, self.tex = torch.cat(geo), torch.cat(txt)
        li = torch.as_tensor(lip, device=device)
        self.lip_kv = (net.branch_references("lip", self.geo[li][None], self.tex[li][None])
                       if self.mode in ("dual", "lip_only") else None)

    def render(self, target_pncc: torch.Tensor, target_lip: torch.Tensor, src: np.ndarray) -> torch.Tensor:
        idx = self.face[src]  # (B, N_f)
        if self.mode == "single":
            idx = np.concatenate([idx, np.broadcast_to(self.lip, (len(src), len(self.lip)))], 1)
        face = None
        if self.mode != "lip_only":
            fi = torch.as_tensor(idx, device=self.geo.device)
            face = self.net.branch_references("face", self.geo[fi], self.tex[fi])
        return self.net.render(target_pncc, target_lip, face, self.lip_kv)


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.float().clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).cpu().numpy()


def dub(video: str | Path, audio: str | Path, out: str | Path, checkpoint: str | Path | None = None,
        config: DubConfig | None = None, *, models: DubModels | None = None) -> DubReport:
    """Dub ``video`` with ``audio`` into ``out`` (see the module docstring).

    ``checkpoint``: a stage-2 run folder (its stage-1 run found beside it, or ``config.stage1``), or a folder
    holding both. ``models``: already loaded networks instead (tests pass tiny random ones; the report then
    says ``random_weights``).
    """
    cfg = config or DubConfig()
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    dev = _device(cfg.device)
    video, audio, out = str(video), str(audio), Path(out)
    if not Path(video).is_file():
        raise DubError(f"reference video not found: {video}")
    if not Path(audio).is_file():
        raise DubError(f"audio not found: {audio}")

    t = time.perf_counter()
    models = (models or load_dub_models(checkpoint, cfg.stage1)).to(dev)
    fm = models.face_model
    if models.stage1.face_model_id != fm.model_id:
        raise DubError(f"stage 1 ({models.stage1_run}) was trained with face model {models.stage1.face_model_id}, "
                       f"stage 2 with {fm.model_id}: train both on the same shards")
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    try:
        audio16 = read_audio(audio, SAMPLE_RATE)
        out_rate = min(audio_sample_rate(audio), 48000)
        audio_out = read_audio(audio, out_rate)
    except MediaError as e:
        raise DubError(f"cannot read the audio: {e}") from e
    if len(audio16) < SAMPLES_PER_FRAME:
        raise DubError(f"{audio}: the audio is shorter than one video frame (40 ms)")
    timings["audio"] = time.perf_counter() - t

    t = time.perf_counter()
    ref = prepare_reference(video, fm, cfg)
    timings["reference"] = time.perf_counter() - t
    if ref.frames_without_face:
        warnings.append(f"{ref.frames_without_face} of {len(ref.frames)} reference frames had no face; their "
                        "landmarks were interpolated")
    n_src = len(ref.frames)
    n_out = int(math.ceil(len(audio16) / SAMPLES_PER_FRAME))
    src = pingpong_indices(n_out, n_src)
    extended = n_out > n_src

    size = models.stage2.config.image_size
    images = GeometryImages(fm, size, device=dev, batch=max(cfg.batch_size, 16))
    t = time.perf_counter()
    verts = target_vertices(models, ref, audio16, src, cfg, dev)
    timings["stage1"] = time.perf_counter() - t

    t = time.perf_counter()
    ref_r = images.render(ref.fit.shape, ref.fit.expression, ref.fit.pose, region=cfg.paste_region)
    tgt_r = images.render_vertices(verts, ref.fit.pose[src], region=cfg.paste_region)
    timings["render_pncc"] = time.perf_counter() - t

    t = time.perf_counter()
    opening = canonical_mouth_opening(fm, ref.fit.shape, ref.fit.expression)
    face_idx, lip_idx = inference_references(opening, ReferenceConfig(cfg.num_face, cfg.num_lip, cfg.references),
                                             np.random.default_rng(cfg.seed))
    with torch.no_grad():
        bank = _ReferenceBank(models.stage2, ref_r.pncc, frames_to_tensor(ref.crops, size), face_idx, lip_idx,
                              dev, cfg.batch_size)
    timings["stage2"] = time.perf_counter() - t
    timings["paste_encode"] = 0.0

    h, w = ref.frames[0].shape[:2]
    pad = (h % 2, w % 2)
    if any(pad):
        warnings.append(f"the reference is {w}x{h}; H.264 needs even sizes, so the output is padded by one pixel")

    def frames() -> Iterator[np.ndarray]:
        bar = tqdm(total=n_out, desc="dubbing", unit="frame", disable=not cfg.progress)
        for s in range(0, n_out, cfg.batch_size):
            sl = slice(s, min(s + cfg.batch_size, n_out))
            t0 = time.perf_counter()
            with torch.no_grad():
                faces = bank.render(tgt_r.pncc[sl].to(dev), tgt_r.lip_mask[sl].to(dev), src[sl])
            timings["stage2"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            done = []
            for k, j in enumerate(range(sl.start, sl.stop)):
                i = int(src[j])
                crop = _to_uint8(faces[k])
                if crop.shape[0] != CROP_SIZE:
                    crop = cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_CUBIC)
                region = np.maximum(tgt_r.region[j, 0].numpy(), ref_r.region[i, 0].numpy())
                mask = soft_paste_mask(region, CROP_SIZE, close=cfg.paste_close, grow=cfg.paste_grow,
                                       feather=cfg.feather)
                if cfg.colour_match:
                    crop = match_colours(crop, crop_frame(ref.frames[i], ref.affines[i], CROP_SIZE), mask)
                frame = paste_back(ref.frames[i], crop, ref.affines[i], mask)
                if any(pad):
                    frame = np.pad(frame, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")
                done.append(frame)
            timings["paste_encode"] += time.perf_counter() - t0
            bar.update(len(done))
            yield from done
        bar.close()

    t = time.perf_counter()
    try:
        write_video(str(out), frames(), fps=FPS, audio=audio_out, sample_rate=out_rate, crf=cfg.crf)
    except MediaError as e:
        raise DubError(f"cannot write {out}: {e}") from e
    timings["write_total"] = time.perf_counter() - t
    wall = time.perf_counter() - t_all
    dur = n_out / FPS
    return DubReport(out=str(out), num_frames=n_out, fps=FPS, duration_s=dur, audio_s=len(audio16) / SAMPLE_RATE,
                     reference_frames=n_src, extended=extended, width=w + pad[1], height=h + pad[0], image_size=size,
                     stage1_run=models.stage1_run, stage2_run=models.stage2_run, random_weights=models.random_weights,
                     frames_without_face=ref.frames_without_face,
                     fit_landmark_error_px=float(ref.fit.landmark_error_px),
                     timings={k: round(v, 4) for k, v in timings.items()}, frames_per_s=n_out / wall,
                     renderer_frames_per_s=n_out / max(timings["stage2"], 1e-9), realtime_factor=dur / wall,
                     warnings=warnings)
