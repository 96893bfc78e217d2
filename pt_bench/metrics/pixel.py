"""SSIM and PSNR, on full frames and on the 256x256 face crop, batched in torch (CPU or GPU).

SSIM follows scikit-image's ``structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1)`` (the Wang et al. 2004 setting): an 11x11
Gaussian window (sigma 1.5, truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03, population (co)variances, each
RGB channel separately, the SSIM map averaged over the region where the window lies inside the image
(scikit-image filters with reflection and then crops 5 pixels per border; here a valid convolution gives
the same region directly), then averaged over the 3 channels. One value per frame, averaged over frames.

PSNR is per frame in dB over all pixels and channels of the uint8 RGB images (peak 255), averaged over
frames; identical frames (MSE 0) and anything above it count as 100 dB (:data:`PSNR_CAP_DB`), so one
identical frame cannot make the mean infinite.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pt_bench.metrics.base import Metric, MetricResult, paired_length
from pt_bench.video import BenchVideo, face_crop_transforms, face_crops

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 255.0
PSNR_CAP_DB = 100.0
FACE_REGION = "256x256 face crop (the reference's crop transform applied to both videos)"


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype: torch.dtype = torch.float64
                       ) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (``scipy.ndimage.gaussian_filter``'s kernel for ``truncate=3.5``)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype)


def _as_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    # a copy of a numpy batch: BenchVideo frames are read-only, which torch.from_numpy does not accept silently
    return frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.array(frames, copy=True))


def _as_nchw(frames: np.ndarray | torch.Tensor, device: str | torch.device, dtype: torch.dtype) -> torch.Tensor:
    t = _as_tensor(frames)
    if t.ndim != 4 or t.shape[-1] not in (1, 3):
        raise ValueError(f"expected (N, H, W, C) frames, got {tuple(t.shape)}")
    return t.to(device=device).permute(0, 3, 1, 2).to(dtype)


def _check_pair(pred, ref) -> None:
    if tuple(pred.shape) != tuple(ref.shape):
        raise ValueError(f"pred and ref frames differ in shape: {tuple(pred.shape)} vs {tuple(ref.shape)} "
                         "(full-frame metrics need the same resolution; trim to the same frame count first)")


@torch.inference_mode()
def ssim_frames(pred: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor, *,
                data_range: float = DATA_RANGE, device: str | torch.device = "cpu", batch_size: int | None = None,
                dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Per-frame SSIM ``(N,)`` float64 of ``(N, H, W, C)`` frames (uint8 or float in ``[0, data_range]``).

    See the module doc for the exact definition (= scikit-image's Gaussian SSIM, averaged over channels).
    Float32 agrees with scikit-image's float64 to ~1e-6. ``batch_size`` frames per convolution call; by
    default 1 on the CPU (measured fastest: the 15 filtered maps of one frame stay in cache) and 16 on a GPU.
    """
    if batch_size is None:
        batch_size = 1 if torch.device(device).type == "cpu" else 16
    _check_pair(pred, ref)
    h, w = pred.shape[1:3]
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    g = gaussian_window_1d(dtype=dtype).to(device)
    out = []
    for start in range(0, len(pred), batch_size):
        x = _as_nchw(pred[start:start + batch_size], device, dtype)
        y = _as_nchw(ref[start:start + batch_size], device, dtype)
        ch = x.shape[1]
        maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W)
        k = maps.shape[1]
        maps = F.conv2d(maps, g.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k)  # valid: crops 5 px per side
        maps = F.conv2d(maps, g.view(1, 1, -1, 1).expand(k, 1, -1, 1), groups=k)
        ux, uy, uxx, uyy, uxy = maps.split(ch, dim=1)
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        out.append(s.double().mean(dim=(2, 3)).mean(dim=1).cpu())
    return torch.cat(out).numpy()


@torch.inference_mode()
def psnr_frames(pred: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor, *,
                data_range: float = DATA_RANGE, max_db: float = PSNR_CAP_DB, device: str | torch.device = "cpu",
                batch_size: int | None = None) -> np.ndarray:
    """Per-frame PSNR ``(N,)`` in dB: ``10 log10(data_range^2 / MSE)`` over all pixels and channels, capped at
    ``max_db``.

    uint8 pairs are differenced in integers (exact sums of squares); other dtypes in float64. ``batch_size``
    frames at a time: by default 1 on the CPU (measured fastest) and 16 on a GPU.
    """
    _check_pair(pred, ref)
    if batch_size is None:
        batch_size = 1 if torch.device(device).type == "cpu" else 16
    out = []
    for start in range(0, len(pred), batch_size):
        x, y = (_as_tensor(a[start:start + batch_size]).to(device) for a in (pred, ref))
        if x.dtype == torch.uint8 and y.dtype == torch.uint8:
            d = (x.to(torch.int16) - y.to(torch.int16)).to(torch.int32)
            sse = (d * d).flatten(1).sum(dim=1, dtype=torch.int64).double()
        else:
            d = x.double() - y.double()
            sse = (d * d).flatten(1).sum(dim=1)
        mse = (sse / x[0].numel()).cpu().numpy()
        with np.errstate(divide="ignore"):
            db = 10 * np.log10(data_range ** 2 / mse)
        out.append(np.minimum(db, max_db))
    return np.concatenate(out)


def video_ssim(pred: np.ndarray, ref: np.ndarray, **kwargs) -> float:
    """Mean over frames of :func:`ssim_frames` (functional twin of :class:`SSIM` on given frames)."""
    return float(np.mean(ssim_frames(pred, ref, **kwargs)))


def video_psnr(pred: np.ndarray, ref: np.ndarray, **kwargs) -> float:
    """Mean over frames of :func:`psnr_frames` (each capped at 100 dB)."""
    return float(np.mean(psnr_frames(pred, ref, **kwargs)))


class _PixelMetric(Metric):
    face: bool = False

    def pair_frames(self, pred: BenchVideo, ref: BenchVideo) -> tuple[np.ndarray, np.ndarray]:
        """The frames compared: first ``min(T)`` full frames, or their face crops in the reference's transform."""
        n = paired_length(pred, ref)
        if not self.face:
            return pred.frames[:n], ref.frames[:n]
        affines = face_crop_transforms(ref)
        return face_crops(pred, affines)[:n], face_crops(ref, affines)[:n]

    def frame_scores(self, pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, pred: BenchVideo, ref: BenchVideo) -> MetricResult:
        p, r = self.pair_frames(pred, ref)
        return MetricResult(float(np.mean(self.frame_scores(p, r))))


class SSIM(_PixelMetric):
    name = "ssim"
    higher_is_better = True
    region = "full frame"
    protocol = ("SSIM on RGB uint8 full frames: 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03, L 255, "
                "population covariance, valid region, mean over channels, then over frames (= scikit-image)")

    def frame_scores(self, pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return ssim_frames(pred, ref, device=self.device)


class SSIMFace(SSIM):
    name = "ssim_face"
    face = True
    region = FACE_REGION
    protocol = SSIM.protocol.replace("full frames", "256x256 face crops (reference crop transform)")


class PSNR(_PixelMetric):
    name = "psnr"
    higher_is_better = True
    region = "full frame"
    protocol = ("PSNR in dB per RGB uint8 full frame (MSE over pixels and channels, peak 255), capped at "
                f"{PSNR_CAP_DB:g} dB (identical frames), mean over frames")

    def frame_scores(self, pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return psnr_frames(pred, ref, device=self.device)


class PSNRFace(PSNR):
    name = "psnr_face"
    face = True
    region = FACE_REGION
    protocol = PSNR.protocol.replace("full frame", "256x256 face crop (reference crop transform)")
