"""SDF / occupancy field -> triangle meshes: narrow-band hierarchical grid + marching cubes.

Implements the anchor-mesh extraction of REFERENCE §4 ("Anchor mesh from a
latent") the way the release's GPU path does it: the field is evaluated on a
small dense grid over ``[-bounds, bounds]^3`` (``2**octree_depth`` cells per
axis, 64 by default), then level by level only in a *narrow band* of cells
around the sign change, up to ``2**refine_depth`` cells per axis (512 by
default), and marching cubes runs on the band's cells only.  Every tensor
stays on the field's device; marching cubes runs with ``warp-lang`` on CUDA
and scikit-image on the CPU (one code path, the backend picked by device and
logged once).  The field is batched over frames: one call returns the values
of all ``num_fields`` fields (frames / latents) at the same points, and the
band is the union of the fields' bands.

Shape legend: Q query points, F fields (frames or latents), V vertices,
K faces, M cells, N cells per axis of a level (``2**depth``).

The band, level by level (depth ``d`` -> ``d + 1``):

1. the *sign-change cells* of level ``d`` (cells whose 8 corners do not all
   lie on the same side of the level set, in any field) are dilated by
   ``dilation`` cells (the safety band: a thin part that the coarser grid
   straddles shows up at a finer level next to the detected surface) and
   split in 8 children;
2. the children's corners are evaluated (values known at level ``d`` are
   reused, nothing is evaluated twice);
3. *closure*: wherever a sign-change child has a face with mixed signs whose
   neighbour across that face is not in the band, the neighbour is added and
   evaluated, until no surface leaves the band.  So every surface component
   that enters the band is meshed whole at the finest level, with exactly the
   values a dense grid would have there: the mesh equals the dense-grid mesh
   wherever the band covers the surface (tests check it against a dense
   grid, ``octree_depth == refine_depth``, which is the dense path).

What a band can miss: a surface component that no grid point of the coarse
level sees and that does not touch the detected surface's band (e.g. a
separate sliver thinner than a coarse cell, ~3% of the box at the default).
Use a larger ``octree_depth`` (up to ``refine_depth`` = dense) if such parts
matter.

Half precision (CUDA default, ``precision="auto"``): the field runs under
``torch.autocast`` in bf16; the bf16 error is measured on the coarse level
against fp32, and every point whose half value lies within 4x that error of
the level is re-evaluated in fp32, so each grid point that decides the
surface keeps its fp32 sign (tested on the CPU with bf16).
"""
from __future__ import annotations

import logging
import math
from typing import Callable, Optional, Union

import numpy as np
import torch
import trimesh

__all__ = ["sdf_to_meshes", "sdf_to_mesh", "grid_points", "available_backends", "BACKENDS"]

log = logging.getLogger(__name__)

FieldFn = Callable[[torch.Tensor], torch.Tensor]
ProgressFn = Callable[[int, int], None]

BACKENDS = ("skimage", "warp")
"""Marching-cubes backends: scikit-image (CPU) and warp-lang (``warp.geometry.sparse_marching_cubes_from_cells``)."""

_SHIFT = 3
_B = 1 << _SHIFT  # brick side (cells / points per axis owned by one storage brick)
_B3 = _B**3
_MASK = _B - 1
# the 8 corner offsets of a cell, index 4*i + 2*j + k
_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.long)
# the 27 grid points of a cell's 2x2x2 children (offsets from twice the parent cell)
_BLOCK = torch.tensor([[i, j, k] for i in (0, 1, 2) for j in (0, 1, 2) for k in (0, 1, 2)], dtype=torch.long)
# the 9 block points on each side of a parent's 3x3x3 block, same side order as _FACE_STEP
_SIDE_POINTS = torch.tensor([[i * 9 + j * 3 + k for i in range(3) for j in range(3) for k in range(3)
                              if (i, j, k)[axis] == side] for axis in range(3) for side in (0, 2)])
# the neighbour across each of the 6 sides of a cell: (x low, x high, y low, y high, z low, z high)
_FACE_STEP = torch.tensor([[(1 if side else -1) if a == axis else 0 for a in range(3)]
                           for axis in range(3) for side in (0, 1)])
# warp's corner order (IsoSurfaceMarchingCubes.CUBE_CORNER_OFFSETS) as indices into _CORNERS
_WARP_ORDER = [4 * i + 2 * j + k for i, j, k in ((0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0),
                                                  (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1))]
_LOGGED: set = set()


def _log_once(key, level, message) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.log(level, message)


def _warp_usable() -> bool:
    try:
        import warp

        warp.config.quiet = True  # no banner on stdout
        import warp.geometry

        return hasattr(warp.geometry, "sparse_marching_cubes_from_cells")
    except Exception:  # pragma: no cover - depends on the host
        return False


def available_backends(device: Union[str, torch.device, None] = None) -> list[str]:
    """Marching-cubes backends usable for fields on ``device``.

    Returns:
        ``["skimage"]`` plus ``"warp"`` when ``warp-lang`` (>= 1.19, with
        ``warp.geometry.sparse_marching_cubes_from_cells``) imports; warp runs
        on the CPU too (tests use it there), ``"auto"`` picks it on CUDA only.

    Raises:
        RuntimeError/TypeError: only for an invalid ``device`` string (from torch).
    """
    torch.device(device) if device is not None else None
    return ["skimage"] + (["warp"] if _warp_usable() else [])


def grid_points(depth: int, bounds: float = 1.005, device=None) -> torch.Tensor:
    """Coordinates of the dense grid with ``2**depth`` cells per axis.

    Args:
        depth: octree depth (>= 1); ``n = 2**depth + 1`` points per axis.
        bounds: half side of the cube ``[-bounds, bounds]^3`` (model units).
        device: torch device of the result.

    Returns:
        (n**3, 3) float32 points in C order (x slowest, z fastest), i.e. point
        ``(i, j, k)`` is row ``(i*n + j)*n + k`` at ``-bounds + (i, j, k)*h``
        with ``h = 2*bounds/2**depth``.

    Raises:
        ValueError: ``depth`` outside [1, 11] or ``bounds <= 0``.
    """
    if not 1 <= int(depth) <= 11 or not bounds > 0:
        raise ValueError(f"grid_points: need 1 <= depth <= 11 and bounds > 0, got depth={depth}, bounds={bounds}")
    n = 2**depth + 1
    axis = torch.linspace(-bounds, bounds, n, device=device, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
    return grid.reshape(-1, 3)


# --------------------------------------------------------------------------- field evaluation


class _Progress:
    def __init__(self, callback: Optional[ProgressFn]):
        self.callback = callback
        self.done = 0
        self.total = 0

    def add(self, units: int) -> None:
        self.total += int(units)

    def step(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, max(self.total, self.done))


class _Evaluator:
    """Chunked calls of the user field (shape/finite checks, counting, optional half precision)."""

    def __init__(self, field_fn, num_fields, chunk_size, device, bounds, progress, half_dtype):
        self.field_fn = field_fn
        self.num_fields = num_fields
        self.chunk_size = chunk_size
        self.device = device
        self.bounds = bounds
        self.progress = progress
        self.half_dtype = half_dtype  # None = fp32 only
        self.margin = math.inf  # |half value - level| below which a point is re-evaluated in fp32
        self.count = 0
        self.count_fp32 = 0

    def __call__(self, idx: torch.Tensor, cells: int, level: float, sign: float) -> torch.Tensor:
        """Field at integer grid points ``idx`` (Q, 3) of a grid with ``cells`` cells per axis -> (F, Q) fp32."""
        h = 2.0 * self.bounds / cells
        out = torch.empty(self.num_fields, idx.shape[0], dtype=torch.float32, device=self.device)
        self.progress.add(math.ceil(idx.shape[0] / self.chunk_size))
        for start in range(0, idx.shape[0], self.chunk_size):
            pts = idx[start : start + self.chunk_size].to(torch.float32) * h - self.bounds
            vals = self._call(pts, self.half_dtype)
            if self.half_dtype is not None and math.isfinite(self.margin):
                near = ((vals - level).abs() <= self.margin).any(0)
                if bool(near.any()):
                    vals[:, near] = self._call(pts[near], None)
                    self.count_fp32 += int(near.sum())
            out[:, start : start + pts.shape[0]] = vals
            self.count += pts.shape[0]
            self.progress.step()
        return out

    def _call(self, pts: torch.Tensor, half_dtype) -> torch.Tensor:
        from ..perf import tf32_matmuls

        with torch.no_grad(), tf32_matmuls():  # TF32 only when opted in (perf flag ``tf32``)
            if half_dtype is not None:
                with torch.autocast(device_type=pts.device.type, dtype=half_dtype):
                    vals = self.field_fn(pts)
            else:
                vals = self.field_fn(pts)
        if isinstance(vals, np.ndarray):
            vals = torch.from_numpy(vals)
        if not isinstance(vals, torch.Tensor):
            raise TypeError(
                f"sdf_to_meshes: field_fn must return a torch.Tensor of shape (num_fields, Q), got {type(vals).__name__}"
            )
        q = pts.shape[0]
        if vals.ndim == 1 and self.num_fields == 1:
            vals = vals[None]
        if vals.ndim == 3 and vals.shape[-1] == 1:
            vals = vals[..., 0]
        if tuple(vals.shape) != (self.num_fields, q):
            raise ValueError(
                f"sdf_to_meshes: field_fn returned shape {tuple(vals.shape)} for {q} points; expected "
                f"({self.num_fields}, {q}) = (num_fields, Q). Pass num_fields= matching the number of frames/latents."
            )
        vals = vals.detach().to(self.device, torch.float32)
        if not torch.isfinite(vals).all():
            raise ValueError(
                "sdf_to_meshes: field_fn returned NaN or infinite values; check the latents / decoder "
                "(e.g. run it in float32) before meshing"
            )
        return vals


# --------------------------------------------------------------------------- sparse storage of one level


class _Level:
    """Field values at the grid points of one level, stored in bricks of ``_B**3`` points.

    Point ``p`` (integer, 0..N per axis) is owned by brick ``p >> 3`` at local
    index ``p & 7``; a dense (N/8 + 1)^3 map gives each allocated brick's
    slot, so a lookup is a few shifts and one gather, and no sort is needed.
    """

    def __init__(self, cells: int, num_fields: int, device: torch.device):
        self.cells = cells
        self.nb = (cells >> _SHIFT) + 1
        self.device = device
        self.num_fields = num_fields
        self.map = torch.full((self.nb**3,), -1, dtype=torch.long, device=device)
        self.size = 0
        self.cap = 0
        self.vals = torch.empty(num_fields, 0, dtype=torch.float32, device=device)
        self.known = torch.zeros(0, dtype=torch.bool, device=device)
        self.origin = torch.zeros(0, 3, dtype=torch.long, device=device)

    def _grow(self, need: int) -> None:
        if need <= self.cap:
            return
        cap = max(need, 2 * self.cap, 64)
        extra = (cap - self.cap) * _B3
        self.vals = torch.cat([self.vals, self.vals.new_zeros(self.num_fields, extra)], 1)
        self.known = torch.cat([self.known, self.known.new_zeros(extra)])
        self.origin = torch.cat([self.origin, self.origin.new_zeros(cap - self.cap, 3)])
        self.cap = cap

    def brick_keys(self, bricks: torch.Tensor) -> torch.Tensor:
        return (bricks[:, 0] * self.nb + bricks[:, 1]) * self.nb + bricks[:, 2]

    def ensure(self, pts: torch.Tensor) -> None:
        """Allocate the bricks owning the points ``pts`` (Q, 3)."""
        if pts.numel():
            self.ensure_keys(self.brick_keys(pts >> _SHIFT))

    def ensure_keys(self, keys: torch.Tensor) -> None:
        """Allocate the bricks with dense keys ``keys`` (Q,)."""
        flag = torch.zeros(self.nb**3, dtype=torch.bool, device=self.device)
        flag[keys] = True
        flag &= self.map < 0
        new = torch.nonzero(flag).flatten()
        if new.numel() == 0:
            return
        self._grow(self.size + new.numel())
        self.map[new] = torch.arange(self.size, self.size + new.numel(), device=self.device)
        nb = self.nb
        self.origin[self.size : self.size + new.numel()] = (
            torch.stack([new // (nb * nb), (new // nb) % nb, new % nb], 1) << _SHIFT)
        self.size += new.numel()

    def flat(self, pts: torch.Tensor, checked: bool = False) -> torch.Tensor:
        """Storage index of each point (Q, 3) -> (Q,); with ``checked``, -1 where its brick is missing."""
        slot = self.map[self.brick_keys(pts >> _SHIFT)]
        loc = pts & _MASK
        idx = (slot << (3 * _SHIFT)) | (((loc[:, 0] << _SHIFT) | loc[:, 1]) << _SHIFT) | loc[:, 2]
        return torch.where(slot >= 0, idx, -1) if checked else idx

    def coords(self, flat: torch.Tensor) -> torch.Tensor:
        """Integer grid coordinates (Q, 3) of storage indices (Q,)."""
        out = self.origin[flat >> (3 * _SHIFT)]
        out[:, 0] += (flat >> (2 * _SHIFT)) & _MASK
        out[:, 1] += (flat >> _SHIFT) & _MASK
        out[:, 2] += flat & _MASK
        return out

    def fill(self, parents: torch.Tensor, parent: "_Level", ev: "_Evaluator", level: float,
             sign: float) -> torch.Tensor:
        """Evaluate the 27 grid points of each parent cell's children (M, 3) -> their storage indices (M, 27).

        Values this level already has, or that the coarser level ``parent``
        has (even points), are reused; only the rest is evaluated.
        """
        # per axis, the brick and local index of 2c + {0, 1, 2}; the 27 combinations by broadcasting
        # (a handful of passes over the M x 27 points: this is the hot loop of the finest level)
        q = 2 * parents[:, :, None] + torch.arange(3, device=parents.device)  # (M, 3 axes, 3 offsets)
        br, lo = q >> _SHIFT, q & _MASK
        nb = self.nb
        key = ((br[:, 0, :, None, None] * nb + br[:, 1, None, :, None]) * nb + br[:, 2, None, None, :]).reshape(-1)
        loc = ((lo[:, 0, :, None, None] << (2 * _SHIFT)) | (lo[:, 1, None, :, None] << _SHIFT)
               | lo[:, 2, None, None, :]).reshape(-1)
        self.ensure_keys(key)
        pf = (self.map[key] << (3 * _SHIFT)) | loc
        del key, loc
        if pf.numel() > self.size * _B3 // 8:  # dense marking beats sorting
            need = torch.zeros(self.size * _B3, dtype=torch.bool, device=self.device)
            need[pf] = True
            need &= ~self.known[: self.size * _B3]
            todo = torch.nonzero(need).flatten()
        else:
            todo = torch.unique(pf)
            todo = todo[~self.known[todo]]
        if todo.numel():
            q = self.coords(todo)
            even = ((q & 1) == 0).all(1)
            if bool(even.any()):
                up = parent.flat(q[even] >> 1, checked=True)
                hit = up >= 0
                hit[hit.clone()] = parent.known[up[hit]]
                ei = torch.nonzero(even).flatten()[hit]
                self.vals[:, todo[ei]] = parent.vals[:, up[hit]]
                self.known[todo[ei]] = True
                rest = torch.ones_like(even)
                rest[ei] = False
                todo, q = todo[rest], q[rest]
            if todo.numel():
                self.vals[:, todo] = ev(q, self.cells, level, sign)
                self.known[todo] = True
        return pf.view(-1, 27)

    def corner_values(self, cells: torch.Tensor) -> torch.Tensor:
        """(F, M, 8) values at the corners of ``cells`` (M, 3) (all known), ``_CORNERS`` order."""
        corners = (cells[:, None, :] + _CORNERS.to(cells.device)[None]).reshape(-1, 3)
        return self.vals[:, self.flat(corners)].view(self.num_fields, cells.shape[0], 8)

    def brick_volumes(self, bricks: torch.Tensor, field: int) -> torch.Tensor:
        """(S, 9, 9, 9) values of field ``field`` at the points of cell bricks ``bricks`` (S, 3); -inf unknown."""
        s = bricks.shape[0]
        out = torch.full((s, _B + 1, _B + 1, _B + 1), -math.inf, dtype=torch.float32, device=self.device)
        vals = torch.where(self.known[: self.size * _B3], self.vals[field, : self.size * _B3], -math.inf)
        vals = vals.view(self.size, _B, _B, _B)
        for d in _CORNERS.tolist():
            nb = bricks + torch.tensor(d, device=self.device)
            ok = (nb < self.nb).all(1)
            slot = torch.full((s,), -1, dtype=torch.long, device=self.device)
            slot[ok] = self.map[self.brick_keys(nb[ok])]
            ok = slot >= 0
            src = [slice(0, _B) if x == 0 else slice(0, 1) for x in d]
            dst = [slice(0, _B) if x == 0 else slice(_B, _B + 1) for x in d]
            out[(ok,) + tuple(dst)] = vals[(slot[ok],) + tuple(src)]
        return out


def _block_analysis(vals: torch.Tensor, level: float, sign: float):
    """Children of M parent cells from their (F, M, 27) point values.

    Returns (M, 8) bool: child (a, b, c) (index 4a+2b+c) has a sign change in
    some field; (M, 6) bool: the parent's side (axis, low/high) holds a child
    face with mixed signs (the surface leaves the parent there).
    """
    f, m = vals.shape[0], vals.shape[1]
    ins = (sign * (vals - level) > 0).view(f, m, 3, 3, 3)
    frac = torch.nn.functional.avg_pool3d(ins.view(f * m, 1, 3, 3, 3).to(torch.float16 if ins.is_cuda else
                                                                          torch.float32), 2, 1)
    child = ((frac > 0) & (frac < 1)).view(f, m, 8).any(0)  # fractions of inside corners: exact in fp16
    planes = ins.view(f, m, 27)[:, :, _SIDE_POINTS.to(vals.device)]  # (F, M, 6, 9)
    frac = torch.nn.functional.avg_pool2d(planes.view(f * m * 6, 1, 3, 3).to(frac.dtype), 2, 1)
    sides = ((frac > 0) & (frac < 1)).view(f, m, 6, 4).any(-1).any(0)
    return child, sides


class _Marks:
    """Membership of cells (M, 3) of a level: a dense bool volume when small, sorted keys otherwise."""

    def __init__(self, cells: int, device: torch.device):
        self.n = cells
        self.dense = torch.zeros(cells**3, dtype=torch.bool, device=device) if cells**3 <= 2**27 else None
        self.keys = torch.zeros(0, dtype=torch.long, device=device)

    def _key(self, c):
        return (c[:, 0] * self.n + c[:, 1]) * self.n + c[:, 2]

    def new(self, cells: torch.Tensor) -> torch.Tensor:
        """The cells (unique) not marked yet; marks them."""
        k = torch.unique(self._key(cells))
        if self.dense is not None:
            k = k[~self.dense[k]]
            self.dense[k] = True
        else:
            k = k[~torch.isin(k, self.keys)]
            self.keys = torch.cat([self.keys, k])
        n = self.n
        return torch.stack([k // (n * n), (k // n) % n, k % n], 1)


def _dilate(cells: torch.Tensor, radius: int, ncells: int) -> torch.Tensor:
    """Cells (M, 3) within ``radius`` (Chebyshev) of ``cells``, unique, inside [0, ncells)^3."""
    if radius <= 0 or cells.numel() == 0:
        return cells
    if ncells**3 > 2**27:
        r = torch.arange(-radius, radius + 1, device=cells.device)
        offs = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        nb = (cells[:, None, :] + offs[None]).reshape(-1, 3)
        nb = nb[((nb >= 0) & (nb < ncells)).all(1)]
        return _Marks(ncells, cells.device).new(nb)
    mark = torch.zeros(ncells**3, dtype=torch.bool, device=cells.device)
    r = range(-radius, radius + 1)
    for dx in r:
        for dy in r:
            for dz in r:
                nb = cells + torch.tensor([dx, dy, dz], device=cells.device)
                nb = nb[((nb >= 0) & (nb < ncells)).all(1)]
                mark[(nb[:, 0] * ncells + nb[:, 1]) * ncells + nb[:, 2]] = True
    key = torch.nonzero(mark).flatten()
    return torch.stack([key // (ncells * ncells), (key // ncells) % ncells, key % ncells], 1)


# --------------------------------------------------------------------------- marching cubes on the band


def _mc_skimage(lv: _Level, cells: torch.Tensor, field: int, level: float, sign: float):
    """Band marching cubes with scikit-image: the band's bricks laid side by side, seams masked, then welded.

    The bricks (``_B**3`` cells each, with their far faces) that hold band
    cells are packed into one small 3-D array of bricks; scikit-image's
    ``mask`` keeps exactly the band's cells (it keeps a cell when the mask is
    True at the cell's far corner), so no cell across two packed bricks and no
    cell outside the band is meshed.  Vertices on brick faces appear once per
    brick and are welded by the grid edge they lie on.

    Returns (V, 3) float64 vertices in grid-index units and (K, 3) int64 faces, outward winding.
    """
    from skimage.measure import marching_cubes

    dev = cells.device
    n1 = _B + 1
    nbc = (lv.cells + _B - 1) // _B  # bricks of cells per axis
    bkey = ((cells[:, 0] // _B) * nbc + cells[:, 1] // _B) * nbc + cells[:, 2] // _B
    flag = torch.zeros(nbc**3, dtype=torch.bool, device=dev)
    flag[bkey] = True
    bricks = torch.nonzero(flag).flatten()
    nbr = bricks.numel()
    slot = torch.full((nbc**3,), -1, dtype=torch.long, device=dev)
    slot[bricks] = torch.arange(nbr, device=dev)
    origin = torch.stack([bricks // (nbc * nbc), (bricks // nbc) % nbc, bricks % nbc], 1) * _B  # (S, 3)
    # packing: gx * gy * gz >= S bricks, small coordinates (float32 vertices stay precise)
    gx = max(1, round(nbr ** (1 / 3)))
    gy = gx
    gz = -(-nbr // (gx * gy))
    total = gx * gy * gz
    vol = torch.full((total, n1, n1, n1), -1.0, dtype=torch.float32, device=dev)
    bv = lv.brick_volumes(origin >> _SHIFT, field)
    vol[:nbr] = torch.where(torch.isfinite(bv), sign * (bv - level), -1.0)  # unknown points: masked anyway
    s = slot[bkey]
    loc = cells - origin[s] + 1  # far corner of each band cell
    mask = torch.zeros(total, n1, n1, n1, dtype=torch.bool, device=dev)
    mask[s, loc[:, 0], loc[:, 1], loc[:, 2]] = True

    def pack(t):
        t = t.view(gx, gy, gz, n1, n1, n1).permute(0, 3, 1, 4, 2, 5)
        return t.reshape(gx * n1, gy * n1, gz * n1).cpu().numpy()

    # inside > 0 with "ascent": counter-clockwise faces seen from outside (positive volume; tested)
    verts, faces, _n, _v = marching_cubes(pack(vol), level=0.0, gradient_direction="ascent", mask=pack(mask))
    verts = verts.astype(np.float64)
    faces = faces.astype(np.int64)
    block = np.floor(verts / n1).astype(np.int64)
    verts -= block * n1
    onface = ((verts == 0) | (verts == _B)).any(1)
    sid = (block[:, 0] * gy + block[:, 1]) * gz + block[:, 2]
    verts += origin.cpu().numpy()[sid]
    return _weld(verts, faces, onface, lv.cells + 1)


def _weld(verts: np.ndarray, faces: np.ndarray, candidates: np.ndarray, n: int):
    """Merge duplicated vertices among ``candidates`` (brick-face vertices) by the grid edge they lie on."""
    idx = np.nonzero(candidates)[0]
    if idx.size == 0:
        return verts, faces
    p = verts[idx]
    r = np.round(p)
    frac = np.abs(p - r)
    axis = frac.argmax(1)
    base = r.astype(np.int64)
    rows = np.arange(idx.size)
    base[rows, axis] = np.floor(p[rows, axis]).astype(np.int64)
    key = ((base[:, 0] * n + base[:, 1]) * n + base[:, 2]) * 3 + axis
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    remap = np.arange(len(verts))
    remap[idx] = idx[first[inverse]]
    keep = np.ones(len(verts), dtype=bool)
    keep[idx] = False
    keep[idx[first]] = True
    new_index = np.cumsum(keep) - 1
    faces = new_index[remap[faces]]
    return verts[keep], faces


def _mc_warp(lv: _Level, cells: torch.Tensor, field: int, level: float, sign: float):
    """Band marching cubes with warp-lang's sparse marching cubes (cells + corner values, watertight).

    Returns (V, 3) float64 vertices in grid-index units and (K, 3) int64 faces, outward winding.
    """
    import warp as wp
    import warp.geometry as wg

    occ = sign * (lv.corner_values(cells)[field] - level)
    occ = occ[:, _WARP_ORDER].contiguous()
    # given an SDF (inside < 0, here -occ) warp winds faces counter-clockwise seen from outside
    # (tests: positive volume and the same faces as scikit-image, on the CPU, where warp runs the same kernels)
    device = "cpu" if cells.device.type == "cpu" else f"cuda:{cells.device.index or 0}"
    wcells = wp.from_torch(cells.to(torch.int32).contiguous(), dtype=wp.int32) if device != "cpu" else \
        cells.to(torch.int32).cpu().numpy()
    wvals = wp.from_torch((-occ).contiguous()) if device != "cpu" else (-occ).cpu().numpy()
    verts, indices = wg.sparse_marching_cubes_from_cells(wcells, wvals, origin=(0.0, 0.0, 0.0), cell_width=1.0,
                                                          threshold=0.0, device=device)
    v = verts.numpy().astype(np.float64).reshape(-1, 3)
    f = indices.numpy().astype(np.int64).reshape(-1, 3)
    return v, f


# --------------------------------------------------------------------------- public API


def _resolve_precision(precision: str, dev: torch.device):
    names = {"auto": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in names:
        raise ValueError(f"sdf_to_meshes: precision must be one of {sorted(names)}, got {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if dev.type == "cuda" else None
    return names[precision]


def sdf_to_meshes(
    field_fn: FieldFn,
    num_fields: int = 1,
    *,
    bounds: float = 1.005,
    octree_depth: int = 6,
    refine_depth: int = 9,
    level: float = 0.0,
    inside: str = "negative",
    chunk_size: int = 2**18,
    device: Union[str, torch.device, None] = None,
    callback: Optional[ProgressFn] = None,
    backend: str = "auto",
    dilation: int = 1,
    precision: str = "auto",
    allow_empty: bool = False,
) -> list[trimesh.Trimesh]:
    """Extract the level set of ``num_fields`` scalar fields as triangle meshes (narrow band).

    REFERENCE §4 (anchor mesh from a latent): a dense grid of
    ``2**octree_depth`` cells per axis over ``[-bounds, bounds]^3``, then a
    narrow band around the surface refined level by level up to
    ``2**refine_depth`` cells per axis, marching cubes at ``level`` on the
    band's cells (see the module docstring for the band and its closure).
    ``octree_depth == refine_depth`` is the dense path (every cell meshed);
    the band gives the same mesh wherever it covers the surface.

    Args:
        field_fn: ``field_fn(points) -> values``; ``points`` is a (Q, 3) float32
            tensor on ``device`` (model units); ``values`` is (num_fields, Q)
            (``(Q,)`` accepted when ``num_fields == 1``), one row per field
            (frame / latent) -- all fields are evaluated at the same points.
            Called under ``torch.no_grad()`` with Q <= ``chunk_size`` (and
            under ``torch.autocast`` for half precision).
        num_fields: number of fields F returned per call (>= 1).
        bounds: half side of the sampled cube (default 1.005, REFERENCE §4).
        octree_depth: depth of the dense coarse grid (``2**d`` cells per axis),
            1..11; default 6 (64^3 cells, as the release's 63^3 coarse level).
        refine_depth: final depth (>= octree_depth, <= 11); default 9 (512^3).
        level: iso value of the surface (0 for an SDF or logits).
        inside: ``"negative"`` when values below ``level`` are inside (true SDF,
            TripoSG decoder output after its negation) or ``"positive"`` when
            values above ``level`` are inside (occupancy / logits).  Decides the
            winding: faces always wind counter-clockwise seen from outside.
        chunk_size: max points per ``field_fn`` call.
        device: device of the query points and of every tensor of the
            extraction (default CPU); use the field's (model's) device.
        callback: optional ``callback(done, total)`` progress hook, called after
            each chunk of field evaluations and after each marching cubes;
            ``total`` grows as the band is discovered (``done`` never decreases
            and ends at ``total``).
        backend: ``"auto"`` (warp-lang on CUDA when installed, scikit-image
            otherwise; the choice is logged once per device), ``"skimage"`` or
            ``"warp"`` (also runs on the CPU).
        dilation: safety band, in cells, around the sign-change cells of each
            level before refining (>= 0).
        precision: ``"auto"`` (bf16 on CUDA, fp32 elsewhere), ``"fp32"``,
            ``"bf16"`` or ``"fp16"``: dtype of the field evaluation under
            autocast; in half precision, points whose value lies within 4x the
            measured half-vs-fp32 error of ``level`` are re-evaluated in fp32.
        allow_empty: return an empty ``Trimesh`` for a field without surface
            instead of raising.

    Returns:
        List of F ``trimesh.Trimesh`` (vertices (V, 3) float64 in model units,
        faces (K, 3) int64, outward winding, vertices welded, not otherwise
        processed; apply :func:`actionmesh_core.geometry.cleanup.clean_mesh`
        next).  Each mesh's ``metadata["meshing"]`` holds
        ``points_evaluated`` (field evaluations, shared by the F fields),
        ``points_fp32`` (of which re-evaluated in fp32), ``dense_points``
        (``(2**refine_depth + 1)**3``), their ``ratio``, ``band_cells`` (final
        sign-change cells), the depths, ``voxel_size``, ``precision`` and
        ``backend``.

    Raises:
        TypeError: ``field_fn`` not callable or returns a non-tensor.
        ValueError: bad depths / ``inside`` / ``backend`` / ``precision`` /
            ``num_fields`` / ``chunk_size`` / ``dilation``; ``field_fn``
            returns the wrong shape or NaN/inf; a field has no surface at
            ``level`` (unless ``allow_empty``).
        RuntimeError: ``backend="warp"`` requested but warp-lang is missing.
    """
    if not callable(field_fn):
        raise TypeError(f"sdf_to_meshes: field_fn must be callable, got {type(field_fn).__name__}")
    if int(num_fields) != num_fields or num_fields < 1:
        raise ValueError(f"sdf_to_meshes: num_fields must be a positive integer, got {num_fields!r}")
    num_fields = int(num_fields)
    if not (1 <= int(octree_depth) <= 11):
        raise ValueError(f"sdf_to_meshes: octree_depth must be in [1, 11], got {octree_depth}")
    if not (int(octree_depth) <= int(refine_depth) <= 11):
        raise ValueError(
            f"sdf_to_meshes: refine_depth must be in [octree_depth, 11] = [{octree_depth}, 11], got {refine_depth}"
        )
    if inside not in ("negative", "positive"):
        raise ValueError(f"sdf_to_meshes: inside must be 'negative' (SDF) or 'positive' (occupancy), got {inside!r}")
    if not (bounds > 0 and math.isfinite(bounds)):
        raise ValueError(f"sdf_to_meshes: bounds must be a positive finite half side, got {bounds}")
    if chunk_size < 1:
        raise ValueError(f"sdf_to_meshes: chunk_size must be >= 1, got {chunk_size}")
    if dilation < 0:
        raise ValueError(f"sdf_to_meshes: dilation must be >= 0, got {dilation}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    half = _resolve_precision(precision, dev)
    if backend not in ("auto",) + BACKENDS:
        raise ValueError(f"sdf_to_meshes: backend must be 'auto', 'skimage' or 'warp', got {backend!r}")
    if backend == "auto":
        if dev.type == "cuda" and _warp_usable():
            backend = "warp"
        else:
            backend = "skimage"
            if dev.type == "cuda":
                _log_once(("no-warp", dev.type), logging.WARNING,
                          "sdf_to_meshes: warp-lang (>= 1.19) is not installed: marching cubes runs on the CPU with "
                          "scikit-image (pip install warp-lang for GPU marching cubes)")
        _log_once(("backend", dev.type, backend), logging.INFO,
                  f"sdf_to_meshes: marching cubes with {backend} for fields on {dev.type}")
    elif backend == "warp" and not _warp_usable():
        raise RuntimeError("sdf_to_meshes: backend='warp' needs warp-lang >= 1.19 (pip install warp-lang); "
                           "or use backend='skimage'")
    sign = 1.0 if inside == "positive" else -1.0
    level = float(level)
    d0, d1 = int(octree_depth), int(refine_depth)

    progress = _Progress(callback)
    progress.add(num_fields)
    ev = _Evaluator(field_fn, num_fields, int(chunk_size), dev, float(bounds), progress, half)

    # ---- dense coarse level (the field's first evaluation also calibrates half precision)
    n0 = 2**d0
    lv = _Level(n0, num_fields, dev)
    g = torch.arange(n0 + 1, device=dev)
    pts = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    lv.ensure(pts)
    fl = lv.flat(pts)
    if half is not None:
        ev.half_dtype = None
        exact = ev(pts, n0, level, sign)
        ev.half_dtype = half
        approx = torch.empty_like(exact)
        for s in range(0, pts.shape[0], ev.chunk_size):
            p = pts[s : s + ev.chunk_size].to(torch.float32) * (2.0 * bounds / n0) - bounds
            approx[:, s : s + p.shape[0]] = ev._call(p, half)
        dist = (exact - level).abs()
        near = dist <= torch.quantile(dist.flatten()[: 2**24], 0.05)
        ev.margin = 4.0 * float((approx - exact).abs()[near].max()) + 1e-6 * float(dist.max())
        lv.vals[:, fl] = exact
        del exact, approx, dist, near
    else:
        lv.vals[:, fl] = ev(pts, n0, level, sign)
    lv.known[fl] = True
    dense = lv.vals[:, fl].view(num_fields, n0 + 1, n0 + 1, n0 + 1)
    ins = sign * (dense - level) > 0
    any_in = torch.zeros((n0,) * 3, dtype=torch.bool, device=dev)
    all_in = torch.ones((num_fields, n0, n0, n0), dtype=torch.bool, device=dev)
    anyf = torch.zeros_like(all_in)
    for a, b, c in _CORNERS.tolist():
        sub = ins[:, a : a + n0, b : b + n0, c : c + n0]
        anyf |= sub
        all_in &= sub
    any_in = (anyf & ~all_in).any(0)
    cells = torch.nonzero(any_in)
    del pts, fl, dense, ins, all_in, anyf, any_in

    # ---- narrow band, level by level: children of the (dilated) sign-change cells, then closure
    for depth in range(d0, d1):
        if depth < d1 - 1:  # the safety band; the finest level relies on the closure
            cells = _dilate(cells, dilation, 2**depth)
        fine = _Level(2 ** (depth + 1), num_fields, dev)
        marks = _Marks(2**depth, dev)
        steps = _FACE_STEP.to(dev)
        found = []
        new = marks.new(cells) if cells.numel() else cells
        while new.numel():
            pf = fine.fill(new, lv, ev, level, sign)
            child, sides = _block_analysis(fine.vals[:, pf], level, sign)
            pi, ci = torch.nonzero(child, as_tuple=True)
            found.append(2 * new[pi] + _CORNERS.to(dev)[ci])
            pi, si = torch.nonzero(sides, as_tuple=True)
            nb = new[pi] + steps[si]
            nb = nb[((nb >= 0) & (nb < 2**depth)).all(1)]
            new = marks.new(nb) if nb.numel() else nb
        lv = fine
        cells = torch.cat(found) if found else cells.new_zeros(0, 3)
        del marks, found, new

    # ---- marching cubes on the final band, one mesh per field
    h = 2.0 * float(bounds) / 2**d1
    meshes: list[trimesh.Trimesh] = []
    empty_fields = []
    for f in range(num_fields):
        own = cells
        if num_fields > 1 and cells.numel():
            ins = sign * (lv.corner_values(cells)[f] - level) > 0
            own = cells[ins.any(-1) & ~ins.all(-1)]
        if own.shape[0] == 0:
            empty_fields.append(f)
            meshes.append(trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False))
            progress.step()
            continue
        verts, faces = (_mc_warp if backend == "warp" else _mc_skimage)(lv, own, f, level, sign)
        meshes.append(trimesh.Trimesh(verts * h - float(bounds), faces, process=False))
        progress.step()
    if empty_fields and not allow_empty:
        raise ValueError(
            f"sdf_to_meshes: field(s) {empty_fields} have no surface at level {level} inside "
            f"[-{bounds}, {bounds}]^3 (all values on one side); check the latent, the level and the "
            "`inside` convention, or pass allow_empty=True"
        )
    dense = (2**d1 + 1) ** 3
    stats = {
        "points_evaluated": int(ev.count),
        "points_fp32": int(ev.count_fp32) if half is not None else int(ev.count),
        "dense_points": int(dense),
        "ratio": float(ev.count) / float(dense),
        "band_cells": int(cells.shape[0]),
        "octree_depth": d0,
        "refine_depth": d1,
        "dilation": int(dilation),
        "voxel_size": h,
        "bounds": float(bounds),
        "precision": "fp32" if half is None else str(half).replace("torch.", ""),
        "backend": backend,
    }
    for m in meshes:
        m.metadata["meshing"] = dict(stats)
    return meshes


def sdf_to_mesh(field_fn: FieldFn, **kwargs) -> trimesh.Trimesh:
    """One-field convenience wrapper of :func:`sdf_to_meshes`.

    ``field_fn(points (Q, 3)) -> (Q,)`` or ``(1, Q)``; all keyword options of
    :func:`sdf_to_meshes` apply (``num_fields`` is fixed to 1).

    Returns:
        One ``trimesh.Trimesh`` (see :func:`sdf_to_meshes`).

    Raises:
        The errors of :func:`sdf_to_meshes`.
    """
    if "num_fields" in kwargs and kwargs["num_fields"] != 1:
        raise ValueError("sdf_to_mesh meshes one field; use sdf_to_meshes for num_fields > 1")
    kwargs.pop("num_fields", None)
    return sdf_to_meshes(field_fn, 1, **kwargs)[0]
