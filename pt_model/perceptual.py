"""Image losses and quality measures of stage 2: LPIPS-VGG with registry weights, differentiable SSIM, PSNR.

LPIPS (Zhang et al. 2018, the ``lpips`` package) has two parts: a torchvision backbone whose ImageNet weights
cannot be downloaded here, and linear heads that ship inside the ``lpips`` wheel. :func:`load_lpips_vgg`
builds the VGG-16 variant (the training loss) with a random backbone and loads the backbone from the weights
registry (``vgg16`` -> torchvision's ``vgg16-397923af.pth``), mapping torchvision's ``features.K`` layer
names onto lpips' ``sliceN.K``. A missing file raises :class:`~pt_data.weights.MissingWeightsError`.
(Validation LPIPS uses the benchmark's AlexNet metric, :func:`pt_bench.metrics.lpips_metric.load_lpips_alex`,
so that numbers agree with ``pt bench``.)
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from pt_data.weights import WeightsRegistry

VGG_WEIGHTS = "vgg16"


def load_lpips_vgg(registry: WeightsRegistry | None = None):
    """``lpips.LPIPS(net="vgg")`` (eval mode, frozen) with its VGG-16 backbone from the weights registry.

    Inputs of the returned module are images in [-1, 1], (B, 3, H, W); it returns (B, 1, 1, 1) distances.
    """
    import lpips

    path = (registry or WeightsRegistry()).path(VGG_WEIGHTS)  # fail fast, before building the network
    state = torch.load(path, map_location="cpu", weights_only=True)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated ``pretrained=False``
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    backbone = model.net
    mapped = {}
    for key in backbone.state_dict():
        _, layer, param = key.split(".")  # sliceN.K.weight
        src = f"features.{layer}.{param}"
        if src not in state:
            raise ValueError(f"{path}: no {src!r}; not torchvision's VGG-16 state dict (get vgg16-397923af.pth "
                             "from download.pytorch.org/models)")
        mapped[key] = state[src]
    backbone.load_state_dict(mapped)
    model.eval()
    model.requires_grad_(False)
    return model


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, *, window: int = 11, sigma: float = 1.5, data_range: float = 1.0,
         reduction: str = "mean") -> torch.Tensor:
    """Differentiable SSIM (Wang et al. 2004; Gaussian window 11 / 1.5, K1 = 0.01, K2 = 0.03) of (B, C, H, W)
    images, over the valid (unpadded) region. ``reduction``: "mean" (a scalar) or "none" (per image)."""
    c = x.shape[1]
    w = _gaussian_window(min(window, x.shape[-1], x.shape[-2]), sigma, c, x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x ** 2
    syy = F.conv2d(y * y, w, groups=c) - mu_y ** 2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    per_image = s.flatten(1).mean(1)
    return per_image.mean() if reduction == "mean" else per_image


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB of (B, C, H, W) images (B,)."""
    mse = ((x.float() - y.float()) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(data_range ** 2 / mse)
