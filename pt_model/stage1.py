"""PersonaTalk stage 1: style-aware geometry construction (PAPER.md "Stage 1").

Data flow for a window of T frames (B windows):

1. **Audio** (B, (T + 2c) x 640 samples) -> E_aud (HuBERT + 25 fps projection, or for small-data runs
   without pretrained weights a log-mel conv encoder: :mod:`pt_model.audio_encoder`) -> (B, T + 2c, D),
   cropped to the T frames of the window (``c`` context frames of real audio on each side).
2. **Style** from expression-only vertices {0, beta_t, 0} of *other* frames of the speaker (B, Ts, E):
   the fully-connected vertex encoder E_vtx maps every frame to R^D; the mean and standard deviation over
   time (masked, windows may be padded) are concatenated and mapped by one linear layer to S in R^D.
3. **Style injection**, one cross-attention layer with K = V = the audio features. The paper writes Q = S,
   which yields one vector rather than a sequence; we keep one query per frame and add S to each frame's
   query (Q_t = LN(a_t) + S) and to the residual (a'_t = a_t + S + Attn(Q, K, V)_t), followed by a
   feed-forward block. So S shapes where each frame looks in the audio and shifts every frame's features.
   With ``use_style=False`` (the paper's "w/o style embedding" ablation) the style encoder is not built and
   the same layer runs without S (it becomes a plain self-attention layer over the audio).
4. **Geometry generation**: the identity template {mean_alpha, 0, 0} is encoded by the *same* E_vtx into
   one token; a cross-attention layer with the stylised audio as queries reads it (with a single key the
   softmax is 1, so this injects the template's value projection into every frame; the layer is written
   for any number of template tokens); ``layers`` pre-norm self-attention blocks with ALiBi distance biases
   (translation invariant, so a model trained on short windows runs on whole clips); the fully-connected
   vertex decoder D_vtx outputs lower-face vertex offsets from the template (last layer zero-initialised:
   training starts from the neutral mouth).
   Two options for small data (off in the paper preset): ``decoder_space="expression"`` makes D_vtx
   output expression-coefficient offsets that the face model's fixed blendshape basis maps to vertices
   (57 outputs instead of 3 x Ld; the prediction stays in the span the data was fitted in), and
   ``style_residual`` adds the offsets to the style frames' mean expression {alpha, mean beta_style, 0}
   instead of the template, so the zero-initialised model starts at the speaker's mean mouth and learns
   only the audio-driven motion around it (needs ``use_style``).
5. **Full mesh** (:meth:`Stage1Model.geometry`): the generated lower face replaces those vertices of the
   ground-truth {alpha, beta_t, 0} mesh (the upper face keeps blinks and brows), then pose and PNCC
   rendering (:func:`render_pncc`, through ``pt_data.render``).

Vertex sets (``vertex_stride``): the paper preset encodes all face vertices (9409 for the ICT model) and
decodes all lower-face vertices (3232). The tiny preset takes every k-th vertex of each mask (k = 16:
589 encoded, 202 + the 4 mouth-measure vertices decoded) so the FC layers stay small. For a full mesh from
a strided decoder, :meth:`Stage1Model.geometry` lifts the decoded subset to the whole lower face by a ridge
least-squares fit of expression coefficients on the subset (exact when the prediction lies in the
blendshape span), documented as such in :class:`Stage1Geometry`.

Vertices are in millimetres; the networks see offsets from the model's mean face divided by
``vertex_scale_mm`` (10 mm). :func:`mouth_opening` / :func:`canonical_mouth_opening` measure mouth opening
on canonical (pose-free) geometry: inner-lip gap over mouth width at MediaPipe points 13/14 and 61/291
(the model's correspondence), the measure stage 2's reference selection sorts frames by.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pt_data.face_model import FaceModel
from pt_data.landmarks import LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT, UPPER_INNER_LIP
from pt_data.shard_schema import SAMPLES_PER_FRAME
from pt_data.weights import WeightsRegistry
from pt_model.audio_encoder import AudioEncoderConfig, build_audio_encoder

#: MediaPipe points of the mouth-opening measure: upper inner lip, lower inner lip, left and right corner.
MOUTH_POINTS = (UPPER_INNER_LIP, LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT)
#: What D_vtx outputs (see :class:`Stage1ModelConfig` and the module docstring).
DECODER_SPACES = ("vertex", "expression")


@dataclass
class Stage1ModelConfig:
    """Sizes and switches of the stage-1 network (the paper gives none besides HuBERT; these are ours)."""

    dim: int = 512  # D
    heads: int = 8
    layers: int = 4  # self-attention blocks of the geometry generator
    ff_mult: int = 4
    dropout: float = 0.1
    vertex_hidden: int = 512  # hidden width of E_vtx and D_vtx
    vertex_stride: int = 1  # every k-th vertex of the masks (1 = all: the paper preset)
    encoder_mask: str = "face"
    decoder_mask: str = "lower_face"
    vertex_scale_mm: float = 10.0
    use_style: bool = True
    decoder_space: str = "vertex"  # D_vtx outputs: "vertex" offsets (the paper) or "expression" coefficients
    style_residual: bool = False  # offsets from the style frames' mean expression instead of the template
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)

    def __post_init__(self) -> None:
        if isinstance(self.audio, dict):
            self.audio = AudioEncoderConfig(**self.audio)
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if self.vertex_stride < 1:
            raise ValueError("vertex_stride must be >= 1")
        if self.decoder_space not in DECODER_SPACES:
            raise ValueError(f"decoder_space must be one of {DECODER_SPACES}, got {self.decoder_space!r}")
        if self.style_residual and not self.use_style:
            raise ValueError("style_residual needs use_style: without style frames there is no mean expression")


# ------------------------------------------------------------------------------------------- geometry
def mouth_vertex_ids(face_model: FaceModel) -> np.ndarray:
    """Model vertex ids of :data:`MOUTH_POINTS` (upper, lower inner lip; left, right corner)."""
    return face_model.mediapipe_ids[list(MOUTH_POINTS)].astype(np.int64)


def mouth_opening(points: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Inner-lip gap / mouth width from (..., 4, 3) points ordered as :data:`MOUTH_POINTS` (scale-free)."""
    if isinstance(points, torch.Tensor):
        gap = (points[..., 1, :] - points[..., 0, :]).norm(dim=-1)
        width = (points[..., 3, :] - points[..., 2, :]).norm(dim=-1)
        return gap / width.clamp_min(1e-6)
    p = np.asarray(points, np.float64)
    gap = np.linalg.norm(p[..., 1, :] - p[..., 0, :], axis=-1)
    width = np.linalg.norm(p[..., 3, :] - p[..., 2, :], axis=-1)
    return gap / np.maximum(width, 1e-6)


def canonical_mouth_opening(face_model: FaceModel, shape: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """Mouth opening per frame (T,) of the canonical meshes {alpha, beta_t, 0} (no pose).

    ``shape`` is (S,) or (T, S); ``expression`` (T, E). Used by stage 2's lip-reference selection.
    """
    ids = mouth_vertex_ids(face_model)
    identity = np.tensordot(np.asarray(shape, np.float32), face_model.id_basis[:, ids], axes=([-1], [0]))
    motion = np.tensordot(np.asarray(expression, np.float32), face_model.exp_basis[:, ids], axes=([-1], [0]))
    return mouth_opening(face_model.mean[ids] + identity + motion).astype(np.float32)  # (T, 4, 3) -> (T,)


@dataclass(frozen=True)
class VertexSets:
    """Vertex ids of the encoder input, the decoder output, and positions inside the decoder output."""

    encoder: np.ndarray  # (Le,) ids fed to E_vtx
    decoder: np.ndarray  # (Ld,) ids produced by D_vtx (sorted)
    lower_face: np.ndarray  # all ids of the decoder mask (the part of the full mesh that is generated)
    lip_in_decoder: np.ndarray  # positions (into decoder) of lip vertices
    mouth_in_decoder: np.ndarray  # positions (into decoder) of the 4 mouth-measure vertices

    @property
    def decoder_is_complete(self) -> bool:
        """True when the decoder produces every vertex of its mask (no lifting needed for full meshes)."""
        return len(self.decoder) == len(self.lower_face) and bool(np.all(self.decoder == self.lower_face))


def vertex_sets(face_model: FaceModel, cfg: Stage1ModelConfig) -> VertexSets:
    """The vertex subsets of ``cfg`` on ``face_model`` (every ``vertex_stride``-th vertex of each mask)."""
    k = cfg.vertex_stride
    enc = face_model.vertex_ids(cfg.encoder_mask)[::k]
    lower = face_model.vertex_ids(cfg.decoder_mask)
    mouth = mouth_vertex_ids(face_model)
    if not np.isin(mouth, lower).all():
        raise ValueError(f"face model {face_model.name!r}: the mouth-measure vertices are not all inside the "
                         f"{cfg.decoder_mask!r} mask; rebuild the model's masks")
    dec = np.union1d(lower[::k], mouth)
    lip = np.flatnonzero(face_model.mask("lip")[dec])
    if lip.size == 0:
        raise ValueError(f"face model {face_model.name!r}: no lip vertex among the decoded vertices")
    return VertexSets(enc, dec, lower, lip, np.searchsorted(dec, mouth))


def _float32(like: torch.Tensor):
    """A context with autocast off on ``like``'s device: mesh arithmetic in mm needs float32 (bf16 keeps
    ~3 significant digits, i.e. errors of ~0.5 mm on coordinates of ~100 mm)."""
    return torch.autocast(like.device.type, enabled=False)


# -------------------------------------------------------------------------------------------- layers
class VertexEncoder(nn.Module):
    """E_vtx: fully-connected, (..., L, 3) scaled vertex offsets -> (..., D)."""

    def __init__(self, num_vertices: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * num_vertices, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, dim))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.net(offsets.flatten(-2))


class VertexDecoder(nn.Module):
    """D_vtx: fully-connected, (..., D) -> (..., L, 3) scaled offsets; the last layer starts at zero."""

    def __init__(self, dim: int, hidden: int, num_vertices: int) -> None:
        super().__init__()
        self.num_vertices = num_vertices
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 3 * num_vertices))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).unflatten(-1, (self.num_vertices, 3))


class ExpressionDecoder(nn.Module):
    """D_vtx in expression space: (..., D) -> (..., E) expression-coefficient offsets; the last layer starts at 0.

    The model maps the coefficients to vertex offsets through the face model's fixed blendshape basis, so the
    output always lies in the span of the expressions the data was fitted with.
    """

    def __init__(self, dim: int, hidden: int, num_expression: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, num_expression))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class Attention(nn.Module):
    """Multi-head attention softmax(QK^T / sqrt(d)) V (eq. 3) with an optional additive bias (H, Tq, Tk)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, tq, d = x.shape
        h = self.heads
        q = self.q(x).view(b, tq, h, d // h).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype),
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(b, tq, d))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mult * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mult * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention (queries x, keys/values ctx) + feed-forward."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.ff(x + self.drop(self.attn(self.norm_q(x), self.norm_kv(ctx))))


class StyleInjection(CrossAttentionBlock):
    """Cross-attention of per-frame queries (audio + S) over the audio features; S also added to the output."""

    def forward(self, audio: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        q = self.norm_q(audio)
        kv = self.norm_kv(audio)
        if style is None:
            x = audio + self.drop(self.attn(q, kv))
        else:
            s = style[:, None, :]
            x = audio + s + self.drop(self.attn(q + s, kv))
        return self.ff(x)


class SelfAttentionBlock(nn.Module):
    """Pre-norm self-attention with an additive bias + feed-forward."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return self.ff(x + self.drop(self.attn(h, h, bias)))


def alibi_bias(num_frames: int, heads: int, device: torch.device | None = None) -> torch.Tensor:
    """ALiBi biases (heads, T, T): ``-slope_h * |i - j|`` with geometric slopes 2^(-8 h / heads)."""
    slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)], device=device)
    pos = torch.arange(num_frames, device=device, dtype=torch.float32)
    return -slopes[:, None, None] * (pos[None, :, None] - pos[None, None, :]).abs()


# ---------------------------------------------------------------------------------------------- model
@dataclass
class Stage1Geometry:
    """Stage-1 output for (B, T) frames.

    ``vertices``: full canonical meshes (B, T, V, 3) in mm: generated lower face + ground-truth upper face;
    ``pose``: (B, T, 6) or ``None``; ``generated``: the decoder's own vertices (B, T, Ld, 3);
    ``lifted``: True when the lower face was completed from a strided decoder by the least-squares fit of
    expression coefficients (see the module docstring), False when the decoder produced every vertex.
    """

    vertices: torch.Tensor
    pose: torch.Tensor | None
    generated: torch.Tensor
    lifted: bool


class Stage1Model(nn.Module):
    """Style-aware geometry construction: audio + speaker style + identity -> lower-face vertices.

    Args:
        cfg: the network config.
        face_model: the morphable model whose coefficients the data carries (its bases become buffers).
        registry: the weights registry for pretrained HuBERT.
        load_audio_weights: ``False`` skips reading pretrained HuBERT weights (a checkpoint will supply them).
    """

    def __init__(self, cfg: Stage1ModelConfig, face_model: FaceModel, registry: WeightsRegistry | None = None,
                 load_audio_weights: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.face_model_id = face_model.model_id
        self.sets = vertex_sets(face_model, cfg)
        d = cfg.dim
        self.audio_encoder = build_audio_encoder(cfg.audio, d, registry, load_weights=load_audio_weights)
        self.vertex_encoder = VertexEncoder(len(self.sets.encoder), cfg.vertex_hidden, d)
        self.style_proj = nn.Linear(2 * d, d) if cfg.use_style else None
        self.style_injection = StyleInjection(d, cfg.heads, cfg.ff_mult, cfg.dropout)
        self.template_attention = CrossAttentionBlock(d, cfg.heads, cfg.ff_mult, cfg.dropout)
        self.blocks = nn.ModuleList(SelfAttentionBlock(d, cfg.heads, cfg.ff_mult, cfg.dropout)
                                    for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        self.vertex_decoder: nn.Module = (
            ExpressionDecoder(d, cfg.vertex_hidden, face_model.num_expression) if cfg.decoder_space == "expression"
            else VertexDecoder(d, cfg.vertex_hidden, len(self.sets.decoder)))
        self._register_geometry(face_model)

    # ---- geometry buffers (not saved: rebuilt from the face model, whose id the config records)
    def _register_geometry(self, fm: FaceModel) -> None:
        def reg(name: str, a: np.ndarray) -> None:
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(a, np.float32)), persistent=False)

        enc, dec = self.sets.encoder, self.sets.decoder
        reg("enc_id", fm.id_basis[:, enc].reshape(fm.num_shape, -1))
        reg("enc_exp", fm.exp_basis[:, enc].reshape(fm.num_expression, -1))
        reg("dec_mean", fm.mean[dec])
        reg("dec_id", fm.id_basis[:, dec].reshape(fm.num_shape, -1))
        reg("dec_exp", fm.exp_basis[:, dec].reshape(fm.num_expression, -1))
        reg("full_mean", fm.mean)
        reg("full_id", fm.id_basis.reshape(fm.num_shape, -1))
        reg("full_exp", fm.exp_basis.reshape(fm.num_expression, -1))
        self.register_buffer("lower_ids", torch.from_numpy(self.sets.lower_face), persistent=False)
        self.register_buffer("dec_ids", torch.from_numpy(self.sets.decoder), persistent=False)
        # ridge least squares on the decoded subset: expression coefficients from decoded offsets
        a = fm.exp_basis[:, dec].reshape(fm.num_expression, -1).astype(np.float64)  # (E, 3Ld)
        lift = np.linalg.solve(a @ a.T + 1e-3 * np.eye(len(a)), a)  # (E, 3Ld): beta = offsets @ lift.T
        reg("lift", lift)

    # ---- pieces
    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.cfg.vertex_scale_mm

    def style_embedding(self, style_expression: torch.Tensor, style_mask: torch.Tensor | None = None) -> torch.Tensor:
        """S (B, D) from expression coefficients (B, Ts, E) of the speaker's frames (mask (B, Ts): valid).

        The expression-only vertices {0, beta, 0} enter E_vtx as offsets from the mean face.
        """
        if self.style_proj is None:
            raise RuntimeError("this model was built with use_style=False (the w/o-style ablation)")
        b, t, _ = style_expression.shape
        offsets = (style_expression.float() @ self.enc_exp).view(b, t, -1, 3)
        h = self.vertex_encoder(self._scaled(offsets))  # (B, Ts, D)
        h = h.float()
        m = (torch.ones(b, t, device=h.device) if style_mask is None else style_mask.to(h.dtype))[..., None]
        n = m.sum(1).clamp_min(1.0)
        mean = (h * m).sum(1) / n
        std = torch.sqrt(((h - mean[:, None]) ** 2 * m).sum(1) / n + 1e-6)
        return self.style_proj(torch.cat([mean, std], -1))

    @staticmethod
    def style_mean_expression(style_expression: torch.Tensor, style_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The mean expression coefficients (B, E) of the valid style frames (float32): the speaker's mean mouth."""
        e = style_expression.float()
        m = torch.ones(e.shape[:2], device=e.device) if style_mask is None else style_mask.float()
        return (e * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)

    def template_token(self, shape: torch.Tensor) -> torch.Tensor:
        """vtx_tmp (B, 1, D): E_vtx of the identity template {alpha, 0, 0}."""
        offsets = (shape.float() @ self.enc_id).view(shape.shape[0], -1, 3)
        return self.vertex_encoder(self._scaled(offsets))[:, None, :]

    def template_vertices(self, shape: torch.Tensor) -> torch.Tensor:
        """The identity template's decoded vertices (B, Ld, 3) in mm (float32, also under autocast)."""
        with _float32(shape):
            return self.dec_mean + (shape.float() @ self.dec_id).view(shape.shape[0], -1, 3)

    def lower_face_vertices(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Ground-truth decoded vertices (B, T, Ld, 3) of {alpha, beta_t, 0}: the training target (float32)."""
        b, t, _ = expression.shape
        with _float32(expression):
            return self.template_vertices(shape)[:, None] + (expression.float() @ self.dec_exp).view(b, t, -1, 3)

    # ---- forward
    def forward(self, audio: torch.Tensor, shape: torch.Tensor, style_expression: torch.Tensor | None = None,
                style_mask: torch.Tensor | None = None, context_frames: int = 0) -> torch.Tensor:
        """Generated decoded vertices (B, T, Ld, 3) in mm.

        Args:
            audio: (B, (T + 2 * context_frames) * 640) float waveform at 16 kHz, frame-aligned.
            shape: (B, S) identity coefficients (the clip's mean alpha).
            style_expression, style_mask: (B, Ts, E) expression coefficients of other frames of the same
                speaker and (B, Ts) validity; ignored (may be ``None``) when ``use_style`` is off.
            context_frames: audio frames of context on each side, cropped after the audio encoder.
        """
        total = audio.shape[-1] // SAMPLES_PER_FRAME
        t = total - 2 * context_frames
        if t < 1:
            raise ValueError(f"audio of {audio.shape[-1]} samples holds no frame after {context_frames} context "
                             "frames each side")
        a = self.audio_encoder(audio, total)[:, context_frames:context_frames + t]
        style = None
        if self.style_proj is not None:
            if style_expression is None:
                raise ValueError("style_expression is required when use_style is on")
            style = self.style_embedding(style_expression, style_mask)
        x = self.style_injection(a, style)
        x = self.template_attention(x, self.template_token(shape))
        bias = alibi_bias(t, self.cfg.heads, x.device)
        for block in self.blocks:
            x = block(x, bias)
        out = self.vertex_decoder(self.norm(x))
        with _float32(out):  # mesh arithmetic in float32, also under autocast
            if self.cfg.decoder_space == "expression":
                offsets = (out.float() @ self.dec_exp).view(*out.shape[:2], -1, 3)
            else:
                offsets = out.float() * self.cfg.vertex_scale_mm
            base = self.template_vertices(shape)[:, None]
            if self.cfg.style_residual:
                mean = self.style_mean_expression(style_expression, style_mask)  # type: ignore[arg-type]
                base = base + (mean @ self.dec_exp).view(mean.shape[0], 1, -1, 3)
            return base + offsets

    # ---- full meshes
    @torch.no_grad()
    def geometry(self, audio: torch.Tensor, shape: torch.Tensor, expression: torch.Tensor,
                 style_expression: torch.Tensor | None = None, style_mask: torch.Tensor | None = None,
                 pose: torch.Tensor | None = None, context_frames: int = 0) -> Stage1Geometry:
        """Full canonical meshes: generated lower face + the upper face of {alpha, beta_t, 0}.

        ``expression`` (B, T, E) are the ground-truth (reference video) coefficients whose upper face is
        kept; ``pose`` (B, T, 6) is carried along for rendering.
        """
        gen = self.forward(audio, shape, style_expression, style_mask, context_frames)
        full, lifted = self.full_mesh(gen, shape, expression)
        return Stage1Geometry(full, pose, gen, lifted)

    def full_mesh(self, decoded: torch.Tensor, shape: torch.Tensor, expression: torch.Tensor
                  ) -> tuple[torch.Tensor, bool]:
        """Full meshes (B, T, V, 3): ``decoded`` (B, T, Ld, 3) lower face + the upper face of {alpha, beta_t, 0}.

        Returns the meshes and whether the lower face was lifted from a strided decoder (least squares on
        the expression basis; the decoded vertices themselves are kept exactly).
        """
        with _float32(decoded):
            return self._full_mesh(decoded, shape, expression)

    def _full_mesh(self, decoded: torch.Tensor, shape: torch.Tensor, expression: torch.Tensor
                   ) -> tuple[torch.Tensor, bool]:
        b, t = decoded.shape[:2]
        identity = self.full_mean + (shape.float() @ self.full_id).view(b, 1, -1, 3)
        full = identity + (expression.float() @ self.full_exp).view(b, t, -1, 3)
        if self.sets.decoder_is_complete:
            full[:, :, self.lower_ids] = decoded.float()
            return full, False
        beta = (decoded.float() - self.template_vertices(shape)[:, None]).flatten(-2) @ self.lift.T  # (B, T, E)
        lower = (identity + (beta @ self.full_exp).view(b, t, -1, 3))[:, :, self.lower_ids]
        lower[:, :, torch.as_tensor(np.searchsorted(self.sets.lower_face, self.sets.decoder))] = decoded.float()
        full[:, :, self.lower_ids] = lower
        return full, True

    def decoded_mouth_opening(self, vertices: torch.Tensor) -> torch.Tensor:
        """Mouth opening (...,) of decoded vertices (..., Ld, 3)."""
        return mouth_opening(vertices[..., torch.as_tensor(self.sets.mouth_in_decoder, device=vertices.device), :])

    def num_parameters(self, trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable)


def render_pncc(geometry: Stage1Geometry, face_model: FaceModel, renderer: Any = None) -> Any:
    """PNCC images G_tgt of a :class:`Stage1Geometry` (posed, z-buffered) through ``pt_data.render``.

    Returns the renderer's ``RenderOutput`` for the B*T frames in (b, t) order. Needs ``geometry.pose``.
    """
    if geometry.pose is None:
        raise ValueError("render_pncc needs the head pose: pass pose= to Stage1Model.geometry")
    if renderer is None:
        try:
            from pt_data.render import PNCCRenderer  # noqa: PLC0415 - the geometry issue's renderer
        except ImportError as e:
            raise ImportError("PNCC rendering needs pt_data.render (PNCCRenderer) from the geometry issue; "
                              f"it is not importable here ({e})") from e
        renderer = PNCCRenderer(face_model)
    v = geometry.vertices
    return renderer.render_vertices(v.reshape(-1, *v.shape[2:]), geometry.pose.reshape(-1, geometry.pose.shape[-1]))


__all__ = ["Stage1ModelConfig", "Stage1Model", "Stage1Geometry", "VertexSets", "vertex_sets", "render_pncc",
           "mouth_opening", "canonical_mouth_opening", "mouth_vertex_ids", "MOUTH_POINTS", "alibi_bias",
           "DECODER_SPACES", "VertexDecoder", "ExpressionDecoder"]
