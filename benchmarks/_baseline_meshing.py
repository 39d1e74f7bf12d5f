"""SDF / occupancy field -> triangle meshes (hierarchical grid + marching cubes).

Implements the anchor-mesh extraction of REFERENCE §4 ("Anchor mesh from a
latent"): the field is evaluated on a dense grid over ``[-bounds, bounds]^3``
(``2**octree_depth`` cells per axis), only the cells near the surface are
refined (one octree level at a time, up to ``2**refine_depth`` cells per axis),
and marching cubes runs at the iso ``level`` (scikit-image on CPU; ``diso`` on
CUDA when installed).  The field is batched over frames: one call returns the
values of all ``num_fields`` fields (frames / latents) at the same points.

Shape legend: Q query points, F fields (frames or latents), V vertices,
K faces, n grid points per axis (``2**depth + 1``).

Refinement, in words: at each level the cells whose corners do not all lie on
the same side of the level set (in any field) are dilated by ``dilation``
cells, split in 8 children, and the children's corners are evaluated (values
known from the coarser level are reused).  Points never evaluated at the final
level are filled by trilinear up-sampling of the coarser level; since a cell
that is not refined has all its corners on one side of the level set, the
filled values create no surface.  The final volume is therefore identical to
the dense volume wherever the surface lies (exactly so when the coarse level
sees every sign change), at a fraction of the field evaluations.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from actionmesh_core.geometry.meshing import _Progress, grid_points  # shared with the library's extractor

__all__ = ["sdf_to_meshes", "sdf_to_mesh", "grid_points", "available_backends"]

FieldFn = Callable[[torch.Tensor], torch.Tensor]
ProgressFn = Callable[[int, int], None]

# the 8 corner offsets of a cell and the 27 grid points of a cell's 2x2x2 children
_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.long)
_CHILD_POINTS = torch.tensor(
    [[i, j, k] for i in (0, 1, 2) for j in (0, 1, 2) for k in (0, 1, 2)], dtype=torch.long
)


def available_backends(device: Union[str, torch.device, None] = None) -> list[str]:
    """Marching-cubes backends usable for fields on ``device``.

    Returns:
        ``["skimage"]`` plus ``"diso"`` when the ``diso`` package imports and
        ``device`` is a CUDA device.

    Raises:
        RuntimeError/TypeError: only for an invalid ``device`` string (from torch).
    """
    names = ["skimage"]
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        try:
            import diso  # noqa: F401
        except Exception:  # pragma: no cover - depends on the host
            pass
        else:  # pragma: no cover - needs CUDA
            names.append("diso")
    return names


# --------------------------------------------------------------------------- helpers


class _Evaluator:
    """Chunked calls of the user field with shape/finite checks and counting."""

    def __init__(self, field_fn, num_fields, chunk_size, device, store_device, bounds, cells, progress):
        self.field_fn = field_fn
        self.num_fields = num_fields
        self.chunk_size = chunk_size
        self.device = device
        self.store_device = store_device
        self.bounds = bounds
        self.count = 0
        self.progress = progress
        self.cells = cells  # cells per axis of the level being evaluated (set by caller)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """Evaluate the field at integer grid coordinates ``idx`` (Q, 3) -> (F, Q)."""
        h = 2.0 * self.bounds / self.cells
        out = torch.empty(self.num_fields, idx.shape[0], dtype=torch.float32, device=self.store_device)
        for start in range(0, idx.shape[0], self.chunk_size):
            sub = idx[start : start + self.chunk_size]
            pts = (sub.to(self.device, torch.float32) * h - self.bounds).contiguous()
            out[:, start : start + sub.shape[0]] = self._call(pts)
            self.count += sub.shape[0]
            self.progress.step()
        return out

    def _call(self, pts: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
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
        vals = vals.detach().to(self.store_device, torch.float32)
        if not torch.isfinite(vals).all():
            raise ValueError(
                "sdf_to_meshes: field_fn returned NaN or infinite values; check the latents / decoder "
                "(e.g. run it in float32) before meshing"
            )
        return vals


def _keys(idx: torch.Tensor, n: int) -> torch.Tensor:
    """Linear C-order keys of integer grid points (Q, 3) on an n^3 grid."""
    return (idx[:, 0] * n + idx[:, 1]) * n + idx[:, 2]


def _unkey(keys: torch.Tensor, n: int) -> torch.Tensor:
    k = keys % n
    j = (keys // n) % n
    i = keys // (n * n)
    return torch.stack([i, j, k], dim=-1)


def _dense_sign_change_cells(inside: torch.Tensor) -> torch.Tensor:
    """(F, n, n, n) bool inside-flags -> (n-1,)^3 bool cells with a sign change in any field."""
    n = inside.shape[-1]
    any_in = torch.zeros((n - 1,) * 3, dtype=torch.bool, device=inside.device)
    for f in range(inside.shape[0]):
        a_in = torch.zeros_like(any_in)
        a_out = torch.zeros_like(any_in)
        for di, dj, dk in _CORNERS.tolist():
            c = inside[f, di : di + n - 1, dj : dj + n - 1, dk : dk + n - 1]
            a_in |= c
            a_out |= ~c
        any_in |= a_in & a_out
    return any_in


def _dilate_dense(cells: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return cells
    x = cells[None, None].to(torch.float32)
    x = F.max_pool3d(x, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return x[0, 0] > 0


def _dilate_sparse(cells: torch.Tensor, radius: int, ncells: int) -> torch.Tensor:
    if radius <= 0 or cells.numel() == 0:
        return cells
    r = torch.arange(-radius, radius + 1, device=cells.device)
    offs = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    nb = (cells[:, None, :] + offs[None]).reshape(-1, 3)
    ok = ((nb >= 0) & (nb < ncells)).all(-1)
    nb = nb[ok]
    return _unkey(torch.unique(_keys(nb, ncells)), ncells)


def _upsample2(vol: torch.Tensor) -> torch.Tensor:
    """(n, n, n) -> (2n-1,)^3 trilinear up-sampling; even points keep their values exactly."""
    n = vol.shape[-1]
    out = torch.empty((2 * n - 1,) * 3, dtype=vol.dtype, device=vol.device)
    out[::2, ::2, ::2] = vol
    out[1::2, ::2, ::2] = 0.5 * (vol[:-1] + vol[1:])
    out[:, 1::2, ::2] = 0.5 * (out[:, 0:-2:2, ::2] + out[:, 2::2, ::2])
    out[:, :, 1::2] = 0.5 * (out[:, :, 0:-2:2] + out[:, :, 2::2])
    return out


# --------------------------------------------------------------------------- marching cubes backends


def _mc_skimage(occ: np.ndarray):
    """Marching cubes on an occupancy-like volume (inside > 0) -> (V,3) index coords, (K,3) faces."""
    from skimage.measure import marching_cubes

    # with inside > 0, "ascent" gives counter-clockwise faces seen from outside (positive volume; tested)
    verts, faces, _normals, _values = marching_cubes(occ, level=0.0, gradient_direction="ascent")
    return verts.astype(np.float64), faces.astype(np.int64)


_DISO_CONVENTION: dict = {}


def _diso_call(extractor, grid: torch.Tensor):  # pragma: no cover - needs CUDA + diso
    import inspect

    params = inspect.signature(extractor.forward).parameters
    kwargs = {"isovalue": 0.0}
    if "normalize" in params:
        kwargs["normalize"] = False
    v, f = extractor(grid, None, **kwargs)
    return v.double().cpu().numpy(), f.long().cpu().numpy()


def _mc_diso(occ: torch.Tensor):  # pragma: no cover - needs CUDA + diso
    """GPU marching cubes with diso -> (V, 3) index coordinates, (K, 3) faces.

    diso versions differ in output units (grid index or [0, 1]) and the axis
    order / winding are not documented, so they are probed once per device on
    an ellipsoid of known size elongated along axis 0.
    """
    from diso import DiffMC

    key = str(occ.device)
    if key not in _DISO_CONVENTION:
        extractor = DiffMC(dtype=torch.float32).to(occ.device)
        n = 33
        ax = torch.linspace(-1, 1, n, device=occ.device)
        x, y, z = torch.meshgrid(ax, ax, ax, indexing="ij")
        probe = 1.0 - ((x / 0.9) ** 2 + (y / 0.6) ** 2 + (z / 0.3) ** 2)  # inside > 0
        v, f = _diso_call(extractor, -probe)  # diso expects an SDF (inside < 0)
        ext = v.max(0) - v.min(0)
        perm = [0, 1, 2] if ext[0] >= ext[2] else [2, 1, 0]
        v = v[:, perm]
        ratio = (v[:, 0].max() - v[:, 0].min()) / (0.9 * (n - 1))
        if abs(ratio - 1.0) < 0.1:
            unit = False
            offset = (v.max(0) + v.min(0)) / 2 - (n - 1) / 2  # e.g. a padding shift
        elif abs(ratio * (n - 1) - 1.0) < 0.1:
            unit, offset = True, np.zeros(3)
        else:
            raise RuntimeError("sdf_to_meshes: unrecognised diso output convention; use backend='skimage'")
        flip = trimesh.Trimesh(v, f, process=False).volume < 0
        _DISO_CONVENTION[key] = (extractor, perm, unit, np.round(offset), flip)
    extractor, perm, unit, offset, flip = _DISO_CONVENTION[key]
    v, faces = _diso_call(extractor, -occ.float().contiguous())
    verts = v[:, perm] * (occ.shape[0] - 1) if unit else v[:, perm] - offset
    if flip:
        faces = faces[:, ::-1].copy()
    return verts, faces


# --------------------------------------------------------------------------- public API


def sdf_to_meshes(
    field_fn: FieldFn,
    num_fields: int = 1,
    *,
    bounds: float = 1.005,
    octree_depth: int = 8,
    refine_depth: int = 9,
    level: float = 0.0,
    inside: str = "negative",
    chunk_size: int = 2**18,
    device: Union[str, torch.device, None] = None,
    callback: Optional[ProgressFn] = None,
    backend: str = "auto",
    dilation: int = 1,
    allow_empty: bool = False,
) -> list[trimesh.Trimesh]:
    """Extract the level set of ``num_fields`` scalar fields as triangle meshes.

    REFERENCE §4 (anchor mesh from a latent): dense grid of ``2**octree_depth``
    cells per axis over ``[-bounds, bounds]^3``, refined near the surface up to
    ``2**refine_depth`` cells, marching cubes at ``level``.  With
    ``refine_depth == octree_depth`` the dense grid is used as is.

    Args:
        field_fn: ``field_fn(points) -> values``; ``points`` is a (Q, 3) float32
            tensor on ``device`` (model units); ``values`` is (num_fields, Q)
            (``(Q,)`` accepted when ``num_fields == 1``), one row per field
            (frame / latent) -- all fields are evaluated at the same points.
            Called under ``torch.no_grad()`` with Q <= ``chunk_size``.
        num_fields: number of fields F returned per call (>= 1).
        bounds: half side of the sampled cube (default 1.005, REFERENCE §4).
        octree_depth: depth of the dense grid (``2**d`` cells per axis), 1..11.
        refine_depth: final depth (>= octree_depth, <= 11).
        level: iso value of the surface (0 for an SDF or logits).
        inside: ``"negative"`` when values below ``level`` are inside (true SDF,
            TripoSG decoder output after its negation) or ``"positive"`` when
            values above ``level`` are inside (occupancy / logits).  Decides the
            winding: faces always wind counter-clockwise seen from outside.
        chunk_size: max points per ``field_fn`` call.
        device: device on which the query points are created (default CPU).
        callback: optional ``callback(done, total)`` progress hook, called after
            each chunk of field evaluations and after each marching cubes; the
            unit is one chunk or one mesh; ``total`` is updated once the refined
            point count is known (``done`` never decreases and ends at ``total``).
        backend: ``"auto"`` (``diso`` on a CUDA device when installed, else
            scikit-image), ``"skimage"`` or ``"diso"``.
        dilation: cells of dilation around sign-change cells before refining
            (>= 0; 1 guards thin parts between coarse samples).
        allow_empty: return an empty ``Trimesh`` for a field without surface
            instead of raising.

    Returns:
        List of F ``trimesh.Trimesh`` (vertices (V, 3) float64 in model units,
        faces (K, 3) int64, outward winding, not processed/merged; apply
        :func:`actionmesh_core.geometry.cleanup.clean_mesh` next).  Each mesh's
        ``metadata["meshing"]`` holds ``points_evaluated`` (field evaluations
        per field), ``dense_points`` (``(2**refine_depth + 1)**3``), their
        ``ratio``, the depths, ``voxel_size`` and the backend used.

    Raises:
        TypeError: ``field_fn`` not callable or returns a non-tensor.
        ValueError: bad depths / ``inside`` / ``backend`` / ``num_fields`` /
            ``chunk_size``; ``field_fn`` returns the wrong shape or NaN/inf;
            a field has no surface at ``level`` (unless ``allow_empty``).
        RuntimeError: ``backend="diso"`` requested but unavailable.
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
    if backend not in ("auto", "skimage", "diso"):
        raise ValueError(f"sdf_to_meshes: backend must be 'auto', 'skimage' or 'diso', got {backend!r}")
    usable = available_backends(dev)
    if backend == "auto":
        backend = "diso" if "diso" in usable else "skimage"
    elif backend == "diso" and "diso" not in usable:
        raise RuntimeError(
            "sdf_to_meshes: backend='diso' needs the `diso` package and a CUDA device "
            f"(device={dev}); install diso or use backend='skimage'"
        )
    store = dev if backend == "diso" else torch.device("cpu")
    sign = 1.0 if inside == "positive" else -1.0
    level = float(level)
    d0, d1 = int(octree_depth), int(refine_depth)

    progress = _Progress(callback)
    n0 = 2**d0 + 1
    progress.add(math.ceil(n0**3 / chunk_size) + num_fields)
    ev = _Evaluator(field_fn, num_fields, int(chunk_size), dev, store, float(bounds), 2**d0, progress)

    # ---- dense coarse level: evaluate point rows in chunks without materialising all coordinates
    coarse = torch.empty(num_fields, n0**3, dtype=torch.float32, device=store)
    rows = max(1, int(chunk_size))
    for start in range(0, n0**3, rows):
        keys = torch.arange(start, min(start + rows, n0**3), device=store)
        coarse[:, start : start + keys.numel()] = ev(_unkey(keys, n0))
    coarse = coarse.view(num_fields, n0, n0, n0)

    # ---- refinement levels, kept sparse: (keys at level, values (F, Q))
    level_points: list[tuple[torch.Tensor, torch.Tensor]] = []
    prev_sparse: Optional[tuple[torch.Tensor, torch.Tensor]] = None
    active = None
    for depth in range(d0, d1):
        ncells = 2**depth
        if depth == d0:
            cells = _dense_sign_change_cells(sign * (coarse - level) > 0)
            cells = _dilate_dense(cells, dilation)
            active = torch.nonzero(cells)
        else:
            keys_prev, vals_prev = prev_sparse
            n_prev = ncells + 1
            # candidate cells: those whose 8 corners are all known at this level
            cand = active  # children of the previous active set, computed below
            corner_keys = _keys((cand[:, None, :] + _CORNERS.to(cand.device)[None]).reshape(-1, 3), n_prev)
            pos = torch.searchsorted(keys_prev, corner_keys).clamp_max(keys_prev.numel() - 1)
            known = keys_prev[pos] == corner_keys
            cv = vals_prev[:, pos].view(num_fields, -1, 8)
            ins = sign * (cv - level) > 0
            # unknown corners cannot occur for children of refined cells; guard anyway
            ins = ins & known.view(1, -1, 8)
            change = (ins.any(-1) & ~ins.all(-1)).any(0)
            active = _dilate_sparse(cand[change], dilation, ncells)
        # children of the active cells at depth+1, and all grid points they touch
        nf = 2 ** (depth + 1) + 1
        pts = (2 * active[:, None, :] + _CHILD_POINTS.to(active.device)[None]).reshape(-1, 3)
        fkeys = torch.unique(_keys(pts, nf))
        fidx = _unkey(fkeys, nf)
        vals = torch.empty(num_fields, fkeys.numel(), dtype=torch.float32, device=store)
        even = (fidx % 2 == 0).all(-1)
        known = torch.zeros_like(even)
        if depth == d0:
            cidx = fidx[even] // 2
            vals[:, even] = coarse[:, cidx[:, 0], cidx[:, 1], cidx[:, 2]]
            known = even
        else:
            keys_prev, vals_prev = prev_sparse
            ck = _keys(fidx[even] // 2, 2**depth + 1)
            pos = torch.searchsorted(keys_prev, ck).clamp_max(keys_prev.numel() - 1)
            hit = keys_prev[pos] == ck
            sub = torch.zeros(num_fields, ck.numel(), dtype=torch.float32, device=store)
            sub[:, hit] = vals_prev[:, pos[hit]]
            vals[:, even] = sub
            known = even.clone()
            known[even] = hit
        miss = ~known
        progress.add(math.ceil(int(miss.sum()) / chunk_size))
        ev.cells = 2 ** (depth + 1)
        if miss.any():
            vals[:, miss] = ev(fidx[miss])
        prev_sparse = (fkeys, vals)
        level_points.append(prev_sparse)
        # next level's candidate cells are the children of this level's active cells
        active = (2 * active[:, None, :] + _CORNERS.to(active.device)[None]).reshape(-1, 3)

    # ---- marching cubes per field on the final (filled) dense volume
    nfinal = 2**d1 + 1
    h = 2.0 * float(bounds) / 2**d1
    meshes: list[trimesh.Trimesh] = []
    empty_fields = []
    for f in range(num_fields):
        vol = coarse[f]
        for depth_i, (keys, vals) in enumerate(level_points):
            vol = _upsample2(vol)
            flat = vol.view(-1)
            flat[keys] = vals[f]
        occ = vol if level_points else vol.clone()
        occ.sub_(level).mul_(sign)  # in place: inside > 0
        del vol
        has_in = bool((occ > 0).any())
        has_out = bool((occ <= 0).any())
        if not (has_in and has_out):
            empty_fields.append(f)
            progress.step()
            meshes.append(trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False))
            continue
        if backend == "diso":  # pragma: no cover - needs CUDA
            verts, faces = _mc_diso(occ)
        else:
            verts, faces = _mc_skimage(occ.cpu().numpy())
        del occ
        mesh = trimesh.Trimesh(verts * h - float(bounds), faces, process=False)
        meshes.append(mesh)
        progress.step()
    if empty_fields and not allow_empty:
        raise ValueError(
            f"sdf_to_meshes: field(s) {empty_fields} have no surface at level {level} inside "
            f"[-{bounds}, {bounds}]^3 (all values on one side); check the latent, the level and the "
            "`inside` convention, or pass allow_empty=True"
        )
    stats = {
        "points_evaluated": int(ev.count),
        "dense_points": int(nfinal**3),
        "ratio": float(ev.count) / float(nfinal**3),
        "octree_depth": d0,
        "refine_depth": d1,
        "voxel_size": h,
        "bounds": float(bounds),
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
