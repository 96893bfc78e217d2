"""Shared fixtures: tiny clips made in memory, the shared real data (skipped when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GLOG_minloglevel", "2")

SHARED_DATA = Path(os.environ.get("PT_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "videos").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set PT_SHARED_DATA to the shared/data folder)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for a module: tiny models gain nothing from more on a small shared CI box."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def face_model():
    """The default morphable model (ICT-FaceKit light face from the shared data); skipped when unavailable."""
    from pt_data.face_model import FaceModelError
    from pt_data.face_model_convert import default_face_model

    try:
        return default_face_model()
    except FaceModelError as e:
        pytest.skip(f"no face model available: {e}")


@pytest.fixture(scope="session")
def mediapipe_face_model():
    """The ICT face reduced to its 478 MediaPipe-corresponding vertices and 20 identity modes (fast fits)."""
    from pt_data.face_model import FaceModel
    from pt_data.face_model_convert import default_face_model, shared_data_dir

    if shared_data_dir() is None:
        pytest.skip("the ICT face model in ../shared/data is needed (set PT_SHARED_DATA)")
    full = default_face_model()
    ids = full.mediapipe_ids
    return FaceModel(name="ict-mediapipe-subset", mean=full.mean[ids], id_basis=full.id_basis[:20, ids],
                     exp_basis=full.exp_basis[:, ids], triangles=np.array([[0, 1, 2]]),
                     landmark68_ids=np.zeros(68, int), mediapipe_ids=np.arange(478),
                     mediapipe_weights=full.mediapipe_weights, masks={k: v[ids] for k, v in full.masks.items()},
                     exp_names=full.exp_names, exp_lower=full.exp_lower, exp_upper=full.exp_upper)


def make_clip(i: int, num_frames: int = 4, *, speaker: str = "spk0", seed: int = 0, geometry: bool = False):
    """A valid tiny clip with random 256x256 frames (deterministic by ``seed`` and ``i``)."""
    from pt_data.clip import Clip
    from pt_data.jpeg import encode_jpeg

    rng = np.random.default_rng([seed, i])
    frames = [encode_jpeg(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), 80) for _ in range(num_frames)]
    return Clip(
        clip_id=f"test-{seed}-{i:05d}", dataset="test", speaker_id=speaker, source_uri=f"mem://{i}",
        start_s=float(i), end_s=float(i) + num_frames / 25, frames=frames,
        audio=rng.integers(-3000, 3000, num_frames * 640, dtype=np.int16),
        crop_affine=rng.normal(size=(num_frames, 2, 3)).astype(np.float32),
        landmarks=rng.uniform(0, 256, (num_frames, 478, 2)).astype(np.float32),
        shape=rng.normal(size=100).astype(np.float32) if geometry else None,
        expression=rng.normal(size=(num_frames, 57)).astype(np.float32) if geometry else None,
        pose=rng.normal(size=(num_frames, 6)).astype(np.float32) if geometry else None,
        iqa_score=50.0 + i if geometry else None,
    )


@pytest.fixture
def clip_factory():
    return make_clip
