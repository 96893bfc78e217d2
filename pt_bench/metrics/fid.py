"""FID: Fréchet distance between Inception-v3 pool3 features of generated and reference face crops.

Network: pytorch-fid's FID Inception (the TF 2015-12-05 graph ported to torch: torchvision's Inception-v3
with pytorch-fid's patched ``FIDInceptionA/C/E`` blocks and 1008 classes), built here from pytorch-fid's own
classes and filled from the registry file ``fid-inception`` (``pt_inception-2015-12-05-6726825d.pth``);
pytorch-fid's ``fid_inception_v3()`` would download it, so it is not called.

Features: every frame's 256x256 face crop (the reference's crop transform, also for the generated video),
RGB scaled to [0, 1], resized to 299x299 bilinearly (``align_corners=False``, no antialias: what
pytorch-fid's ``InceptionV3(resize_input=True)`` does), scaled to [-1, 1], pool3 -> 2048-d per frame.
Set score: all frames of all generated videos pooled against all frames of all reference videos
(Wav2Lip's "dump all frames" protocol), mean and covariance (``ddof=1``), then
``||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pt_data.weights import WeightsRegistry

from pt_bench.metrics.base import Metric
from pt_bench.video import BenchVideo, face_crop_transforms, face_crops

WEIGHTS_NAME = "fid-inception"
FID_INPUT_SIZE = 299
FEATURE_DIM = 2048


class FIDInceptionV3(nn.Module):
    """pytorch-fid's ``InceptionV3(output_blocks=[3])`` without the download: ``(B, 3, H, W)`` in [0, 1] -> ``(B, 2048)``
    pool3 features.

    ``inception`` is the patched torchvision module (see :func:`build_fid_inception`); the four blocks are
    assembled as pytorch-fid does. ``random_weights`` stays True until a file is loaded.
    """

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.random_weights = True
        self.inception = inception
        i = inception
        self.blocks = nn.Sequential(
            i.Conv2d_1a_3x3, i.Conv2d_2a_3x3, i.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            i.Conv2d_3b_1x1, i.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            i.Mixed_5b, i.Mixed_5c, i.Mixed_5d, i.Mixed_6a, i.Mixed_6b, i.Mixed_6c, i.Mixed_6d, i.Mixed_6e,
            i.Mixed_7a, i.Mixed_7b, i.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear", align_corners=False)
        return self.blocks(2 * x - 1).flatten(1)


def build_fid_inception() -> nn.Module:
    """The FID Inception module, untrained: torchvision's Inception-v3 patched as
    ``pytorch_fid.inception.fid_inception_v3`` does it (without its download)."""
    from pytorch_fid import inception as pfi

    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


def load_fid_inception(weights: WeightsRegistry | None = None, device: str | torch.device = "cpu",
                       random_weights: bool = False, *, seed: int = 0) -> FIDInceptionV3:
    """The FID feature extractor in eval mode; the file is the registry's ``fid-inception``.

    A missing file raises :class:`pt_data.weights.MissingWeightsError`; ``random_weights=True`` (tests and
    smoke runs only) initialises from ``seed`` without touching the global RNG.
    """
    path = None if random_weights else (weights or WeightsRegistry()).path(WEIGHTS_NAME)  # fail fast
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inception = build_fid_inception()
    model = FIDInceptionV3(inception)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            inception.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path} is not pytorch-fid's FID Inception state dict ({e}); get "
                             f"pt_inception-2015-12-05-6726825d.pth from pytorch-fid's fid_weights release") from e
        model.random_weights = False
    model.requires_grad_(False)
    return model.to(device).eval()


@torch.inference_mode()
def inception_features(model: FIDInceptionV3, crops: np.ndarray, *, batch_size: int = 16,
                       device: str | torch.device = "cpu") -> np.ndarray:
    """``(N, 2048)`` float32 pool3 features of ``(N, H, W, 3)`` uint8 RGB images."""
    out = []
    for start in range(0, len(crops), batch_size):
        x = torch.from_numpy(np.array(crops[start:start + batch_size])).to(device)  # a copy: crops are read-only
        out.append(model(x.permute(0, 3, 1, 2).float() / 255.0).float().cpu())
    return (torch.cat(out) if out else torch.zeros(0, FEATURE_DIM)).numpy()


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``ddof=1``, float64) of ``(N, D)`` features, as pytorch-fid computes them."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"FID needs at least 2 feature vectors (N, D), got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))`` for symmetric PSD covariances.

    ``tr(sqrt(S1 S2)) = tr(sqrt(R S2 R))`` with ``R = sqrt(S1)`` (``S1 S2`` and ``R S2 R`` are similar), and
    ``R S2 R`` is symmetric PSD, so both square roots come from symmetric eigendecompositions (float64;
    round-off negative eigenvalues clipped to 0). No ``scipy.linalg.sqrtm`` of a non-symmetric product,
    hence no imaginary parts and no need for pytorch-fid's ``eps`` retry on singular covariances. The
    distance is a sum of squares, so a round-off negative result (identical sets) is returned as 0.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ s2 @ root
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return max(0.0, float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean))


def fid_from_features(pred_features: np.ndarray, ref_features: np.ndarray) -> float:
    """FID between two pooled feature sets ``(N1, D)`` and ``(N2, D)`` (functional twin of :class:`FID`)."""
    return frechet_distance(*feature_statistics(pred_features), *feature_statistics(ref_features))


class FID(Metric):
    name = "fid"
    higher_is_better = False
    level = "set"
    region = "256x256 face crop (reference crop transform), resized to 299 bilinear"
    weights = (WEIGHTS_NAME,)
    protocol = ("FID: pytorch-fid Inception pool3 (2048-d) of every frame's 256x256 face crop (reference crop "
                "transform) resized to 299 bilinear; all frames of a method pooled vs all reference frames")

    def __init__(self, *, batch_size: int = 16, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batch_size = batch_size
        self.model = load_fid_inception(self.registry, self.device, self.random_weights, seed=self.seed)

    def features(self, video: BenchVideo, ref: BenchVideo | None) -> np.ndarray:
        """``(T, 2048)`` float32 pool3 features of ``video``'s face crops in ``ref``'s crop transform
        (its own when ``ref`` is None, e.g. for the references themselves)."""
        crops = face_crops(video, face_crop_transforms(ref if ref is not None else video))
        return inception_features(self.model, crops, batch_size=self.batch_size, device=self.device)

    def score_set(self, pred_feats: list[np.ndarray], ref_feats: list[np.ndarray]) -> float:
        if not pred_feats or not ref_feats:
            raise ValueError("FID needs features of at least one generated and one reference video")
        return fid_from_features(np.concatenate(pred_feats), np.concatenate(ref_feats))
