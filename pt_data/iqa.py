"""Image quality of face crops: one scorer API, a registry of scorers, and per-clip scoring.

A scorer maps a batch of aligned face crops, ``(N, H, W, 3)`` uint8 RGB (256x256 in the pipeline), to
``(N,)`` float32 scores on a 0..100 scale, higher is better. Each scorer carries a calibrated
``default_threshold`` (keep a clip when its score is at least this) and a ``default_every`` (the frame
stride the curation pipeline scores at, first/middle/last frames always included).

Registered scorers (:data:`IQA_SCORERS`, built with :func:`create_scorer`):

* ``pt-face-quality-v1`` (the default): :class:`FaceQualityScorer`, weight-free, deterministic and fast;
  classic measures of sharpness, noise, exposure, contrast and JPEG blocking on the central face region.
* ``hyperiqa-koniq``: the HyperIQA network (Su et al., CVPR 2020) with the KonIQ-10k weights of the
  official release, as LatentSync's curation uses it (threshold 40); see :mod:`pt_data.hyperiqa`.

The two scales are not interchangeable: a clip's score is only comparable with scores of the same
``scorer.name``, which is why the shard stores ``iqa_model`` beside ``iqa_score``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping

import cv2
import numpy as np

if TYPE_CHECKING:
    from pt_data.weights import WeightsRegistry

DEFAULT_IQA_MODEL = "pt-face-quality-v1"


# ----------------------------------------------------------------------------------------------------------
# The scorer API


class ImageQualityScorer(ABC):
    """No-reference image quality of face crops on a 0..100 scale (higher is better).

    Subclasses set ``name`` (stored as ``iqa_model`` with every score), ``default_threshold`` (calibrated
    keep/reject cut on the clip score) and ``default_every`` (recommended frame stride), and implement
    :meth:`score`.
    """

    name: str
    higher_is_better: ClassVar[bool] = True
    score_range: ClassVar[tuple[float, float]] = (0.0, 100.0)
    default_threshold: float
    default_every: int = 1

    @abstractmethod
    def score(self, crops: np.ndarray) -> np.ndarray:
        """Scores of ``(N, H, W, 3)`` uint8 RGB crops: an ``(N,)`` float32 array."""

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return self.score(crops)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, default_threshold={self.default_threshold})"


def check_crops(crops: np.ndarray) -> np.ndarray:
    """``crops`` as a C-contiguous ``(N, H, W, 3)`` uint8 array; anything else is a ``ValueError``."""
    a = np.asarray(crops)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8 RGB crops, got {a.dtype} array of shape {a.shape}")
    return np.ascontiguousarray(a)


# ----------------------------------------------------------------------------------------------------------
# The weight-free default scorer


def _rise(x: np.ndarray, x50: float, k: float) -> np.ndarray:
    """0 at ``x = 0``, 0.5 at ``x50``, towards 1 for large ``x`` (a Hill curve of steepness ``k``)."""
    x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    with np.errstate(divide="ignore", over="ignore"):
        return 1.0 / (1.0 + (x50 / x) ** k)  # written so that x = 0 gives 0 and x = inf gives 1


def _fall(x: np.ndarray, x50: float, k: float) -> np.ndarray:
    """1 at ``x = 0``, 0.5 at ``x50``, towards 0 for large ``x``; ``1 - _rise``."""
    return 1.0 - _rise(x, x50, k)


# Immerkaer (1996): the difference of two Laplacians, blind to planes and linear ramps; on white noise of
# std s its response has std 6 s (the kernel's L2 norm is 6).
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
_MAD_TO_STD = 0.6744897501960817  # median |x| of a standard normal


@dataclass(frozen=True)
class FaceQualityParams:
    """Where :class:`FaceQualityScorer` measures and how each measure maps to a factor in [0, 1].

    The region is given as fractions of the crop (rows ``region_rows``, columns ``region_cols``); for the
    256x256 aligned crop it is rows 64..224, columns 64..192: brows, eyes, nose, mouth, the top of the chin.
    Each ``*_50`` value is where its factor is 0.5 and ``*_k`` the steepness of the Hill curve around it.
    """

    region_rows: tuple[float, float] = (0.25, 0.875)
    region_cols: tuple[float, float] = (0.25, 0.75)
    fine_scale: float = 1.0  # Gaussian std (px) of the fine gradient
    coarse_scale: float = 2.0  # Gaussian std (px) of the coarse gradient
    blur_50: float = 1.75  # px of effective edge blur
    blur_k: float = 4.0
    noise_50: float = 6.0  # grey levels of luma noise std
    noise_k: float = 3.0
    dark_50: float = 55.0  # 95th percentile of the region's luma (0..255)
    dark_k: float = 6.0
    bright_50: float = 225.0  # mean luma of the region (0..255)
    bright_k: float = 16.0
    contrast_50: float = 8.0  # luma std (grey levels) of the region
    contrast_k: float = 4.0
    block_50: float = 1.25  # excess of the 8x8 block-boundary step ratio over 1
    block_k: float = 2.0


@dataclass(frozen=True)
class FaceQualityMeasures:
    """Per-crop measurements of :class:`FaceQualityScorer` (each an ``(N,)`` array) and the factors."""

    blur_px: np.ndarray  # effective Gaussian blur of edges, px
    noise_std: np.ndarray  # luma noise std, grey levels
    luma_p95: np.ndarray  # 95th percentile of the face region's luma, 0..255
    luma_mean: np.ndarray  # mean luma of the face region, 0..255
    luma_std: np.ndarray  # luma std of the face region, grey levels
    blockiness: np.ndarray  # mean step across 8x8 block boundaries / mean step elsewhere (1 = no blocking)
    factors: Mapping[str, np.ndarray] = field(default_factory=dict)  # name -> (N,) factor in [0, 1]

    @property
    def score(self) -> np.ndarray:
        """The product of the factors, times 100, as float32."""
        q = np.ones_like(self.blur_px, dtype=np.float64)
        for f in self.factors.values():
            q = q * f
        return (100.0 * q).astype(np.float32)


def _smoothed_gradient_energy(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Squared gradient magnitude of ``gray`` after a Gaussian blur of std ``sigma`` (central differences)."""
    g = cv2.GaussianBlur(gray, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT)
    return gx * gx + gy * gy


def _noise_gain(sigma: float) -> float:
    """Mean of :func:`_smoothed_gradient_energy` on unit-variance white noise: the filters' squared L2 norm."""
    n = 2 * int(np.ceil(4 * sigma)) + 9
    impulse = np.zeros((n, n), dtype=np.float32)
    impulse[n // 2, n // 2] = 1.0
    return float(_smoothed_gradient_energy(impulse, sigma).sum(dtype=np.float64))


def effective_blur(energy_fine: np.ndarray, energy_coarse: np.ndarray, fine: float, coarse: float
                   ) -> np.ndarray:
    """Gaussian blur std (px) of an ideal step edge whose fine/coarse gradient energies have this ratio.

    Smoothing a step edge blurred by ``b`` with a Gaussian of std ``s`` and integrating the squared
    gradient across it gives ``1 / (2 sqrt(pi) sqrt(b^2 + s^2))`` per unit contrast^2 and edge length, so
    ``r = E_fine / E_coarse = sqrt((b^2 + coarse^2) / (b^2 + fine^2))`` and
    ``b^2 = (coarse^2 - r^2 fine^2) / (r^2 - 1)``. Ratios above ``coarse / fine`` (detail finer than a
    step) give 0; ratios at or below 1 (no detail) give ``inf``. The ratio, hence ``b``, does not depend on
    the image's contrast.
    """
    r2 = (np.asarray(energy_fine, np.float64) / np.maximum(np.asarray(energy_coarse, np.float64), 1e-12)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        b2 = (coarse**2 - r2 * fine**2) / (r2 - 1.0)
    b2 = np.where(r2 <= 1.0 + 1e-9, np.inf, np.maximum(b2, 0.0))
    return np.sqrt(b2)


def _blockiness(gray: np.ndarray, row0: int, col0: int) -> float:
    """Mean |step| across the 8x8 JPEG block boundaries of the crop / mean |step| between other pixels.

    ``row0, col0`` place ``gray`` inside the crop so that the boundaries are those of the crop's own grid.
    """
    dx = np.abs(np.diff(gray, axis=1))
    dy = np.abs(np.diff(gray, axis=0))
    bx = (np.arange(col0, col0 + dx.shape[1]) % 8) == 7  # step between column 8k+7 and 8k+8
    by = (np.arange(row0, row0 + dy.shape[0]) % 8) == 7
    ratio_x = dx[:, bx].mean() / (dx[:, ~bx].mean() + 1e-3)
    ratio_y = dy[by].mean() / (dy[~by].mean() + 1e-3)
    return 0.5 * float(ratio_x + ratio_y)


class FaceQualityScorer(ImageQualityScorer):
    """``pt-face-quality-v1``: weight-free quality of an aligned face crop from five classic measures.

    All measures are taken on the luma (BT.601 grey, 0..255) of the central face region of the crop
    (rows 64..224, columns 64..192 of a 256 crop: brows to chin, cheek to cheek; see
    :class:`FaceQualityParams`), so background, hair and the crop's borders do not count.

    1. **Noise** ``n``: Immerkaer's fast noise estimate, made robust to edges with the median:
       ``n = median |Y * M| / (6 * 0.6745)``, M the 3x3 kernel [[1,-2,1],[-2,4,-2],[1,-2,1]] that
       cancels planes and ramps. On Gaussian white noise of std ``s`` it returns ``s`` (independent noise of std
       ``s`` per RGB channel is ``0.67 s`` in luma). Factor ``f_noise = 1 - h(n; 6, 3)``.
    2. **Sharpness** as an effective blur ``b`` in pixels: the mean squared gradient at a fine (Gaussian
       std 1 px) and a coarse (2 px) scale, each minus what noise of std ``n`` alone contributes (the
       filters' squared norm times ``n^2``), and the blur of an ideal step edge with the same fine/coarse
       ratio (:func:`effective_blur`). A ratio of two gradient energies does not change with contrast or
       brightness, and subtracting the noise part keeps noise from looking like detail (a plain Laplacian
       variance rewards noise). ``b`` is 0 for detail at least as sharp as a step edge and grows with
       blur (mean 0.6 px on clean crops of the real test videos; 1.1, 1.8, 2.5 px after a Gaussian blur of
       std 1, 2, 3). Factor ``f_sharp = 1 - h(b; 1.75, 4)``.
    3. **Exposure** from the region's 95th luma percentile ``P`` (under-exposure: even the highlights, eye
       whites and teeth, are dark; a percentile rather than the mean so that dark skin is not taken for
       dark lighting) and its mean luma ``L`` (over-exposure). Factor
       ``f_exposure = h(P; 55, 6) * (1 - h(L; 225, 16))``: above 0.94 for ``P >= 90`` and ``L <= 170``.
    4. **Contrast** ``C``: luma standard deviation of the region (grey levels; a constant image has 0).
       Factor ``f_contrast = h(C; 8, 4)``.
    5. **JPEG blocking** ``B``: mean absolute step across the crop's own 8x8 block boundaries divided by
       the mean step between other neighbours (about 1 without blocking, 1.3 at JPEG quality 75, 3.4 at
       quality 10). Factor ``f_block = 1 - h(max(B - 1, 0); 1.25, 2)``.

    Here ``h(x; x50, k) = x^k / (x^k + x50^k)``, a curve from 0 to 1 that is 0.5 at ``x50``. The score is
    ``100 * f_noise * f_sharp * f_exposure * f_contrast * f_block``: each factor is near 1 on a good crop,
    and any single bad one pulls the score down in proportion (a product, not an average, so a sharp but
    very noisy or very dark crop still scores low). Clean crops of the real test videos score 86-99; the
    calibration (``benchmarks/iqa_calibration.py``, ``reports/iqa_default_scorer.md``) sets the default
    threshold, 50. Deterministic, no learned weights, about 1500 crops/s (256x256) on one CPU core.

    Not measured: a low-resolution source upscaled to the crop (it looks nearly as sharp at 1-2 px; a
    2x lower resolution costs about 3 points), and compression blocks other than the crop's own JPEG grid
    (the source video's blocks are warped off the grid by the alignment).
    """

    default_threshold: float = 50.0
    default_every: int = 1

    def __init__(self, params: FaceQualityParams | None = None) -> None:
        self.params = params or FaceQualityParams()
        self.name = DEFAULT_IQA_MODEL if self.params == FaceQualityParams() else f"{DEFAULT_IQA_MODEL}+custom"
        self._gain_fine = _noise_gain(self.params.fine_scale)
        self._gain_coarse = _noise_gain(self.params.coarse_scale)
        self._margin = int(np.ceil(4 * self.params.coarse_scale)) + 2  # context for the filters

    def score(self, crops: np.ndarray) -> np.ndarray:
        return self.measure(crops).score

    def measure(self, crops: np.ndarray) -> FaceQualityMeasures:
        """All five measurements and their factors for each crop."""
        crops = check_crops(crops)
        raw = np.array([self._measure_one(c) for c in crops], dtype=np.float64).reshape(-1, 6)
        blur, noise, p95, mean, std, block = raw.T
        p = self.params
        factors = {
            "sharpness": _fall(blur, p.blur_50, p.blur_k),
            "noise": _fall(noise, p.noise_50, p.noise_k),
            "exposure": _rise(p95, p.dark_50, p.dark_k) * _fall(mean, p.bright_50, p.bright_k),
            "contrast": _rise(std, p.contrast_50, p.contrast_k),
            "blocking": _fall(np.maximum(block - 1.0, 0.0), p.block_50, p.block_k),
        }
        return FaceQualityMeasures(blur, noise, p95, mean, std, block, factors)

    def _region(self, height: int, width: int) -> tuple[int, int, int, int]:
        p = self.params
        return (int(round(p.region_rows[0] * height)), int(round(p.region_rows[1] * height)),
                int(round(p.region_cols[0] * width)), int(round(p.region_cols[1] * width)))

    def _measure_one(self, rgb: np.ndarray) -> tuple[float, ...]:
        """(blur px, noise std, luma p95, luma mean, luma std, blockiness) of one crop."""
        h, w = rgb.shape[:2]
        r0, r1, c0, c1 = self._region(h, w)
        m = self._margin
        o0, o1 = max(r0 - m, 0), max(c0 - m, 0)  # the region plus filter context, clipped to the crop
        luma = cv2.cvtColor(rgb[o0:min(r1 + m, h), o1:min(c1 + m, w)], cv2.COLOR_RGB2GRAY)
        core = (slice(r0 - o0, r1 - o0), slice(c0 - o1, c1 - o1))
        if luma[core].size < 64:
            raise ValueError(f"crop {h}x{w} is too small for the face region")
        p95, mean, std = _luma_statistics(luma[core])
        gray = luma.astype(np.float32)
        lap = cv2.filter2D(gray, cv2.CV_32F, _IMMERKAER, borderType=cv2.BORDER_REFLECT)[core]
        noise = float(np.median(np.abs(lap))) / (6.0 * _MAD_TO_STD)
        p = self.params
        e_fine = float(_smoothed_gradient_energy(gray, p.fine_scale)[core].mean()) - noise**2 * self._gain_fine
        e_coarse = float(_smoothed_gradient_energy(gray, p.coarse_scale)[core].mean()) - noise**2 * self._gain_coarse
        blur = float(effective_blur(max(e_fine, 0.0), max(e_coarse, 0.0), p.fine_scale, p.coarse_scale))
        return blur, noise, p95, mean, std, _blockiness(gray[core], r0, c0)


def _luma_statistics(luma: np.ndarray) -> tuple[float, float, float]:
    """95th percentile (lowest level with at least 95 % of the pixels at or below it), mean, std of uint8 luma."""
    hist = np.bincount(luma.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    n = hist.sum()
    mean = float(hist @ levels / n)
    std = float(np.sqrt(max(hist @ (levels - mean) ** 2 / n, 0.0)))
    p95 = float(np.searchsorted(np.cumsum(hist), 0.95 * n))
    return p95, mean, std


# ----------------------------------------------------------------------------------------------------------
# Registry


ScorerFactory = Callable[["WeightsRegistry | None", str, bool], ImageQualityScorer]


def _face_quality(weights: WeightsRegistry | None, device: str, random_weights: bool) -> ImageQualityScorer:
    return FaceQualityScorer()  # no weights, numpy on the CPU: the arguments do not apply


def _hyperiqa(weights: WeightsRegistry | None, device: str, random_weights: bool) -> ImageQualityScorer:
    from pt_data.hyperiqa import HyperIQAScorer  # torch and torchvision only when asked for

    return HyperIQAScorer.create(weights=weights, device=device, random_weights=random_weights)


#: name -> factory ``(weights, device, random_weights) -> scorer``; read-only.
IQA_SCORERS: Mapping[str, ScorerFactory] = MappingProxyType({
    DEFAULT_IQA_MODEL: _face_quality,
    "hyperiqa-koniq": _hyperiqa,
})


def create_scorer(name: str = DEFAULT_IQA_MODEL, *, weights: WeightsRegistry | None = None,
                  device: str = "cpu", random_weights: bool = False) -> ImageQualityScorer:
    """The registered scorer ``name``; weights (if any) come from ``weights`` (default: the user's registry).

    ``random_weights=True`` builds a learned scorer with random weights, for tests and smoke runs only; its
    ``name`` then says so. Unknown names raise ``ValueError`` listing the known ones; a missing weights
    file raises :class:`pt_data.weights.MissingWeightsError`.
    """
    try:
        factory = IQA_SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown IQA scorer {name!r}; known: {', '.join(sorted(IQA_SCORERS))}") from None
    return factory(weights, device, random_weights)


# ----------------------------------------------------------------------------------------------------------
# Clips


@dataclass
class IQAConfig:
    """The curation pipeline's image-quality stage.

    ``threshold=None`` and ``every=None`` take the scorer's calibrated ``default_threshold`` and recommended
    ``default_every``: every frame for ``pt-face-quality-v1``; one frame a second (25) for
    ``hyperiqa-koniq``, whose ResNet-50 costs ~4 GFLOPs a frame (LatentSync scores 3 frames a clip).
    """

    model: str = DEFAULT_IQA_MODEL
    threshold: float | None = None
    every: int | None = None
    device: str = "cpu"
    random_weights: bool = False

    def __post_init__(self) -> None:
        if self.model not in IQA_SCORERS:
            raise ValueError(f"unknown IQA scorer {self.model!r}; known: {', '.join(sorted(IQA_SCORERS))}")
        if self.every is not None and self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")

    def create_scorer(self, weights: WeightsRegistry | None = None) -> ImageQualityScorer:
        """The configured scorer (see :func:`create_scorer`)."""
        return create_scorer(self.model, weights=weights, device=self.device, random_weights=self.random_weights)

    def resolve(self, scorer: ImageQualityScorer) -> tuple[int, float]:
        """``(every, threshold)`` with the scorer's defaults where this config leaves them as None."""
        every = self.every if self.every is not None else scorer.default_every
        threshold = self.threshold if self.threshold is not None else scorer.default_threshold
        return every, float(threshold)


@dataclass(frozen=True)
class ClipQuality:
    """One clip's image quality: per-frame scores (NaN where not scored), the clip score and the verdict."""

    frame_scores: np.ndarray
    clip_score: float
    model: str
    threshold: float
    passed: bool


def scored_frame_indices(num_frames: int, every: int = 1) -> np.ndarray:
    """Sorted indices of the frames to score: every ``every``-th from 0, plus the middle and the last."""
    if num_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    idx = np.union1d(np.arange(0, num_frames, every), [num_frames // 2, num_frames - 1])
    return idx.astype(np.int64)


def score_clip(scorer: ImageQualityScorer, crops: np.ndarray, every: int = 1) -> tuple[np.ndarray, float]:
    """Per-frame scores ``(T,)`` float32 (NaN on frames not scored) and the clip score (their mean).

    The first, middle (``T // 2``) and last frames are always scored, plus every ``every``-th frame.
    """
    crops = check_crops(crops)
    return score_frames(scorer, len(crops), lambda idx: crops[idx], every)


def score_frames(scorer: ImageQualityScorer, num_frames: int, load: Callable[[np.ndarray], np.ndarray],
                 every: int = 1) -> tuple[np.ndarray, float]:
    """:func:`score_clip` for clips stored compressed: ``load(indices)`` returns only the frames scored."""
    idx = scored_frame_indices(num_frames, every)
    frame_scores = np.full(num_frames, np.nan, dtype=np.float32)
    frame_scores[idx] = scorer.score(check_crops(load(idx)))
    return frame_scores, float(np.mean(frame_scores[idx], dtype=np.float64))


def assess_clip(scorer: ImageQualityScorer, crops: np.ndarray, config: IQAConfig | None = None) -> ClipQuality:
    """Score a clip with ``scorer`` at the configured stride and compare with the configured threshold."""
    cfg = config or IQAConfig(model=DEFAULT_IQA_MODEL)
    every, threshold = cfg.resolve(scorer)
    frame_scores, clip_score = score_clip(scorer, crops, every)
    return ClipQuality(frame_scores, clip_score, scorer.name, float(threshold), bool(clip_score >= threshold))


# ----------------------------------------------------------------------------------------------------------
# Synthetic distortions (calibration and tests)


def _blur(crops: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(c, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) for c in crops])


def _noise(crops: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = crops.astype(np.float32) + rng.normal(0.0, sigma, crops.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _dark(crops: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.rint(crops.astype(np.float32) * np.float32(gain)), 0, 255).astype(np.uint8)


def _lowres(crops: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    h, w = crops.shape[1:3]
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(cv2.resize(c, small, interpolation=cv2.INTER_AREA), (w, h),
                                interpolation=cv2.INTER_CUBIC) for c in crops])


def _jpeg(crops: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    from pt_data.jpeg import decode_jpeg, encode_jpeg

    return np.stack([decode_jpeg(encode_jpeg(c, int(quality))) for c in crops])


#: kind -> ``(crops, level, rng) -> crops``: Gaussian blur (std px), Gaussian noise per channel (std, grey
#: levels), darkening (brightness gain), a low-resolution source (downscale by ``level``, upscale back),
#: JPEG re-encoding (quality).
DISTORTIONS: Mapping[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = MappingProxyType({
    "blur": _blur, "noise": _noise, "dark": _dark, "lowres": _lowres, "jpeg": _jpeg,
})


def distort(crops: np.ndarray, kind: str, level: float, *, seed: int = 0) -> np.ndarray:
    """``crops`` with one synthetic distortion (see :data:`DISTORTIONS`); deterministic for a ``seed``."""
    if kind not in DISTORTIONS:
        raise ValueError(f"unknown distortion {kind!r}; known: {', '.join(sorted(DISTORTIONS))}")
    return DISTORTIONS[kind](check_crops(crops), level, np.random.default_rng(seed))
