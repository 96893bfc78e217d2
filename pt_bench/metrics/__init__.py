"""The benchmark's metrics: one registry name per :class:`~pt_bench.metrics.base.Metric` subclass.

``create_metric(name)`` builds one with its pretrained files from the weights registry; a missing file is
a :class:`pt_data.weights.MissingWeightsError` naming it, unless ``random_weights=True`` (tests and smoke
runs; every number is then "random weights: not comparable").

Not offered:

- ``idsim_facenet``: facenet-pytorch's ``InceptionResnetV1`` weights do NOT ship inside its wheel (2.6.0
  carries only the MTCNN ``pnet/rnet/onet.pt``; the VGGFace2 / CASIA weights are downloaded on first use),
  so no identity similarity is available without an ArcFace file.
"""
from __future__ import annotations

import os

from pt_bench.metrics.base import Metric, MetricResult, PROTOCOL_VERSION
from pt_bench.metrics.csim import CSIM
from pt_bench.metrics.fid import FID
from pt_bench.metrics.lmd import LMD
from pt_bench.metrics.lpips_metric import LPIPS
from pt_bench.metrics.pixel import PSNR, SSIM, PSNRFace, SSIMFace
from pt_bench.metrics.stylesim import StyleSim
from pt_bench.metrics.sync import LSEC, LSED

#: registry name -> class. Heavy dependencies (pytorch-fid, lpips, onnx/onnxruntime, MediaPipe) are imported
#: only when an instance is built.
METRICS: dict[str, type[Metric]] = {cls.name: cls for cls in (
    SSIM, PSNR, SSIMFace, PSNRFace, FID, LPIPS, LMD, LSEC, LSED, CSIM, StyleSim,
)}


def create_metric(name: str, *, device: str = "cpu", weights_dir: str | os.PathLike | None = None,
                  random_weights: bool = False, **options) -> Metric:
    """An instance of metric ``name`` on ``device`` (``options`` go to the class, e.g. ``batch_size``).

    Raises ``KeyError`` (listing the names) for an unknown name and
    :class:`pt_data.weights.MissingWeightsError` when a pretrained file is missing and ``random_weights`` is False.
    """
    if name not in METRICS:
        raise KeyError(f"no metric named {name!r}; available: {', '.join(METRICS)}")
    return METRICS[name](device=device, weights_dir=weights_dir, random_weights=random_weights, **options)


__all__ = ["METRICS", "Metric", "MetricResult", "PROTOCOL_VERSION", "create_metric"]
