"""SyncScore: LSE-C and LSE-D of a video with its own audio, SyncNet ``syncnet_v2`` (syncnet_python protocol).

The network, the loading of ``syncnet_v2.model`` and the windowing are :mod:`pt_data.syncnet`'s
(``SyncNetInstance.evaluate``): 25 fps video, 16 kHz mono audio, 13 MFCC at 100 Hz
(``python_speech_features.mfcc`` defaults), 5-frame video windows against 20-MFCC audio windows, offsets
``-15..+15`` frames; per offset the mean over windows of the L2 distance; LSE-D = the smallest mean
distance, LSE-C = median - min of the 31 means, offset = ``15 - argmin`` (reported as the extra column
``lse_offset``, with ``lse_windows``).

Input frames: each video's own 256x256 face crop (:func:`pt_bench.video.face_crop_transforms` of the video
itself: SyncScore needs no reference), resized to 224x224 BGR as :func:`pt_data.syncnet.syncnet_frames`
does. The official pipeline crops S3FD boxes (``crop_scale 0.40``) instead: our numbers are internally
consistent but only comparable with published LSE values computed on the same kind of crop.
The video must be at 25 fps (load with ``resample_fps=25``); a different rate is an error, not a silent
mismatch of audio and video windows.
"""
from __future__ import annotations

import numpy as np
import torch

from pt_data.syncnet import load_syncnet, offset_and_confidence, pairwise_offset_distances, sync_embeddings
from pt_data.sync_filter import SyncResult

from pt_bench.metrics.base import Metric, MetricResult
from pt_bench.video import BenchVideo, face_crop_transforms, face_crops

WEIGHTS_NAME = "syncnet_v2"
SYNC_FPS = 25.0
VSHIFT = 15


def lse_from_embeddings(video_emb: np.ndarray | torch.Tensor, audio_emb: np.ndarray | torch.Tensor,
                        vshift: int = VSHIFT) -> tuple[int, float, float]:
    """``(offset, lse_c, lse_d)`` from per-window SyncNet embeddings ``(N, D)`` (batched over all offsets)."""
    return offset_and_confidence(pairwise_offset_distances(video_emb, audio_emb, vshift), vshift)


def sync_crops(video: BenchVideo) -> np.ndarray:
    """The video's own 256x256 face crops, the frames SyncNet scores."""
    return face_crops(video, face_crop_transforms(video))


class _SyncMetric(Metric):
    needs_reference = False
    region = "the video's own 256x256 face crop, resized to 224x224 (BGR)"
    weights = (WEIGHTS_NAME,)
    extra_columns = ("lse_offset", "lse_windows")

    def __init__(self, *, vshift: int = VSHIFT, batch_size: int = 20, **kwargs) -> None:
        super().__init__(**kwargs)
        self.vshift = vshift
        self.batch_size = batch_size
        self.model = load_syncnet(self.registry, self.device, self.random_weights, seed=self.seed)
        self.protocol = (f"SyncNet syncnet_v2 on the video's own audio (syncnet_python evaluate): 25 fps, 16 kHz, "
                         f"13 MFCC, 5-frame windows, offsets -{vshift}..+{vshift}; LSE-D = min over offsets of the "
                         "mean distance, LSE-C = median - min; frames = own 256 face crop resized to 224")

    def sync_result(self, video: BenchVideo) -> SyncResult:
        """SyncNet's verdict on ``video`` (memoised on the video, shared by ``lse_c`` and ``lse_d``)."""
        if abs(video.fps - SYNC_FPS) > 1e-3:
            raise ValueError(f"{video.name}: SyncScore needs 25 fps video, got {video.fps:.3f} fps; load it with "
                             "load_bench_video(path, resample_fps=25)")
        if video.audio is None:
            raise ValueError(f"{video.name}: the video has no audio track, and SyncScore scores a video with its audio")

        def compute() -> SyncResult:
            v, a = sync_embeddings(self.model, sync_crops(video), video.audio_pcm16(), batch_size=self.batch_size,
                                   device=self.device)
            offset, conf, dist = lse_from_embeddings(v, a, self.vshift)
            return SyncResult(offset=offset, conf=conf, min_dist=dist, num_windows=len(v),
                              random_weights=self.random_weights)

        return video.memo(f"sync:{self.weights_identity()}:vshift={self.vshift}", compute)

    def _value(self, result: SyncResult) -> float:
        raise NotImplementedError

    def evaluate(self, pred: BenchVideo, ref: BenchVideo | None = None) -> MetricResult:
        r = self.sync_result(pred)
        return MetricResult(self._value(r), {"lse_offset": float(r.offset), "lse_windows": float(r.num_windows)})


class LSEC(_SyncMetric):
    name = "lse_c"
    higher_is_better = True

    def _value(self, result: SyncResult) -> float:
        return result.conf


class LSED(_SyncMetric):
    name = "lse_d"
    higher_is_better = False

    def _value(self, result: SyncResult) -> float:
        return result.min_dist
