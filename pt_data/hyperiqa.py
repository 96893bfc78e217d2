"""HyperIQA (Su et al., CVPR 2020, "Blindly Assess Image Quality in the Wild Guided by a Self-Adaptive
Hyper Network"): the network, its official KonIQ-10k weights, and a scorer for face crops.

The architecture follows the official release (github.com/SSL92/hyperIQA, ``models.py``,
``HyperNet(16, 112, 224, 112, 56, 28, 14, 7)``) module for module, so its state dict has the same names and
shapes and the released ``koniq_pretrained.pkl`` loads with ``load_state_dict(strict=True)``:

* ``res``: a ResNet-50 (torchvision layout, no classifier) whose stages 1-3 feed local distortion aware
  (LDA) branches (``res.lda{1,2,3}_pool``: 1x1 conv + 7x7 average pool; ``res.lda{1,2,3}_fc``: 16 each)
  and whose last stage feeds ``res.lda4_fc`` (2048 -> 176); together the 224-d input of the target network.
* ``conv1``: 1x1 convs 2048 -> 1024 -> 512 -> 112 on the last stage (7x7): the hyper network's features.
* ``fc{1..4}w_conv`` (3x3 convs) and ``fc{1..4}b_fc``, ``fc5w_fc``, ``fc5b_fc`` (linear on the pooled
  features) generate, per image, the weights and biases of the 5-layer target network
  224 -> 112 -> 56 -> 28 -> 14 -> 1 (sigmoid after the first four layers).

The target network is evaluated here with batched matrix products instead of the official grouped
convolutions; the arithmetic is the same. Scores are on KonIQ-10k's MOS scale (about 0-100); LatentSync's
curation keeps clips whose mean HyperIQA score over 3 frames is at least 40 (their
``preprocess/filter_visual_quality.py``: the 256x256 aligned crop, CenterCrop 224, ImageNet normalisation).
Note that pyiqa's ``hyperiqa`` metric is rescaled to about 0-1 and averages 25 random crops: not this scale.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from pt_data.iqa import ImageQualityScorer, check_crops

if TYPE_CHECKING:
    from pt_data.weights import WeightsRegistry

WEIGHTS_NAME = "hyperiqa-koniq"
INPUT_SIZE = 224
RESIZE_TO = 256  # crops of another size are resized to this before the centre crop
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNet50LDA(nn.Module):
    """ResNet-50 features (``hyper_in_feat``, N x 2048 x 7 x 7) and the LDA vector (``target_in_vec``)."""

    def __init__(self, lda_out_channels: int = 16, target_in_size: int = 224) -> None:
        super().__init__()
        base = torchvision.models.resnet50(weights=None)  # reused for its layers; fc and avgpool are dropped
        self.conv1, self.bn1, self.relu, self.maxpool = base.conv1, base.bn1, base.relu, base.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = base.layer1, base.layer2, base.layer3, base.layer4
        # LDA branches: a 1x1 conv to few channels, 7x7 average pooling, a linear map to lda_out_channels.
        # With a 224 input the stages are 56, 28, 14, 7 px: pooled to 8x8, 4x4, 2x2, 1x1.
        for i, (chn, mid, cells) in enumerate(((256, 16, 64), (512, 32, 16), (1024, 64, 4)), start=1):
            self.add_module(f"lda{i}_pool", nn.Sequential(nn.Conv2d(chn, mid, 1, bias=False), nn.AvgPool2d(7, 7)))
            self.add_module(f"lda{i}_fc", nn.Linear(mid * cells, lda_out_channels))
        self.lda4_pool = nn.AvgPool2d(7, 7)
        self.lda4_fc = nn.Linear(2048, target_in_size - 3 * lda_out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        vec = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            vec.append(getattr(self, f"lda{i}_fc")(getattr(self, f"lda{i}_pool")(x).flatten(1)))
        return x, torch.cat(vec, 1)


class HyperNet(nn.Module):
    """HyperIQA: ImageNet-normalised (N, 3, 224, 224) images -> (N,) quality scores (KonIQ scale)."""

    def __init__(self, lda_out_channels: int = 16, hyper_in_channels: int = 112, target_in_size: int = 224,
                 target_fc_sizes: tuple[int, int, int, int] = (112, 56, 28, 14), feature_size: int = 7) -> None:
        super().__init__()
        self.sizes = (target_in_size, *target_fc_sizes)
        self.res = ResNet50LDA(lda_out_channels, target_in_size)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Sequential(
            nn.Conv2d(2048, 1024, 1), nn.ReLU(inplace=True),
            nn.Conv2d(1024, 512, 1), nn.ReLU(inplace=True),
            nn.Conv2d(512, hyper_in_channels, 1), nn.ReLU(inplace=True),
        )
        cells = feature_size**2
        for i in range(1, 5):  # layer i of the target net maps sizes[i-1] -> sizes[i]
            fan = self.sizes[i - 1] * self.sizes[i]
            if fan % cells:
                raise ValueError(f"target layer {i} ({fan} weights) is not divisible by feature_size^2 = {cells}")
            self.add_module(f"fc{i}w_conv", nn.Conv2d(hyper_in_channels, fan // cells, 3, padding=1))
            self.add_module(f"fc{i}b_fc", nn.Linear(hyper_in_channels, self.sizes[i]))
        self.fc5w_fc = nn.Linear(hyper_in_channels, self.sizes[4])
        self.fc5b_fc = nn.Linear(hyper_in_channels, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal weights for the LDA and hyper layers, as the official code initialises them."""
        for name, m in self.named_modules():
            is_head = name.startswith(("res.lda", "fc"))
            if is_head and isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat, q = self.res(x)
        h = self.conv1(feat)  # (N, hyper_in, 7, 7)
        pooled = self.pool(h).flatten(1)
        n = x.shape[0]
        for i in range(1, 5):  # per-image weights: the conv output read as (out, in), as the official .view
            w = getattr(self, f"fc{i}w_conv")(h).reshape(n, self.sizes[i], self.sizes[i - 1])
            b = getattr(self, f"fc{i}b_fc")(pooled)
            q = torch.sigmoid(torch.baddbmm(b.unsqueeze(-1), w, q.unsqueeze(-1)).squeeze(-1))
        return (self.fc5w_fc(pooled) * q).sum(1) + self.fc5b_fc(pooled)[:, 0]


def random_hypernet(seed: int = 0) -> HyperNet:
    """A HyperNet with random weights (deterministic for ``seed``; the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HyperNet()


def load_hypernet(path: str | os.PathLike, device: str = "cpu") -> HyperNet:
    """A HyperNet with the state dict in ``path`` (the official ``koniq_pretrained.pkl`` or one saved from ours).

    Loaded with ``weights_only=True`` and ``strict=True``: a file of another architecture is a ``ValueError``
    naming the file.
    """
    state = torch.load(path, map_location=device, weights_only=True)
    net = HyperNet()
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a HyperIQA state dict (expected SSL92/hyperIQA's koniq_pretrained.pkl "
                         f"layout): {e}") from e
    return net.to(device).eval()


def preprocess(crops: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, 224, 224) float: resize to 256 if needed, CenterCrop 224, ImageNet norm."""
    x = torch.from_numpy(check_crops(crops)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (RESIZE_TO, RESIZE_TO):
        x = F.interpolate(x, size=(RESIZE_TO, RESIZE_TO), mode="bilinear", antialias=True, align_corners=False)
    top = (RESIZE_TO - INPUT_SIZE) // 2
    x = x[..., top:top + INPUT_SIZE, top:top + INPUT_SIZE]
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class HyperIQAScorer(ImageQualityScorer):
    """``hyperiqa-koniq``: HyperIQA with the KonIQ-10k weights on the centre 224 of the 256 face crop.

    ``default_threshold`` is LatentSync's 40. A ResNet-50 per frame is expensive (about 4 GFLOPs), so the
    recommended stride is one frame a second (``default_every = 25`` at 25 fps, plus the first, middle and
    last frames), close to LatentSync's 3 frames per 5 s segment.
    """

    default_threshold: float = 40.0
    default_every: int = 25

    def __init__(self, net: HyperNet, *, name: str = WEIGHTS_NAME, device: str = "cpu", batch_size: int = 32
                 ) -> None:
        self.net = net.to(device).eval()
        self.name = name
        self.device = device
        self.batch_size = batch_size

    @classmethod
    def create(cls, *, weights: WeightsRegistry | None = None, device: str = "cpu", random_weights: bool = False,
               batch_size: int = 32) -> "HyperIQAScorer":
        """The official weights from ``weights`` (``hyperiqa-koniq``), or random ones named as such."""
        if random_weights:
            return cls(random_hypernet(), name=f"{WEIGHTS_NAME}+random-weights", device=device,
                       batch_size=batch_size)
        from pt_data.weights import WeightsRegistry

        path = (weights or WeightsRegistry()).path(WEIGHTS_NAME)  # MissingWeightsError says where to get it
        return cls(load_hypernet(path, device), device=device, batch_size=batch_size)

    @torch.inference_mode()
    def score(self, crops: np.ndarray) -> np.ndarray:
        crops = check_crops(crops)
        out = [self.net(preprocess(crops[i:i + self.batch_size], self.device)).float().cpu()
               for i in range(0, len(crops), self.batch_size)]
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros(0, np.float32)
