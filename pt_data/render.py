"""PNCC rendering: batched, z-buffered triangle rasterisation in torch (CPU and CUDA).

PNCC (Projected Normalised Coordinate Code, Zhu et al. 2017) colours every pixel with the normalised
canonical (unposed, mean-face) x, y, z of the surface point the camera sees there; stage 2 of PersonaTalk
takes these images as its geometry input, together with a lip mask, and the fitting draws them over frames
as a visual check.

Pixel convention (the one of :mod:`pt_data.camera`, of MediaPipe's landmarks times the image size and of the
crop transforms): continuous image coordinates, pixel ``(x, y)`` covers ``[x, x+1) x [y, y+1)`` and is
sampled at its centre ``(x + 0.5, y + 0.5)``; the image spans ``[0, W) x [0, H)`` with y pointing down.

The rasteriser is fully vectorised (no Python loop over triangles): triangles that are degenerate, behind
the camera, outside the image or (optionally) facing away are culled; the pixel centres of each remaining
triangle's bounding box are enumerated on a grid of its power-of-two size class, in chunks of bounded size
(the per-triangle data is broadcast over the grid: gathering it per candidate after ``repeat_interleave``
was the main CPU cost); coverage is decided by edge functions with a top-left tie rule (each edge function
is evaluated from the edge's two vertex ids in a canonical order, so a pixel centre on an edge shared by two
triangles is given to exactly one of them: no holes, no double cover); the perspective-correct depth is
interpolated and the nearest surface per pixel is chosen by ``scatter_reduce('amin')`` on an int64 key that
packs the quantised depth above the triangle id (ties go to the smaller id, deterministically).
Barycentrics of the winners are then recomputed with autograd enabled, so :func:`interpolate` is
differentiable w.r.t. the attributes and the vertex positions (not through the discrete visibility).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pt_data.camera import CENTER_PX, FOCAL_PX, project_vertices
from pt_data.face_model import FaceModel
from pt_data.shard_schema import CROP_SIZE

_KEY_EMPTY = torch.iinfo(torch.int64).max
_DEPTH_LEVELS = float(2**30)  # quantised depth < 2**31: the packed key stays positive
_ID_BITS = 32


@dataclass(frozen=True)
class RasterSettings:
    """Options of :func:`rasterize`.

    ``cull_backfaces``: drop triangles facing away from the camera. Front faces run counter-clockwise as
    seen by the camera with y up (the OpenGL convention; the ICT-FaceKit model follows it), i.e.
    clockwise in pixel coordinates with y down: negative signed area ``(p1-p0) x (p2-p0)`` in pixels.
    ``perspective_correct``: ``depth`` is the view-space depth of a perspective camera (positive in front of
    it; triangles with a vertex at depth <= 0 are dropped, there is no near-plane clipping) and depth and
    barycentrics are interpolated perspective-correctly; otherwise (orthographic or any other monotone depth)
    they are interpolated linearly in screen space.
    ``max_candidates``: how many (triangle, pixel) candidates one chunk may hold (bounding boxes padded to
    powers of two); bounds the memory (a few tens of bytes per candidate) without changing the result.
    ``min_area``: triangles with a smaller absolute area in square pixels are degenerate and dropped.
    """

    cull_backfaces: bool = False
    perspective_correct: bool = True
    max_candidates: int = 1 << 20
    min_area: float = 1e-10

    def __post_init__(self) -> None:
        if self.max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {self.max_candidates}")
        if not self.min_area >= 1e-20:
            raise ValueError(f"min_area must be >= 1e-20 square pixels (depth keys divide by it), got {self.min_area}")


@dataclass
class Fragments:
    """What the camera sees per pixel.

    ``face_ids`` (B, H, W) int64: index into ``triangles`` of the visible triangle, -1 for background;
    ``bary`` (B, H, W, 3): its barycentric coordinates at the pixel centre (perspective-correct when the
    rasteriser was), in the order of the triangle's vertices, 0 for background; differentiable w.r.t. the
    vertex positions; ``zbuf`` (B, H, W): the interpolated depth of the visible surface, 0 for background;
    ``triangles`` (F, 3) int64 on the same device.
    """

    face_ids: torch.Tensor
    bary: torch.Tensor
    zbuf: torch.Tensor
    triangles: torch.Tensor

    @property
    def covered(self) -> torch.Tensor:
        """(B, H, W) bool: pixels that see a triangle."""
        return self.face_ids >= 0

    def coverage(self) -> torch.Tensor:
        """(B, 1, H, W) coverage mask in {0, 1} with the dtype of the barycentrics."""
        return self.covered.unsqueeze(1).to(self.bary.dtype)


@dataclass
class RenderOutput:
    """A PNCC render: ``pncc`` (B, 3, H, W) in [0, 1] with background 0; ``mask`` (B, 1, H, W) face
    coverage in {0, 1}; ``lip_mask`` (B, 1, H, W) in {0, 1}: pixels whose visible surface is lip;
    ``fragments`` the rasteriser's output (triangle ids, barycentrics, depth)."""

    pncc: torch.Tensor
    mask: torch.Tensor
    lip_mask: torch.Tensor
    fragments: Fragments


# ------------------------------------------------------------------------------------------ rasteriser
def _rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for a 2-D table and any index shape, via ``index_select`` (several times faster on CPU)."""
    return table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[1])


def _per_batch(values: torch.Tensor, idx: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
    """``values[batch, idx]`` of per-vertex values (B, V, C): ``idx`` (B, ...) (or any shape with ``batch``)."""
    bsz, nv, c = values.shape
    if batch is None:
        batch = torch.arange(bsz, device=idx.device).view(bsz, *([1] * (idx.ndim - 1)))
    return _rows(values.reshape(bsz * nv, c), batch * nv + idx)


def _check_inputs(uv: torch.Tensor, depth: torch.Tensor, triangles: torch.Tensor) -> None:
    if uv.ndim != 3 or uv.shape[-1] != 2:
        raise ValueError(f"uv must be (B, V, 2) pixel coordinates, got shape {tuple(uv.shape)}")
    if depth.shape != uv.shape[:2]:
        raise ValueError(f"depth must be (B, V) = {tuple(uv.shape[:2])}, got {tuple(depth.shape)}")
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise ValueError(f"triangles must be (F, 3) vertex ids, got shape {tuple(triangles.shape)}")
    if not uv.is_floating_point():
        raise TypeError(f"uv must be a floating-point tensor, got {uv.dtype}")
    if triangles.numel() and (int(triangles.min()) < 0 or int(triangles.max()) >= uv.shape[1]):
        raise ValueError(f"triangle vertex ids must lie in [0, {uv.shape[1]}); got "
                         f"[{int(triangles.min())}, {int(triangles.max())}]")
    if triangles.shape[0] >= 2**31:
        raise ValueError("at most 2**31 - 1 triangles are supported")


def _edge_setup(p: torch.Tensor, tri: torch.Tensor, orient: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-triangle edge data: start points (N, 3, 2), signed directions (N, 3, 2), top-left flags (N, 3).

    Edge ``i`` is the one opposite vertex ``i`` (from vertex i+1 to i+2). Its edge function at a point q is
    ``w_i(q) = d_i x (q - a_i)``, evaluated from the edge's endpoints ordered by vertex id (so two triangles
    sharing an edge compute bit-identical values) and multiplied by a sign (folded into ``d_i``, exactly) that
    makes it positive inside the triangle. A pixel centre with ``w_i == 0`` belongs to the triangle when the
    inside normal ``n = (-d_y, d_x)`` points to +x, or along +y when vertical: the sample is nudged by an
    infinitesimal fixed offset, which gives every point on a shared edge or vertex to exactly one triangle.
    """
    nxt = torch.tensor([1, 2, 0], device=p.device)
    prv = torch.tensor([2, 0, 1], device=p.device)
    i_from, i_to = tri.index_select(1, nxt), tri.index_select(1, prv)  # (N, 3)
    p_from, p_to = p.index_select(1, nxt), p.index_select(1, prv)  # (N, 3, 2)
    swap = (i_from > i_to)[..., None]
    a = torch.where(swap, p_to, p_from)
    sign = torch.where(swap, -orient[:, None, None], orient[:, None, None])  # (N, 3, 1) in {-1, +1}
    d = (torch.where(swap, p_from, p_to) - a) * sign
    nx, ny = -d[..., 1], d[..., 0]
    top_left = (nx > 0) | ((nx == 0) & (ny > 0))
    return a, d, top_left


def rasterize(uv: torch.Tensor, depth: torch.Tensor, triangles: torch.Tensor | np.ndarray, height: int,
              width: int, *, settings: RasterSettings | None = None) -> Fragments:
    """Rasterise B meshes sharing one triangle list into (B, H, W) fragments (see the module docstring).

    ``uv`` (B, V, 2): pixel coordinates (x right, y down; pixel (x, y) is sampled at (x + 0.5, y + 0.5));
    ``depth`` (B, V): smaller is nearer (view-space depth for the default perspective-correct mode);
    ``triangles`` (F, 3) vertex ids. The visibility is exact up to the float precision of the inputs and
    deterministic; gradients reach ``uv`` and ``depth`` through the barycentrics of the visible triangles.
    """
    s = settings or RasterSettings()
    tris = torch.as_tensor(np.asarray(triangles, np.int64) if isinstance(triangles, np.ndarray) else triangles)
    tris = tris.to(device=uv.device, dtype=torch.int64)
    _check_inputs(uv, depth, tris)
    bsz, hw = uv.shape[0], height * width
    dtype, dev = uv.dtype, uv.device
    depth = depth.to(dtype)

    with torch.no_grad():
        keys = _visibility_keys(uv.detach(), depth.detach(), tris, height, width, s)

    face_ids = torch.full((bsz * hw,), -1, dtype=torch.int64, device=dev)
    pix = torch.nonzero(keys != _KEY_EMPTY).squeeze(1)
    face = keys.index_select(0, pix) & ((1 << _ID_BITS) - 1)
    face_ids[pix] = face
    lam, z = _barycentrics(uv, depth, tris, pix, face, height, width, s.perspective_correct)
    bary = torch.zeros(bsz * hw, 3, dtype=dtype, device=dev).index_put((pix,), lam)
    zbuf = torch.zeros(bsz * hw, dtype=dtype, device=dev).index_put((pix,), z)
    return Fragments(face_ids=face_ids.view(bsz, height, width), bary=bary.view(bsz, height, width, 3),
                     zbuf=zbuf.view(bsz, height, width), triangles=tris)


def _visibility_keys(uv: torch.Tensor, depth: torch.Tensor, tris: torch.Tensor, height: int, width: int,
                     s: RasterSettings) -> torch.Tensor:
    """(B*H*W,) int64 z-buffer keys: quantised depth << 32 | triangle id, ``_KEY_EMPTY`` where nothing.

    Triangles are grouped by the power-of-two size class of their pixel bounding box (w, h); each group is
    tested on a (triangles, w*h) grid by broadcasting the per-triangle data against the grid offsets, in
    chunks of at most ``max_candidates`` cells. Broadcasting reads per-triangle data once instead of
    gathering it per candidate, which is what costs most on CPU; padding wastes under 4x of the cells.
    """
    bsz, nf = uv.shape[0], tris.shape[0]
    dev, dtype = uv.device, uv.dtype
    keys = torch.full((bsz * height * width,), _KEY_EMPTY, dtype=torch.int64, device=dev)
    if bsz == 0 or nf == 0:
        return keys

    # ---- per (batch, triangle) setup and culling: rows [x0, y0, d0, x1, y1, d1, x2, y2, d2]
    table = _per_batch(torch.cat([uv, depth[..., None]], -1), tris.expand(bsz, -1, -1)).view(bsz * nf, 9)
    x, y, z = table[:, 0::3], table[:, 1::3], table[:, 2::3]
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])  # 2x signed
    keep = torch.isfinite(table).all(1) & (area.abs() > 2 * s.min_area)
    if s.perspective_correct:
        keep &= (z > 0).all(1)
    if s.cull_backfaces:
        keep &= area < 0
    # pixel index range whose centres x + 0.5 fall in [lo, hi]
    bx0 = torch.ceil(x.amin(1).clamp(-1, width + 1) - 0.5).long().clamp_min(0)
    bx1 = torch.floor(x.amax(1).clamp(-1, width + 1) - 0.5).long().clamp_max(width - 1)
    by0 = torch.ceil(y.amin(1).clamp(-1, height + 1) - 0.5).long().clamp_min(0)
    by1 = torch.floor(y.amax(1).clamp(-1, height + 1) - 0.5).long().clamp_max(height - 1)
    keep &= (bx1 >= bx0) & (by1 >= by0)
    k = torch.nonzero(keep).squeeze(1)
    if k.numel() == 0:
        return keys
    bi, fi = k // nf, k % nf
    x0, y0 = bx0.index_select(0, k), by0.index_select(0, k)
    bw, bh = bx1.index_select(0, k) - x0 + 1, by1.index_select(0, k) - y0 + 1
    ak = area.index_select(0, k)
    sel = table.index_select(0, k)
    pk, dk = sel.view(-1, 3, 3)[..., :2], sel[:, 2::3]

    # ---- depth key terms: q = sum_e w_e * t_e is the depth (perspective: inverse depth, reversed) mapped
    # linearly onto [0, 2^30] per batch element (sum_e w_e = |area| folds the offset and scale into t_e)
    zv = 1.0 / dk if s.perspective_correct else dk
    big = torch.finfo(dtype).max
    zlo = torch.full((bsz,), big, dtype=dtype, device=dev).scatter_reduce(0, bi, zv.amin(1), "amin")
    zhi = torch.full((bsz,), -big, dtype=dtype, device=dev).scatter_reduce(0, bi, zv.amax(1), "amax")
    span = (zhi - zlo).clamp_min(torch.finfo(dtype).tiny).index_select(0, bi)[:, None]
    rel = (zhi.index_select(0, bi)[:, None] - zv) if s.perspective_correct else (zv - zlo.index_select(0, bi)[:, None])
    t = (rel / span) * (_DEPTH_LEVELS / ak.abs())[:, None]

    orient = torch.where(ak > 0, 1.0, -1.0).to(dtype)
    a, d, top_left = _edge_setup(pk, _rows(tris, fi), orient)
    # per-triangle table: [a (6), d (6), top-left (3), t (3), x0 + .5, y0 + .5, bw, bh]
    fdata = torch.cat([a.flatten(1), d.flatten(1), top_left.to(dtype), t, (x0.to(dtype) + 0.5)[:, None],
                       (y0.to(dtype) + 0.5)[:, None], bw.to(dtype)[:, None], bh.to(dtype)[:, None]], 1)
    origin = bi * (height * width) + y0 * width + x0  # flat index of the bounding box's first pixel

    # ---- size classes: (ceil(log2 bw), ceil(log2 bh))
    lw = torch.frexp((bw - 1).to(torch.float32)).exponent.long()
    lh = torch.frexp((bh - 1).to(torch.float32)).exponent.long()
    cls = lw * 64 + lh
    order = torch.argsort(cls, stable=True)
    fdata, origin, fi = fdata.index_select(0, order), origin.index_select(0, order), fi.index_select(0, order)
    counts = torch.bincount(cls, minlength=64 * 64).tolist()
    first = 0
    for c, n in enumerate(counts):
        if n == 0:
            continue
        cw, ch = 1 << (c // 64), 1 << (c % 64)
        gi = torch.arange(cw * ch, device=dev)
        gx, gy = (gi % cw).to(dtype), (gi // cw).to(dtype)
        goff = (gi // cw) * width + gi % cw
        step = max(1, s.max_candidates // (cw * ch))
        for k0 in range(first, first + n, step):
            k1 = min(first + n, k0 + step)
            _test_cells(keys, fdata[k0:k1], origin[k0:k1], fi[k0:k1], gx, gy, goff)
        first += n
    return keys


def _test_cells(keys: torch.Tensor, f: torch.Tensor, origin: torch.Tensor, face: torch.Tensor, gx: torch.Tensor,
                gy: torch.Tensor, goff: torch.Tensor) -> None:
    """Coverage test and z-buffer update for triangles ``f`` (K, 22) on their (K, cells) bounding-box grids."""
    px = f[:, 18:19] + gx  # pixel centres (K, cells), exact
    py = f[:, 19:20] + gy
    inside = (gx < f[:, 20:21]) & (gy < f[:, 21:22])
    q = None
    for e in range(3):
        w = f[:, 6 + 2 * e, None] * (py - f[:, 2 * e + 1, None]) - f[:, 7 + 2 * e, None] * (px - f[:, 2 * e, None])
        inside &= (w > 0) | ((w == 0) & (f[:, 12 + e, None] > 0))
        q = w * f[:, 15 + e, None] if q is None else q + w * f[:, 15 + e, None]
    idx = torch.nonzero(inside.view(-1)).squeeze(1)
    row = idx // goff.shape[0]
    key = (q.view(-1).index_select(0, idx).clamp(0, _DEPTH_LEVELS).long() << _ID_BITS) | face.index_select(0, row)
    pix = origin.index_select(0, row) + goff.index_select(0, idx % goff.shape[0])
    keys.scatter_reduce_(0, pix, key, "amin", include_self=True)


def _barycentrics(uv: torch.Tensor, depth: torch.Tensor, tris: torch.Tensor, pix: torch.Tensor,
                  face: torch.Tensor, height: int, width: int, perspective: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable barycentrics (N, 3) and depth (N,) of triangles ``face`` at flat pixels ``pix``."""
    hw = height * width
    b = pix // hw
    rem = pix % hw
    qx = (rem % width).to(uv.dtype) + 0.5
    qy = (rem // width).to(uv.dtype) + 0.5
    vid = _rows(tris, face)  # (N, 3)
    both = _per_batch(torch.cat([uv, depth[..., None]], -1), vid, b[:, None])  # (N, 3, 3)
    v, dv = both[..., :2], both[..., 2]
    w = []
    for i in range(3):
        a, c = v[:, (i + 1) % 3], v[:, (i + 2) % 3]
        w.append((c[:, 0] - a[:, 0]) * (qy - a[:, 1]) - (c[:, 1] - a[:, 1]) * (qx - a[:, 0]))
    w = torch.stack(w, 1)
    lam = w / w.sum(1, keepdim=True)
    if perspective:
        t = lam / dv
        tsum = t.sum(1, keepdim=True)
        return t / tsum, 1.0 / tsum.squeeze(1)
    return lam, (lam * dv).sum(1)


def interpolate(fragments: Fragments, attributes: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) per-pixel attributes of the visible surface, 0 for background.

    ``attributes`` (V, C) shared by the batch or (B, V, C) per element; differentiable w.r.t. them and,
    through the barycentrics, w.r.t. the vertex positions that were rasterised.
    """
    bsz, h, w = fragments.face_ids.shape
    if attributes.ndim == 2:
        attributes = attributes.unsqueeze(0)
    if attributes.ndim != 3 or attributes.shape[0] not in (1, bsz):
        raise ValueError(f"attributes must be (V, C) or (B={bsz}, V, C), got {tuple(attributes.shape)}")
    attributes = attributes.to(fragments.bary.device)
    c = attributes.shape[-1]
    flat = fragments.face_ids.reshape(-1)
    pix = torch.nonzero(flat >= 0).squeeze(1)
    vid = _rows(fragments.triangles, flat[pix])  # (N, 3)
    b = pix // (h * w) if attributes.shape[0] > 1 else torch.zeros_like(pix)
    vals = _per_batch(attributes, vid, b[:, None])  # (N, 3, C)
    lam = _rows(fragments.bary.reshape(-1, 3), pix).to(vals.dtype)
    out = (lam[..., None] * vals).sum(1)
    dtype = torch.promote_types(attributes.dtype, fragments.bary.dtype)
    img = torch.zeros(bsz * h * w, c, dtype=dtype, device=attributes.device).index_put((pix,), out.to(dtype))
    return img.view(bsz, h, w, c).permute(0, 3, 1, 2)


def coverage(fragments: Fragments) -> torch.Tensor:
    """(B, 1, H, W) coverage mask in {0, 1} (see :meth:`Fragments.coverage`)."""
    return fragments.coverage()


# --------------------------------------------------------------------------------------------- PNCC
class PNCCRenderer:
    """Renders a :class:`~pt_data.face_model.FaceModel` posed by :mod:`pt_data.camera` as PNCC images.

    The bases, triangles, PNCC colours (``model.canonical_colors()``) and the lip indicator
    (``model.mask('lip')``) are cached as tensors on ``device``. The camera is the crop camera of
    :mod:`pt_data.camera` scaled to ``size`` pixels (same field of view), so a ``size`` of 256 matches the
    crops and landmarks in the shards exactly. Back faces are culled by default (the face models are
    consistently wound, see :class:`RasterSettings`).
    """

    def __init__(self, model: FaceModel, size: int = CROP_SIZE, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, settings: RasterSettings | None = None) -> None:
        self.model = model
        self.size = int(size)
        self.device = torch.device(device)
        self.dtype = dtype
        self.settings = settings or RasterSettings(cull_backfaces=True)
        self.focal = FOCAL_PX * self.size / CROP_SIZE
        self.center = CENTER_PX * self.size / CROP_SIZE
        v = model.num_vertices

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), device=self.device, dtype=dtype)

        self.mean = tensor(model.mean)  # (V, 3)
        self.id_basis = tensor(model.id_basis.reshape(model.num_shape, v * 3))
        self.exp_basis = tensor(model.exp_basis.reshape(model.num_expression, v * 3))
        self.triangles = torch.as_tensor(model.triangles, device=self.device, dtype=torch.int64)
        lip = model.mask("lip").astype(np.float32)[:, None]
        # one attribute table: PNCC colours (3) + lip indicator (1)
        self.attributes = tensor(np.concatenate([model.canonical_colors(), lip], 1))

    def vertices(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Canonical vertices (B, V, 3) in mm: the torch twin of :meth:`FaceModel.vertices`."""
        shape = torch.as_tensor(shape, device=self.device, dtype=self.dtype)
        expression = torch.as_tensor(expression, device=self.device, dtype=self.dtype)
        if shape.ndim != 2 or shape.shape[1] != self.model.num_shape:
            raise ValueError(f"shape must be (B, {self.model.num_shape}), got {tuple(shape.shape)}")
        if expression.ndim != 2 or expression.shape[1] != self.model.num_expression:
            raise ValueError(f"expression must be (B, {self.model.num_expression}), got {tuple(expression.shape)}")
        flat = shape @ self.id_basis + expression @ self.exp_basis
        return self.mean + flat.view(flat.shape[0], -1, 3)

    def render(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor) -> RenderOutput:
        """PNCC, coverage and lip mask for coefficients ``shape`` (B, S), ``expression`` (B, E) and ``pose`` (B, 6)."""
        return self.render_vertices(self.vertices(shape, expression), pose)

    def render_vertices(self, vertices: torch.Tensor, pose: torch.Tensor) -> RenderOutput:
        """Render canonical vertices (B, V, 3) (e.g. generated by stage 1) posed by ``pose`` (B, 6)."""
        vertices = torch.as_tensor(vertices, device=self.device, dtype=self.dtype)
        pose = torch.as_tensor(pose, device=self.device, dtype=self.dtype)
        nv = self.model.num_vertices
        if vertices.ndim != 3 or vertices.shape[1:] != (nv, 3):
            raise ValueError(f"vertices must be (B, {nv}, 3) for face model {self.model.name!r}, "
                             f"got {tuple(vertices.shape)}")
        if pose.shape != (vertices.shape[0], 6):
            raise ValueError(f"pose must be (B={vertices.shape[0]}, 6), got {tuple(pose.shape)}")
        uv, depth = project_vertices(vertices, pose, focal=self.focal, center=self.center)
        frags = rasterize(uv, depth, self.triangles, self.size, self.size, settings=self.settings)
        img = interpolate(frags, self.attributes)
        mask = frags.coverage()
        pncc = img[:, :3].clamp(0, 1) * mask
        lip = (img[:, 3:4] > 0.5).to(img.dtype)
        return RenderOutput(pncc=pncc, mask=mask, lip_mask=lip, fragments=frags)


def overlay(frame_rgb: np.ndarray, pncc: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray,
            alpha: float = 0.5) -> np.ndarray:
    """Blend one PNCC image (3, H, W) in [0, 1] over a uint8 RGB frame (H, W, 3) where ``mask`` (1, H, W)
    or (H, W) is set; returns a new uint8 (H, W, 3) frame (for visual checks of fits)."""
    frame = np.asarray(frame_rgb)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame_rgb must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    col = pncc.detach().cpu().numpy() if isinstance(pncc, torch.Tensor) else np.asarray(pncc)
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    m = m.reshape(m.shape[-2:]) if m.ndim == 3 else m
    if col.shape != (3, *frame.shape[:2]) or m.shape != frame.shape[:2]:
        raise ValueError(f"pncc (3, H, W) and mask (1, H, W) must match the frame's {frame.shape[:2]}; "
                         f"got {col.shape} and {m.shape}")
    a = float(np.clip(alpha, 0.0, 1.0)) * np.clip(m.astype(np.float32), 0, 1)[..., None]
    out = frame.astype(np.float32) * (1 - a) + np.clip(col.transpose(1, 2, 0), 0, 1) * 255.0 * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
