"""LPIPS (AlexNet, v0.1) between generated and reference face crops.

The network is the ``lpips`` package's ``LPIPS(net='alex', version='0.1')``: its linear heads ship inside the
lpips wheel (``lpips/weights/v0.1/alex.pth``, real), its AlexNet backbone is torchvision's
``alexnet-owt-7be5be79.pth``, which lpips would download; here the backbone is built empty
(``pnet_rand=True``) and filled from the registry file ``lpips-alexnet``, mapping torchvision's
``features.<i>`` parameters onto lpips' ``slice1..slice5`` (conv layers 0, 3, 6, 8, 10).

Inputs: every frame's 256x256 face crop (the reference's crop transform for both videos), RGB in [-1, 1]
(``x / 127.5 - 1``); one distance per frame (spatial average), averaged over frames.
"""
from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np
import torch

from pt_data.weights import WeightsRegistry

from pt_bench.metrics.base import Metric, MetricResult, paired_length
from pt_bench.video import BenchVideo, face_crop_transforms, face_crops

WEIGHTS_NAME = "lpips-alexnet"
#: lpips' ``pretrained_networks.alexnet``: which slice holds torchvision's ``features[i]``.
_ALEX_SLICES = ((1, range(0, 2)), (2, range(2, 5)), (3, range(5, 8)), (4, range(8, 10)), (5, range(10, 12)))


def alexnet_features_to_lpips(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision AlexNet state dict (``features.<i>.weight``...) -> lpips backbone keys (``slice<k>.<i>.weight``).

    The classifier entries are not used by LPIPS and are dropped.
    """
    slice_of = {i: k for k, idx in _ALEX_SLICES for i in idx}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "classifier":
            continue
        if parts[0] != "features" or len(parts) != 3 or int(parts[1]) not in slice_of:
            raise ValueError(f"unexpected AlexNet key {key!r} (expected torchvision's features.<i>.weight/bias)")
        out[f"slice{slice_of[int(parts[1])]}.{parts[1]}.{parts[2]}"] = value
    return out


def load_lpips_alex(weights: WeightsRegistry | None = None, device: str | torch.device = "cpu",
                    random_weights: bool = False, *, seed: int = 0) -> torch.nn.Module:
    """``lpips.LPIPS(net='alex')`` in eval mode with the wheel's heads and the registry's AlexNet backbone.

    A missing backbone file raises :class:`pt_data.weights.MissingWeightsError`; ``random_weights=True``
    keeps a seeded random backbone (heads still real) and sets ``net.random_weights``.
    """
    import lpips

    path = None if random_weights else (weights or WeightsRegistry()).path(WEIGHTS_NAME)  # fail fast
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        warnings.simplefilter("ignore", UserWarning)  # torchvision's notice about lpips' `pretrained=False`
        net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    net.random_weights = True
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            net.net.load_state_dict(alexnet_features_to_lpips(state), strict=True)
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{path} is not torchvision's AlexNet state dict ({e}); get alexnet-owt-7be5be79.pth "
                             "from download.pytorch.org/models") from e
        net.random_weights = False
    net.requires_grad_(False)
    return net.to(device).eval()


@torch.inference_mode()
def lpips_frames(net: torch.nn.Module, pred: np.ndarray, ref: np.ndarray, *, batch_size: int = 16,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """Per-frame LPIPS ``(N,)`` of ``(N, H, W, 3)`` uint8 RGB frame pairs (inputs scaled to [-1, 1])."""
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref crops differ in shape: {pred.shape} vs {ref.shape}")
    out = []
    for start in range(0, len(pred), batch_size):
        x, y = (torch.from_numpy(np.array(a[start:start + batch_size])).to(device)  # copies: crops are read-only
                .permute(0, 3, 1, 2).float() / 127.5 - 1 for a in (pred, ref))
        out.append(net(x, y).flatten().double().cpu())
    return torch.cat(out).numpy()


class LPIPS(Metric):
    name = "lpips"
    higher_is_better = False
    region = "256x256 face crop (reference crop transform)"
    weights = (WEIGHTS_NAME, "lpips-heads")
    protocol = ("LPIPS v0.1 AlexNet (lpips package heads, torchvision AlexNet backbone) on 256x256 face crops "
                "(reference crop transform) in [-1, 1], mean over frames")

    def __init__(self, *, batch_size: int = 16, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batch_size = batch_size
        self.net = load_lpips_alex(self.registry, self.device, self.random_weights, seed=self.seed)

    def evaluate(self, pred: BenchVideo, ref: BenchVideo) -> MetricResult:
        n = paired_length(pred, ref)
        affines = face_crop_transforms(ref)
        d = lpips_frames(self.net, face_crops(pred, affines)[:n], face_crops(ref, affines)[:n],
                         batch_size=self.batch_size, device=self.device)
        return MetricResult(float(d.mean()))
