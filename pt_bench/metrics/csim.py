"""CSIM: cosine similarity of ArcFace identity embeddings of a generated video and its reference.

Network: insightface's ``buffalo_l`` recognition model ``w600k_r50.onnx`` (ResNet-50 ArcFace trained on
WebFace600K) run with onnxruntime, from the registry file ``arcface-w600k-r50``. Input preprocessing is
insightface's ``ArcFaceONNX``: RGB, ``(x - 127.5) / 127.5`` (or ``x`` unchanged for MXNet exports whose graph
starts with Sub/Mul nodes, detected the same way), NCHW float32.

Faces: 112x112 crops aligned by the standard ArcFace 5-point template (insightface ``arcface_dst``) with a
least-squares similarity (Umeyama, as ``skimage.transform.SimilarityTransform.estimate`` in insightface's
``norm_crop``), bilinear warp, black border. The 5 points come from MediaPipe's face mesh on the full frame:
the eye centres as the midpoints of each eye's two corners (33/133 and 362/263), the nose tip (1) and the
mouth corners (61, 291). Frames without a face are skipped.

Score: each video's identity is the mean of its frames' L2-normalised embeddings over the first
``min(T_pred, T_ref)`` frames; CSIM is the cosine of the two means.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from pt_bench.metrics.base import Metric, MetricResult, paired_length
from pt_bench.video import BenchVideo, NoFaceError

WEIGHTS_NAME = "arcface-w600k-r50"
ARCFACE_SIZE = 112
#: insightface ``face_align.arcface_dst``: left eye, right eye, nose tip, left and right mouth corner (image side).
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
#: MediaPipe indices per template point; eye entries are averaged (corner pairs), the others used as is.
MEDIAPIPE_FIVE_POINTS: tuple[tuple[int, ...], ...] = ((33, 133), (362, 263), (1,), (61,), (291,))


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """``(..., 5, 2)`` ArcFace alignment points from ``(..., 478, 2)`` MediaPipe landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.stack([lm[..., list(ids), :].mean(axis=-2) for ids in MEDIAPIPE_FIVE_POINTS], axis=-2)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` least-squares similarity mapping ``src`` to ``dst`` (rotation, uniform scale, translation;
    no reflection).

    Umeyama (1991), the estimator of ``skimage.transform.SimilarityTransform.estimate``.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (N >= 2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.array([1.0, -1.0 if np.linalg.det(cov) < 0 else 1.0])
    rot = u @ np.diag(d) @ vt
    var_s = (sc ** 2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("degenerate source points (all equal)")
    scale = (s * d).sum() / var_s
    t = mu_d - scale * rot @ mu_s
    return np.concatenate([scale * rot, t[:, None]], axis=1)


def align_faces(frames: np.ndarray, points: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 ArcFace crops of ``(N, H, W, 3)`` frames given ``(N, 5, 2)`` points."""
    dst = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    return np.stack([cv2.warpAffine(np.ascontiguousarray(f), similarity_transform(p, dst), (size, size),
                                    borderValue=0.0) for f, p in zip(frames, points)])


class ArcFaceEncoder:
    """An insightface recognition ONNX model in onnxruntime: aligned ``(N, 112, 112, 3)`` uint8 RGB -> ``(N, D)``.

    ``model``: a file path or the serialised model bytes. ``random_weights`` marks a test model.
    """

    def __init__(self, model: str | os.PathLike | bytes, *, device: str = "cpu", random_weights: bool = False,
                 batch_size: int = 32) -> None:
        import onnx
        import onnxruntime as ort

        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(os.fspath(model))
        names = [n.name for n in proto.graph.node[:8]]
        mxnet_style = (any(n.startswith(("Sub", "_minus")) for n in names)
                       and any(n.startswith(("Mul", "_mul")) for n in names))
        self.input_mean, self.input_std = (0.0, 1.0) if mxnet_style else (127.5, 127.5)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(proto.SerializeToString(), providers=providers)
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or list(inp.shape[1:]) != [3, ARCFACE_SIZE, ARCFACE_SIZE]:
            raise ValueError(f"{model if not isinstance(model, bytes) else 'model'}: expected an ArcFace input "
                             f"(N, 3, 112, 112), got {inp.shape}")
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.random_weights = random_weights
        self.batch_size = batch_size

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """Raw embeddings ``(N, D)`` float32 of aligned RGB uint8 faces."""
        out = []
        for start in range(0, len(faces), self.batch_size):
            x = np.asarray(faces[start:start + self.batch_size], np.float32).transpose(0, 3, 1, 2)
            blob = np.ascontiguousarray((x - self.input_mean) / self.input_std, dtype=np.float32)
            out.append(self.session.run([self.output_name], {self.input_name: blob})[0])
        return np.concatenate(out).astype(np.float32)


def build_random_arcface_onnx(seed: int = 0, embed_dim: int = 512) -> bytes:
    """A tiny RANDOM model with ArcFace's signature (``input.1``: (N, 3, 112, 112) -> (N, embed_dim)).

    Conv 3->8 (8x8, stride 8) - ReLU - Flatten - Gemm; for tests and smoke runs only: its "identity"
    similarities mean nothing.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w_conv = rng.normal(0, 0.05, (8, 3, 8, 8)).astype(np.float32)
    b_conv = rng.normal(0, 0.05, 8).astype(np.float32)
    w_fc = rng.normal(0, 0.05, (8 * 14 * 14, embed_dim)).astype(np.float32)
    b_fc = rng.normal(0, 0.05, embed_dim).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input.1", "w_conv", "b_conv"], ["c"], name="Conv_0", kernel_shape=[8, 8],
                         strides=[8, 8]),
        helper.make_node("Relu", ["c"], ["r"], name="Relu_1"),
        helper.make_node("Flatten", ["r"], ["f"], name="Flatten_2", axis=1),
        helper.make_node("Gemm", ["f", "w_fc", "b_fc"], ["embedding"], name="Gemm_3"),
    ]
    graph = helper.make_graph(
        nodes, "random_arcface_for_tests",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, ARCFACE_SIZE, ARCFACE_SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", embed_dim])],
        initializer=[numpy_helper.from_array(a, n) for a, n in
                     ((w_conv, "w_conv"), (b_conv, "b_conv"), (w_fc, "w_fc"), (b_fc, "b_fc"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="personatalk-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def identity_embedding(encoder: ArcFaceEncoder, frames: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, int]:
    """Mean of the L2-normalised embeddings of the frames that have a face, and how many there were."""
    valid = ~np.isnan(landmarks).any(axis=(1, 2))
    if not valid.any():
        raise NoFaceError(f"no face in any of the {len(frames)} frames")
    emb = encoder.embed(align_faces(frames[valid], five_points(landmarks[valid]))).astype(np.float64)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return emb.mean(axis=0), int(valid.sum())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


class CSIM(Metric):
    name = "csim"
    higher_is_better = True
    region = "112x112 ArcFace-aligned face (5 MediaPipe points)"
    weights = (WEIGHTS_NAME,)
    extra_columns = ("csim_frames",)
    protocol = ("CSIM: cosine of the mean L2-normalised insightface w600k_r50 ArcFace embeddings of pred vs "
                "reference frames (112x112, 5-point ArcFace template from MediaPipe eye-corner midpoints, nose "
                "tip, mouth corners), first min(T) frames, frames without a face skipped")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        model = (build_random_arcface_onnx(self.seed) if self.random_weights
                 else self.registry.path(WEIGHTS_NAME))
        self.encoder = ArcFaceEncoder(model, device=self.device, random_weights=self.random_weights)

    def identity(self, video: BenchVideo, num_frames: int) -> tuple[np.ndarray, int]:
        """The video's identity vector over its first ``num_frames`` frames (memoised on the video)."""
        def compute() -> tuple[np.ndarray, int]:
            try:
                return identity_embedding(self.encoder, video.frames[:num_frames], video.landmarks()[:num_frames])
            except NoFaceError as e:
                raise NoFaceError(f"CSIM of {video.name}: {e}") from None

        return video.memo(f"arcface:{self.cache_key()}:{num_frames}", compute)

    def evaluate(self, pred: BenchVideo, ref: BenchVideo) -> MetricResult:
        n = paired_length(pred, ref)
        (p, count), (r, _) = self.identity(pred, n), self.identity(ref, n)
        return MetricResult(cosine(p, r), {"csim_frames": float(count)})
