"""SyncNet (``syncnet_v2``) audio-visual sync scoring: the network, its weights, and the LSE-C / LSE-D protocol.

The network is the architecture of joonson/syncnet_python ``SyncNetModel.S`` (also copied into Wav2Lip's
``evaluation/scores_LSE`` and LatentSync's eval): an audio CNN over MFCC windows ``(B, 1, 13, 20)`` (0.2 s)
and a 3D lip CNN over 5-frame RGB windows ``(B, 3, 5, 224, 224)`` (0.2 s at 25 fps), each followed by an MLP
to a 1024-d embedding. Module and parameter names follow that code, so the official ``syncnet_v2.model``
state dict loads strictly.

Scoring follows ``SyncNetInstance.evaluate`` (``shared/ANCHORS.md`` §3.1): frames as raw BGR floats in
[0, 255] resized to 224x224 (``cv2.resize``, bilinear, as Wav2Lip's copy does), MFCC of the whole audio
(:func:`pt_data.mfcc.mfcc`, = ``python_speech_features.mfcc(audio, 16000)``), ``min_length = min(T,
floor(len(audio) / 640))``, for every ``i < min_length - 5`` the video window ``[i, i+5)`` and the MFCC window
``[4i, 4i+20)``, then per window the L2 distance between the video embedding and the audio embeddings shifted
by ``-vshift..+vshift`` windows (zero-padded), averaged over windows; ``min_dist`` (LSE-D) is the smallest mean
distance, ``offset = vshift - argmin`` and ``conf`` (LSE-C) = median - min.

One difference from the official pipeline is on the input side, not here: our clips are landmark-aligned
256x256 crops, whereas ``run_pipeline.py`` crops S3FD boxes with ``crop_scale 0.40``; numbers computed on our
crops are internally consistent but only comparable with published LSE values when computed on the same
kind of crop.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import cv2
import numpy as np
import torch
from torch import nn

from pt_data.mfcc import mfcc
from pt_data.sync_filter import SyncFilterConfig, SyncResult, sync_verdict  # noqa: F401 - re-exported
from pt_data.weights import WeightsRegistry

WEIGHTS_NAME = "syncnet_v2"
EMBED_DIM = 1024
VIDEO_WINDOW = 5  # frames per lip window (0.2 s at 25 fps)
MFCC_WINDOW = 20  # MFCC frames per audio window (0.2 s at 100 Hz)
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps video
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
SAMPLE_RATE = 16000
INPUT_SIZE = 224
_KEY_PREFIXES = ("__S__.", "module.")  # SyncNetInstance attribute / DataParallel wrappers


class SyncNet(nn.Module):
    """syncnet_python's ``S``: ``forward_aud`` (MFCC windows) and ``forward_lip`` (5-frame windows) -> 1024-d.

    The ``nn.Sequential`` indices (including parameter-free ReLU / pooling slots, and the audio branch's
    no-op 1x1 max-pool) are kept so that state-dict keys such as ``netcnnaud.18.weight`` match the official
    file. ``random_weights`` is True until :func:`load_syncnet` fills the parameters from a file.
    """

    def __init__(self, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.random_weights = True
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, 3, stride=1, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(1, stride=1),  # 0-3
            nn.Conv2d(64, 192, 3, stride=1, padding=1), nn.BatchNorm2d(192), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=(1, 2)),  # 4-7
            nn.Conv2d(192, 384, 3, padding=1), nn.BatchNorm2d(384), nn.ReLU(inplace=True),  # 8-10
            nn.Conv2d(384, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(inplace=True),  # 11-13
            nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),  # 14-17
            nn.Conv2d(256, 512, (5, 4)), nn.BatchNorm2d(512), nn.ReLU(),  # 18-20: (13, 20) input -> 1x1
        )
        self.netfcaud = _embedding_head(embed_dim)
        self.netfclip = _embedding_head(embed_dim)
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), nn.BatchNorm3d(96), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),  # 0-3
            nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(256),
            nn.ReLU(inplace=True), nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # 4-7
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),  # 8-10
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),  # 11-13
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),  # 14-17
            nn.Conv3d(256, 512, (1, 6, 6)), nn.BatchNorm3d(512), nn.ReLU(inplace=True),  # 18-20: 224 input -> 1x1
        )

    def forward_aud(self, mfcc_windows: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 13, 20)`` MFCC windows -> ``(B, embed_dim)``."""
        return self.netfcaud(self.netcnnaud(mfcc_windows).flatten(1))

    def forward_lip(self, frame_windows: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 5, 224, 224)`` BGR float frame windows in [0, 255] -> ``(B, embed_dim)``."""
        return self.netfclip(self.netcnnlip(frame_windows).flatten(1))


def _embedding_head(embed_dim: int) -> nn.Sequential:
    """``Linear(512, 512) - BatchNorm1d - ReLU - Linear(512, embed_dim)`` (``netfcaud`` / ``netfclip``)."""
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))


def load_syncnet(weights: WeightsRegistry | None = None, device: str | torch.device = "cpu",
                 random_weights: bool = False, *, seed: int = 0) -> SyncNet:
    """The pretrained ``syncnet_v2`` network in eval mode on ``device``.

    The file is ``WeightsRegistry().path("syncnet_v2")`` (``syncnet_v2.model``); a missing file raises
    :class:`pt_data.weights.MissingWeightsError`. ``random_weights=True`` (tests and smoke runs only) skips
    the file and initialises from ``seed`` without touching the global RNG; the model's ``random_weights``
    flag stays True and every :class:`SyncResult` it produces says so.
    """
    if random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SyncNet()
    else:
        path = (weights or WeightsRegistry()).path(WEIGHTS_NAME)
        model = SyncNet()
        model.load_state_dict(read_syncnet_state_dict(path, model), strict=True)
        model.random_weights = False
    return model.to(device).eval()


def read_syncnet_state_dict(path: str | os.PathLike, model: SyncNet) -> dict[str, torch.Tensor]:
    """The official file's tensors, keyed like ``model.state_dict()``.

    ``syncnet_v2.model`` is a pickled plain state dict (``SyncNetInstance.loadParameters`` does
    ``torch.load`` and copies entries by name into ``S``; the current upstream code loads it with
    ``weights_only=True``), so the safe loader applies; legacy (pre-zip) torch files work with it too.
    ``__S__.`` / ``module.`` key prefixes are stripped. BatchNorm ``num_batches_tracked`` counters, which
    files from torch < 0.4.1 lack and which inference never reads, are filled from ``model``; any other
    missing or unexpected key is an error naming the file.
    """
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: expected a SyncNet state dict (name -> tensor), got {type(loaded).__name__}")
    state = {_strip_prefixes(k): v for k, v in loaded.items()}
    own = model.state_dict()
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path} is not a syncnet_v2 state dict: missing {missing[:5]} ({len(missing)}), "
                         f"unexpected {unexpected[:5]} ({len(unexpected)}); get the official "
                         f"syncnet_v2.model from joonson/syncnet_python")
    return state


def _strip_prefixes(key: str) -> str:
    for prefix in _KEY_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def pairwise_offset_distances(video_emb: np.ndarray | torch.Tensor, audio_emb: np.ndarray | torch.Tensor,
                              vshift: int) -> np.ndarray:
    """``(N, 2 vshift + 1)`` distances: row ``i``, column ``j`` = ``|| v_i - a_{i + j - vshift} + 1e-6 ||_2``.

    Audio embeddings outside ``[0, N)`` are zero vectors (``calc_pdist`` pads with zeros), and the 1e-6 is
    ``torch.nn.functional.pairwise_distance``'s default eps, as in the official code.
    """
    v = torch.as_tensor(video_emb).float()
    a = torch.as_tensor(audio_emb).float()
    if v.ndim != 2 or v.shape != a.shape:
        raise ValueError(f"video and audio embeddings must both be (N, D), got {tuple(v.shape)} / {tuple(a.shape)}")
    padded = nn.functional.pad(a, (0, 0, vshift, vshift))
    shifted = padded.unfold(0, 2 * vshift + 1, 1).transpose(1, 2)  # (N, 2 vshift + 1, D)
    return nn.functional.pairwise_distance(v[:, None, :], shifted).numpy()


def offset_and_confidence(dists: np.ndarray, vshift: int) -> tuple[int, float, float]:
    """``(offset, conf, min_dist)`` from ``(N, 2 vshift + 1)`` window-by-offset distances.

    Mean over windows per offset; ``min_dist`` = smallest mean, ``offset = vshift - argmin`` (first argmin,
    as ``torch.min``), ``conf = median - min_dist`` (the median of an odd count is its middle value, so numpy
    and torch agree).
    """
    dists = np.asarray(dists, dtype=np.float64)
    if dists.ndim != 2 or dists.shape[1] != 2 * vshift + 1 or dists.shape[0] == 0:
        raise ValueError(f"expected (N >= 1, {2 * vshift + 1}) distances for vshift={vshift}, got {dists.shape}")
    mean = dists.mean(axis=0)
    best = int(np.argmin(mean))
    return vshift - best, float(np.median(mean) - mean[best]), float(mean[best])


def syncnet_frames(crops: np.ndarray) -> np.ndarray:
    """RGB uint8 crops ``(T, H, W, 3)`` -> the BGR uint8 ``(T, 224, 224, 3)`` frames SyncNet reads."""
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be (T, H, W, 3) RGB, got {crops.shape}")
    return np.stack([cv2.resize(np.ascontiguousarray(f[..., ::-1]), (INPUT_SIZE, INPUT_SIZE)) for f in crops])


def num_sync_windows(num_frames: int, num_audio_samples: int) -> int:
    """How many 5-frame windows the protocol scores: ``min(T, floor(samples / 640)) - 5`` (may be <= 0)."""
    return min(num_frames, num_audio_samples // SAMPLES_PER_FRAME) - VIDEO_WINDOW


@torch.inference_mode()
def sync_embeddings(model: SyncNet, crops: np.ndarray, audio: np.ndarray, *, batch_size: int = 20,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Video and audio embeddings ``(N, D)`` of every protocol window of a clip (float32, on the CPU).

    ``crops``: ``(T, H, W, 3)`` uint8 RGB at 25 fps; ``audio``: 16 kHz mono int16 aligned to frame 0.
    Raises ``ValueError`` when fewer than 6 frames of both video and audio are available.
    """
    audio = np.asarray(audio)
    n = num_sync_windows(len(crops), len(audio))
    if n <= 0:
        raise ValueError(f"SyncNet needs at least {VIDEO_WINDOW + 1} frames of video and audio "
                         f"({VIDEO_WINDOW + 1} x {SAMPLES_PER_FRAME} samples); got {len(crops)} frames and "
                         f"{len(audio)} samples ({len(audio) / SAMPLES_PER_FRAME:.2f} frames)")
    frames = syncnet_frames(crops)
    cc = torch.from_numpy(mfcc(audio, SAMPLE_RATE).T.astype(np.float32))  # (13, num_mfcc_frames)
    video_out, audio_out = [], []
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        clip = torch.from_numpy(frames[start:stop + VIDEO_WINDOW - 1]).to(device).float()  # (F, H, W, C)
        lip = clip.permute(3, 0, 1, 2).unfold(1, VIDEO_WINDOW, 1).permute(1, 0, 4, 2, 3)  # (B, C, 5, H, W)
        aud = torch.stack([cc[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_WINDOW] for i in range(start, stop)])
        video_out.append(model.forward_lip(lip.contiguous()).float().cpu())
        audio_out.append(model.forward_aud(aud[:, None].to(device)).float().cpu())
    return torch.cat(video_out), torch.cat(audio_out)


def sync_score(model: SyncNet, crops: np.ndarray, audio: np.ndarray, *, vshift: int = 15, batch_size: int = 20,
               device: str | torch.device = "cpu") -> SyncResult:
    """SyncNet offset, confidence (LSE-C) and min distance (LSE-D) of one clip (``SyncNetInstance.evaluate``).

    ``model`` must already be on ``device`` (see :func:`load_syncnet`).
    """
    video_emb, audio_emb = sync_embeddings(model, crops, audio, batch_size=batch_size, device=device)
    offset, conf, min_dist = offset_and_confidence(pairwise_offset_distances(video_emb, audio_emb, vshift), vshift)
    return SyncResult(offset=offset, conf=conf, min_dist=min_dist, num_windows=len(video_emb),
                      random_weights=bool(getattr(model, "random_weights", True)))
