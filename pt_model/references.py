"""Reference selection for stage 2, as PAPER.md's Algorithm 1 (frames here are 0-indexed).

Training, target frame ``i`` of a clip of ``T`` frames:

* face references: ``N_f`` frames at ``linspace(max(0, i - 2 N_f), min(T - 1, i + 2 N_f), N_f)``, rounded half
  up (so the 0-indexed result is exactly the paper's 1-indexed one minus one);
* lip references: ``N_l`` frames drawn at random from the whole clip (without replacement when ``T >= N_l``,
  with replacement otherwise).

Inference, reference video of ``T`` frames:

* face references of frame ``i``: the ``N_f`` frames centred on ``i`` (``i - N_f // 2`` .. ``i - N_f // 2 +
  N_f - 1``), clipped to the video as in Algorithm 1; the network takes a fixed number of references, so the
  clipped positions repeat the nearest frame inside the video (the edge frame);
* lip references (the same for every frame, for global consistency): all frames sorted by mouth opening,
  measured on the canonical geometry ``{alpha, beta_t, 0}`` (no pose;
  :func:`pt_model.stage1.canonical_mouth_opening`), then the frames at the
  ``linspace(0, T - 1, N_l)`` positions of that order: a spread of mouth shapes from closed to open.

Where the clip is shorter than a window (``T < N_f`` or ``T < N_l``) indices repeat; every index is always
inside ``[0, T)``. The random strategy (the paper's "w/o frame selection" ablation) draws every reference at
random from the clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SELECTION_MODES = ("algorithm1", "random")


@dataclass(frozen=True)
class ReferenceConfig:
    """How many references of each kind, and the strategy (``"algorithm1"`` or ``"random"``)."""

    num_face: int = 5
    num_lip: int = 5
    mode: str = "algorithm1"

    def __post_init__(self) -> None:
        if self.num_face < 1 or self.num_lip < 1:
            raise ValueError("num_face and num_lip must be >= 1")
        if self.mode not in SELECTION_MODES:
            raise ValueError(f"reference selection mode must be one of {SELECTION_MODES}, got {self.mode!r}")


@dataclass(frozen=True)
class References:
    """Reference frame indices for one target frame: ``face`` (N_f,) and ``lip`` (N_l,) int64."""

    face: np.ndarray
    lip: np.ndarray


def _check(i: int, num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if not 0 <= i < num_frames:
        raise IndexError(f"frame {i} is outside a clip of {num_frames} frames")


def _round(x: np.ndarray) -> np.ndarray:
    """Round half up (``np.rint`` rounds half to even, which would not commute with the 1 -> 0 index shift)."""
    return np.floor(np.asarray(x, np.float64) + 0.5).astype(np.int64)


def _draw(rng: np.random.Generator, num_frames: int, n: int) -> np.ndarray:
    """``n`` distinct frames when the clip has enough, else ``n`` draws with replacement; sorted."""
    idx = rng.choice(num_frames, size=n, replace=num_frames < n)
    return np.sort(idx).astype(np.int64)


def training_face_references(i: int, num_frames: int, num_face: int = 5) -> np.ndarray:
    """Algorithm 1 (training): ``linspace(max(0, i - 2N_f), min(T-1, i + 2N_f), N_f)`` rounded to frames."""
    _check(i, num_frames)
    lo, hi = max(0, i - 2 * num_face), min(num_frames - 1, i + 2 * num_face)
    return _round(np.linspace(lo, hi, num_face))


def training_references(i: int, num_frames: int, rng: np.random.Generator,
                        config: ReferenceConfig = ReferenceConfig()) -> References:
    """Face and lip references of target frame ``i`` for training (Algorithm 1, or all random)."""
    _check(i, num_frames)
    if config.mode == "random":
        return References(_draw(rng, num_frames, config.num_face), _draw(rng, num_frames, config.num_lip))
    return References(training_face_references(i, num_frames, config.num_face),
                      _draw(rng, num_frames, config.num_lip))


def inference_face_references(num_frames: int, num_face: int = 5) -> np.ndarray:
    """(T, N_f) face references of every frame: the window centred on it, clipped to the video."""
    if num_frames < 1:
        raise ValueError("a clip needs at least one frame")
    start = np.arange(num_frames)[:, None] - num_face // 2
    return np.clip(start + np.arange(num_face)[None], 0, num_frames - 1).astype(np.int64)


def inference_lip_references(mouth_openings: np.ndarray, num_lip: int = 25) -> np.ndarray:
    """(N_l,) lip references: frames sorted by mouth opening, taken at ``linspace(0, T-1, N_l)`` of that order.

    Ties keep temporal order (stable sort), so the selection is deterministic.
    """
    m = np.asarray(mouth_openings, dtype=np.float64).reshape(-1)
    if len(m) < 1:
        raise ValueError("a clip needs at least one frame")
    if not np.isfinite(m).all():
        raise ValueError("mouth openings must be finite (fit every frame before selecting references)")
    order = np.argsort(m, kind="stable")
    return order[_round(np.linspace(0, len(m) - 1, num_lip))].astype(np.int64)


def inference_references(mouth_openings: np.ndarray, config: ReferenceConfig = ReferenceConfig(num_lip=25),
                         rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(face (T, N_f), lip (N_l,))`` reference indices for dubbing a reference video of T frames.

    ``config.mode == "random"`` (ablation): face references drawn per frame and lip references once, at
    random (``rng`` required).
    """
    t = len(np.asarray(mouth_openings).reshape(-1))
    if config.mode == "random":
        if rng is None:
            raise ValueError("random reference selection needs an rng")
        face = np.stack([_draw(rng, t, config.num_face) for _ in range(t)])
        return face, _draw(rng, t, config.num_lip)
    return inference_face_references(t, config.num_face), inference_lip_references(mouth_openings, config.num_lip)
