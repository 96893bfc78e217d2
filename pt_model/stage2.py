"""Stage 2 of PersonaTalk: the dual-attention face renderer (PAPER.md "Stage 2").

Inputs per target frame: the target geometry as a PNCC image ``G_tgt`` (3 x H x W), its lip mask, and ``N``
reference frames with their PNCC images, split into face references and lip references (chosen by
:mod:`pt_model.references`). Output: the target face image (3 x H x W, values in [0, 1]).

* Geometry encoder ``E_ref`` (shared by target and reference PNCCs) and texture encoder ``E_tex`` (reference
  frames): two stride-2 convolutions each, 3 x H x W -> C x H/4 x W/4.
* Texture sampling by cross-attention (:class:`TextureAttention`): queries = the encoded target geometry,
  keys = the encoded reference geometries, values = the encoded reference textures, all flattened over space
  (and over the N references for keys/values); learnable positional embeddings (initialised with 2-D sine /
  cosine codes, then trained) are added to queries and keys. There is no per-reference embedding, so the
  number of references may differ between training (N_l = 5) and inference (N_l = 25).
  Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient
  kernels on GPU), in chunks of queries (``query_chunk``) so that 25 lip references x 64 x 64 keys per
  frame at 256 px stay within memory even where the math kernel is used.
* Dual attention (eq. 4): Lip-Attention over the lip references and Face-Attention over the face references
  in parallel, fused by the mouth-region mask ``M_l`` at the latent resolution:
  ``out = lip * M_l + face * (1 - M_l)``. ``M_l`` is the rendered lip mask closed (so the mouth opening,
  which the mesh does not cover, belongs to the lip region) and slightly dilated (:func:`mouth_region_mask`).
* Geometry-aware texture decoder ``D_tex``: the target PNCC resized to each decoder scale is concatenated on
  the channel axis, then two upsampling convolutions (bilinear x2 + 3x3 conv) back to 3 x H x W.

Ablations (``Stage2Config.attention``): ``"dual"`` (the paper), ``"single"`` (one attention over the union of
face and lip references, no mask fusion), ``"face_only"`` (w/o lip-attention) and ``"lip_only"`` (w/o
face-attention).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_MODES = ("dual", "single", "face_only", "lip_only")


@dataclass
class Stage2Config:
    """Sizes and options of the renderer.

    ``image_size``: H = W of the network's images (the 256 crop, or smaller for tiny runs); must be a multiple
    of 4. ``channels``: C of the latent space. ``heads``: attention heads (C must divide by it).
    ``query_chunk``: queries per attention call (0: all at once). ``mouth_close`` / ``mouth_dilate``:
    morphological closing and dilation of the lip mask, as fractions of the latent side.
    ``decoder_res_blocks``: extra residual blocks before the two upsampling layers (0 = the paper's decoder).
    """

    image_size: int = 256
    channels: int = 128
    heads: int = 4
    attention: str = "dual"
    query_chunk: int = 1024
    mouth_close: float = 0.15
    mouth_dilate: float = 0.03
    decoder_res_blocks: int = 0

    def __post_init__(self) -> None:
        if self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {self.image_size}")
        if self.channels % self.heads or self.channels % 2:
            raise ValueError(f"channels ({self.channels}) must be even and divisible by heads ({self.heads})")
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")
        if self.query_chunk < 0:
            raise ValueError("query_chunk must be >= 0 (0: no chunking)")

    @property
    def latent_size(self) -> int:
        return self.image_size // 4

    def to_dict(self) -> dict:
        return asdict(self)


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """(h * w, dim) 2-D sine/cosine position codes (half the channels for y, half for x)."""
    if dim % 4:
        raise ValueError(f"sincos_2d needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    ay, ax = ys.reshape(-1, 1) * freq, xs.reshape(-1, 1) * freq
    return torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], 1).float()


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, query_chunk: int = 0) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` by :func:`F.scaled_dot_product_attention`, ``query_chunk`` queries at a time.

    Shapes: q (B, heads, Lq, d), k and v (B, heads, Lk, d). Softmax is per query, so chunking the queries
    gives the same result as one call; it bounds the memory of kernels that materialise the attention matrix.
    """
    lq = q.shape[-2]
    if query_chunk <= 0 or lq <= query_chunk:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(q[..., s:s + query_chunk, :], k, v)
                      for s in range(0, lq, query_chunk)], dim=-2)


def _conv_down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 4, stride=2, padding=1)


def _groups(c: int) -> int:
    return math.gcd(c, 8)


class DownEncoder(nn.Module):
    """Two stride-2 convolutions: (B, 3, H, W) -> (B, C, H/4, W/4) (the paper's E_ref / E_tex)."""

    def __init__(self, channels: int, in_channels: int = 3) -> None:
        super().__init__()
        mid = channels // 2
        self.net = nn.Sequential(_conv_down(in_channels, mid), nn.GroupNorm(_groups(mid), mid), nn.SiLU(),
                                 _conv_down(mid, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TextureAttention(nn.Module):
    """Cross-attention from target geometry (queries) to reference geometry (keys) and texture (values).

    Learnable positional embeddings (one per latent position, shared by all references) are added to the
    query and key features before their projections.
    """

    def __init__(self, channels: int, heads: int, latent_size: int, query_chunk: int = 0) -> None:
        super().__init__()
        self.heads, self.query_chunk = heads, query_chunk
        pos = sincos_2d(latent_size, latent_size, channels)
        self.pos_q = nn.Parameter(pos.clone())
        self.pos_k = nn.Parameter(pos.clone())
        self.norm_q, self.norm_k, self.norm_v = (nn.LayerNorm(channels) for _ in range(3))
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels, bias=False) for _ in range(3))
        self.to_out = nn.Linear(channels, channels)

    def keys_values(self, ref_geometry: torch.Tensor, ref_texture: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected keys and values (B, heads, N * L, d) from (B, N, C, h, w) reference features."""
        b, n, c, h, w = ref_geometry.shape
        g = ref_geometry.flatten(3).transpose(2, 3)  # (B, N, L, C)
        t = ref_texture.flatten(3).transpose(2, 3)
        k = self.to_k(self.norm_k(g) + self.pos_k).reshape(b, n * h * w, c)
        v = self.to_v(self.norm_v(t)).reshape(b, n * h * w, c)
        return self._split(k), self._split(v)

    def forward(self, query_geometry: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Sampled texture (B, L, C) for target geometry features (B, L, C) and projected keys/values."""
        q = self._split(self.to_q(self.norm_q(query_geometry) + self.pos_q))
        if keys.shape[0] != q.shape[0]:  # references shared by the whole batch (inference lip references)
            keys, values = keys.expand(q.shape[0], -1, -1, -1), values.expand(q.shape[0], -1, -1, -1)
        out = chunked_attention(q, keys, values, self.query_chunk)
        b, hd, l, d = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, l, hd * d))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, l, c = x.shape
        return x.reshape(b, l, self.heads, c // self.heads).transpose(1, 2)


class ResBlock(nn.Module):
    """GroupNorm - SiLU - 3x3 conv, twice, with a skip connection."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                 nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class TextureDecoder(nn.Module):
    """Geometry-aware decoder: the target PNCC is concatenated at each scale; two upsampling convolutions."""

    def __init__(self, channels: int, res_blocks: int = 0) -> None:
        super().__init__()
        mid = channels // 2
        self.blocks = nn.Sequential(*[ResBlock(channels) for _ in range(res_blocks)])
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.up1 = nn.Conv2d(channels + 3, mid, 3, padding=1)
        self.norm1 = nn.GroupNorm(_groups(mid), mid)
        self.up2 = nn.Conv2d(mid + 3, 3, 3, padding=1)

    def forward(self, latent: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image in [0, 1] from (B, C, H/4, W/4) sampled texture and (B, 3, H, W) target PNCC."""
        h, w = latent.shape[-2:]
        x = F.silu(self.norm(self.blocks(latent)))
        x = torch.cat([x, F.interpolate(geometry, size=(h, w), mode="area")], 1)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.silu(self.norm1(self.up1(x)))
        x = torch.cat([x, F.interpolate(geometry, size=(2 * h, 2 * w), mode="area")], 1)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.up2(x))


def _odd(k: float) -> int:
    k = max(int(round(k)), 0)
    return k + 1 - k % 2


def mouth_region_mask(lip_mask: torch.Tensor, size: int, close: float = 0.15, dilate: float = 0.03
                      ) -> torch.Tensor:
    """The fusion mask M_l at ``size`` x ``size`` from a (B, 1, H, W) rendered lip mask.

    The lip mask is area-resized to ``size``, closed with a square of ``close * size`` pixels (so the mouth
    opening between the lips, which no mesh triangle covers, joins the lip region) and dilated by
    ``dilate * size`` pixels. Values stay in [0, 1] (soft at the border).
    """
    m = F.interpolate(lip_mask.float(), size=(size, size), mode="area")
    kc = _odd(close * size)
    if kc > 1:
        m = F.max_pool2d(m, kc, stride=1, padding=kc // 2)
        m = -F.max_pool2d(-m, kc, stride=1, padding=kc // 2)
    kd = _odd(2 * dilate * size + 1)
    if kd > 1:
        m = F.max_pool2d(m, kd, stride=1, padding=kd // 2)
    return m.clamp(0, 1)


class EncodedReferences(NamedTuple):
    """Projected keys and values of one attention branch, (B or 1, heads, N * L, d) each."""

    keys: torch.Tensor
    values: torch.Tensor


class Stage2Renderer(nn.Module):
    """The dual-attention renderer. Images are (B, 3, H, W) in [0, 1]; references (B, N, 3, H, W)."""

    def __init__(self, config: Stage2Config | None = None) -> None:
        super().__init__()
        self.config = cfg = config or Stage2Config()
        c, s = cfg.channels, cfg.latent_size
        self.geometry_encoder = DownEncoder(c)
        self.texture_encoder = DownEncoder(c)
        self.face_attention = TextureAttention(c, cfg.heads, s, cfg.query_chunk) \
            if cfg.attention in ("dual", "single", "face_only") else None
        self.lip_attention = TextureAttention(c, cfg.heads, s, cfg.query_chunk) \
            if cfg.attention in ("dual", "lip_only") else None
        self.decoder = TextureDecoder(c, cfg.decoder_res_blocks)

    # ---- encoders (exposed so that inference encodes each reference frame once)
    def encode_geometry(self, pncc: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) PNCC -> (..., C, H/4, W/4)."""
        lead = pncc.shape[:-3]
        out = self.geometry_encoder(pncc.reshape(-1, *pncc.shape[-3:]))
        return out.reshape(*lead, *out.shape[1:])

    def encode_texture(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) frames in [0, 1] -> (..., C, H/4, W/4)."""
        lead = frames.shape[:-3]
        out = self.texture_encoder(frames.reshape(-1, *frames.shape[-3:]) * 2 - 1)
        return out.reshape(*lead, *out.shape[1:])

    def branch_references(self, branch: str, ref_geometry: torch.Tensor, ref_texture: torch.Tensor
                          ) -> EncodedReferences:
        """Keys/values of ``branch`` ("face" or "lip") from encoded references (B, N, C, h, w)."""
        attn = self.face_attention if branch == "face" else self.lip_attention
        if attn is None:
            raise ValueError(f"attention mode {self.config.attention!r} has no {branch} branch")
        return EncodedReferences(*attn.keys_values(ref_geometry, ref_texture))

    # ---- rendering
    def render(self, target_pncc: torch.Tensor, target_lip_mask: torch.Tensor,
               face: EncodedReferences | None, lip: EncodedReferences | None,
               target_geometry: torch.Tensor | None = None) -> torch.Tensor:
        """The target image from its PNCC, lip mask and the branches' encoded references.

        ``target_geometry``: the already encoded target PNCC (computed when omitted).
        """
        cfg = self.config
        g = self.encode_geometry(target_pncc) if target_geometry is None else target_geometry
        b, c, h, w = g.shape
        q = g.flatten(2).transpose(1, 2)  # (B, L, C)
        if cfg.attention == "dual":
            m = mouth_region_mask(target_lip_mask, h, cfg.mouth_close, cfg.mouth_dilate).flatten(2).transpose(1, 2)
            out = self.lip_attention(q, *lip) * m + self.face_attention(q, *face) * (1 - m)
        elif cfg.attention == "lip_only":
            out = self.lip_attention(q, *lip)
        else:  # "single" (face and lip references concatenated by the caller) or "face_only"
            out = self.face_attention(q, *face)
        latent = out.transpose(1, 2).reshape(b, c, h, w)
        return self.decoder(latent, target_pncc)

    def forward(self, target_pncc: torch.Tensor, target_lip_mask: torch.Tensor,
                face_ref_pncc: torch.Tensor, face_ref_frames: torch.Tensor,
                lip_ref_pncc: torch.Tensor, lip_ref_frames: torch.Tensor) -> torch.Tensor:
        """Render (B, 3, H, W) targets from (B, N_f, 3, H, W) face and (B, N_l, 3, H, W) lip references."""
        mode = self.config.attention
        face = lip = None
        if mode == "single":
            face = self.branch_references("face", self.encode_geometry(torch.cat([face_ref_pncc, lip_ref_pncc], 1)),
                                          self.encode_texture(torch.cat([face_ref_frames, lip_ref_frames], 1)))
        else:
            if mode in ("dual", "face_only"):
                face = self.branch_references("face", self.encode_geometry(face_ref_pncc),
                                              self.encode_texture(face_ref_frames))
            if mode in ("dual", "lip_only"):
                lip = self.branch_references("lip", self.encode_geometry(lip_ref_pncc),
                                             self.encode_texture(lip_ref_frames))
        return self.render(target_pncc, target_lip_mask, face, lip)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
