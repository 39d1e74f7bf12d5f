"""SDF meshing (narrow band): analytic sphere/torus/thin plate, band vs dense grid, backends, half precision, errors."""
import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from actionmesh_core.geometry.meshing import available_backends, sdf_to_mesh, sdf_to_meshes

BOUNDS = 1.005


def voxel(depth):
    return 2 * BOUNDS / 2**depth


def sphere_sdf(radius, center=(0.0, 0.0, 0.0)):
    c = torch.tensor(center)
    return lambda p: (p - c.to(p)).norm(dim=-1) - radius


def torus_sdf(big=0.6, small=0.25):
    def f(p):
        q = torch.stack([p[:, :2].norm(dim=-1) - big, p[:, 2]], dim=-1)
        return q.norm(dim=-1) - small

    return f


def box_sdf(p, center, half):
    q = (p - torch.tensor(center).to(p)).abs() - torch.tensor(half).to(p)
    return q.clamp_min(0).norm(dim=-1) + q.max(-1).values.clamp_max(0)


def sphere_with_plate(half_thickness, z=0.013):
    """Sphere r=0.5 plus a plate |z - z0| < t, x in [0.4, 0.95], |y| < 0.2 touching it."""
    def f(p):
        return torch.minimum(p.norm(dim=-1) - 0.5, box_sdf(p, (0.675, 0.0, z), (0.275, 0.2, half_thickness)))

    return f


def mesh_key(m):
    """Order-free key of a triangle soup (faces as sorted vertex triples)."""
    return np.sort(np.sort(m.vertices[m.faces].reshape(-1, 9), axis=1), axis=0)


def surface_to_mesh_distance(mesh, true_points, samples=200_000):
    """Upper bound of the distance from points to the mesh (dense surface samples + vertices)."""
    pts, _ = trimesh.sample.sample_surface(mesh, samples, seed=0)
    tree = cKDTree(np.concatenate([pts, mesh.vertices]))
    return tree.query(true_points)[0]


def fibonacci_sphere(n, radius):
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return radius * np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)


def test_sphere_hausdorff_below_one_voxel():
    r = 0.63
    mesh = sdf_to_mesh(sphere_sdf(r, (0.05, -0.02, 0.01)), octree_depth=3, refine_depth=6)
    h = voxel(6)
    v = mesh.vertices - np.array([0.05, -0.02, 0.01])
    mesh_to_surface = np.abs(np.linalg.norm(v, axis=1) - r).max()
    surface_to_mesh = surface_to_mesh_distance(mesh, fibonacci_sphere(3000, r) + [0.05, -0.02, 0.01]).max()
    assert mesh_to_surface < h and surface_to_mesh < h, (mesh_to_surface, surface_to_mesh, h)
    assert mesh.is_watertight  # brick seams are welded
    assert mesh.volume > 0  # faces wind outward
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.02)


def test_torus_hausdorff_below_one_voxel_and_genus_one():
    big, small = 0.6, 0.25
    f = torus_sdf(big, small)
    mesh = sdf_to_mesh(f, octree_depth=3, refine_depth=6)
    h = voxel(6)
    mesh_to_surface = np.abs(f(torch.from_numpy(mesh.vertices).float()).numpy()).max()
    u, w = np.meshgrid(np.linspace(0, 2 * np.pi, 80), np.linspace(0, 2 * np.pi, 40))
    true = np.stack(
        [(big + small * np.cos(w)) * np.cos(u), (big + small * np.cos(w)) * np.sin(u), small * np.sin(w)], -1
    ).reshape(-1, 3)
    surface_to_mesh = surface_to_mesh_distance(mesh, true).max()
    assert mesh_to_surface < h and surface_to_mesh < h, (mesh_to_surface, surface_to_mesh, h)
    assert mesh.is_watertight
    assert mesh.euler_number == 0  # genus 1
    assert mesh.volume == pytest.approx(2 * math.pi**2 * big * small**2, rel=0.03)


@pytest.mark.parametrize("coarse,dilation", [(3, 0), (2, 0), (3, 1), (4, 2)])
def test_band_matches_dense_grid_with_far_fewer_evaluations(coarse, dilation):
    """The band meshes exactly the dense grid's triangles (octree_depth == refine_depth is the dense path)."""
    f = torus_sdf(0.55, 0.2)
    dense = sdf_to_mesh(f, octree_depth=6, refine_depth=6)
    band = sdf_to_mesh(f, octree_depth=coarse, refine_depth=6, dilation=dilation)
    assert len(band.faces) == len(dense.faces)
    np.testing.assert_allclose(mesh_key(band), mesh_key(dense), atol=1e-6)
    assert len(band.vertices) == len(dense.vertices)  # seams welded: no duplicated vertex
    stats_d, stats_b = dense.metadata["meshing"], band.metadata["meshing"]
    assert stats_d["points_evaluated"] == 65**3
    ratio = stats_b["points_evaluated"] / stats_d["points_evaluated"]
    assert ratio < 0.5, ratio
    assert stats_b["ratio"] == pytest.approx(ratio)


def test_closure_follows_a_plate_the_coarse_grid_cannot_see():
    """A plate thinner than a coarse cell, between coarse grid planes, touching a sphere: meshed whole."""
    # the plate holds only the grid plane z = 1 voxel of depth 6 (z = 0, a plane of every depth, and z = 2 voxels
    # lie outside it): invisible at depths 3..5 away from the sphere, so only the closure finds it at depth 6
    t = 0.3 * voxel(6)
    f = sphere_with_plate(t, z=voxel(6))
    mesh = sdf_to_mesh(f, octree_depth=3, refine_depth=6, dilation=0, sdf_bound=False)  # the closure alone
    dense = sdf_to_mesh(f, octree_depth=6, refine_depth=6)
    np.testing.assert_allclose(mesh_key(mesh), mesh_key(dense), atol=1e-6)
    assert mesh.metadata["meshing"]["closure_cells"] > 0
    v = mesh.vertices
    tip = v[v[:, 0] > 0.9]
    assert len(tip) and (tip[:, 2] > voxel(6)).any() and (tip[:, 2] < voxel(6)).any()  # both faces up to its end
    assert mesh.is_watertight


def test_default_depths_evaluate_under_4m_points_on_a_sphere():
    mesh = sdf_to_mesh(sphere_sdf(0.8))  # defaults: 2^6 coarse, band up to 2^9 (the release's resolution)
    st = mesh.metadata["meshing"]
    assert (st["octree_depth"], st["refine_depth"]) == (6, 9)
    assert st["points_evaluated"] < 4_000_000, st  # the release's GPU path: ~4.15 M; dense 513^3: 135 M
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.8).max() < 0.05 * st["voxel_size"]
    assert mesh.is_watertight


def test_occupancy_convention_gives_same_outward_mesh():
    f = sphere_sdf(0.5)
    sdf_mesh = sdf_to_mesh(f, octree_depth=3, refine_depth=5, inside="negative")
    occ_mesh = sdf_to_mesh(lambda p: -3.0 * f(p), octree_depth=3, refine_depth=5, inside="positive")
    assert occ_mesh.volume > 0 and sdf_mesh.volume > 0
    np.testing.assert_allclose(np.sort(occ_mesh.vertices, 0), np.sort(sdf_mesh.vertices, 0), atol=1e-6)
    # the wrong convention flips the winding: a clear sign the caller must set `inside`
    flipped = sdf_to_mesh(f, octree_depth=3, refine_depth=5, inside="positive")
    assert flipped.volume < 0


def test_batched_fields_one_mesh_per_frame_and_level():
    radii = torch.tensor([0.3, 0.5, 0.7])
    calls = []

    def field(p):
        calls.append(tuple(p.shape))
        assert p.dtype == torch.float32
        return p.norm(dim=-1)[None, :] - radii[:, None]

    meshes = sdf_to_meshes(field, 3, octree_depth=3, refine_depth=5, chunk_size=5000)
    assert len(meshes) == 3
    assert all(shape[1] == 3 and shape[0] <= 5000 for shape in calls)
    for m, r in zip(meshes, radii.tolist()):
        assert np.abs(np.linalg.norm(m.vertices, axis=1) - r).max() < voxel(5)
        assert m.is_watertight  # each field meshes its own cells of the union band
    shifted = sdf_to_mesh(sphere_sdf(0.4), octree_depth=3, refine_depth=5, level=0.1)
    assert np.linalg.norm(shifted.vertices, axis=1).mean() == pytest.approx(0.5, abs=voxel(5))


def test_progress_callback_is_monotone_and_complete():
    seen = []
    sdf_to_meshes(lambda p: p.norm(dim=-1)[None] - 0.5, 1, octree_depth=4, refine_depth=6, chunk_size=4096,
                  callback=lambda done, total: seen.append((done, total)))
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and len(dones) > 3
    assert seen[-1][0] == seen[-1][1]
    assert all(d <= t for d, t in seen)


def test_bad_inputs_raise_clear_errors():
    f = sphere_sdf(0.5)
    with pytest.raises(ValueError, match="num_fields"):
        sdf_to_meshes(lambda p: torch.zeros(2, p.shape[0]), 3, octree_depth=3, refine_depth=3)
    with pytest.raises(ValueError, match="NaN"):
        sdf_to_mesh(lambda p: f(p) * float("nan"), octree_depth=3, refine_depth=3)
    with pytest.raises(ValueError, match="no surface"):
        sdf_to_mesh(lambda p: f(p) + 10.0, octree_depth=3, refine_depth=4)
    with pytest.raises(ValueError, match="inside"):
        sdf_to_mesh(f, octree_depth=3, refine_depth=3, inside="outside")
    with pytest.raises(ValueError, match="refine_depth"):
        sdf_to_mesh(f, octree_depth=5, refine_depth=4)
    with pytest.raises(ValueError, match="precision"):
        sdf_to_mesh(f, octree_depth=3, refine_depth=3, precision="int8")
    with pytest.raises(ValueError, match="backend"):
        sdf_to_mesh(f, octree_depth=3, refine_depth=3, backend="diso")
    with pytest.raises(TypeError, match="callable"):
        sdf_to_meshes("not a function")
    with pytest.raises(TypeError, match="torch.Tensor"):
        sdf_to_mesh(lambda p: [0.0] * p.shape[0], octree_depth=3, refine_depth=3)
    empty = sdf_to_mesh(lambda p: f(p) + 10.0, octree_depth=3, refine_depth=4, allow_empty=True)
    assert len(empty.faces) == 0


def test_auto_backend_is_scikit_image_on_cpu():
    mesh = sdf_to_mesh(sphere_sdf(0.5), octree_depth=3, refine_depth=4, backend="auto")
    assert mesh.metadata["meshing"]["backend"] == "skimage"
    assert mesh.metadata["meshing"]["precision"] == "fp32"


def test_warp_backend_matches_scikit_image():
    """warp-lang's sparse marching cubes (the CUDA backend) runs the same kernels on the CPU: same surface."""
    if "warp" not in available_backends("cpu"):
        pytest.skip("warp-lang >= 1.19 is not installed (pip install warp-lang)")
    f = torus_sdf()
    cpu = sdf_to_mesh(f, octree_depth=4, refine_depth=6, backend="skimage")
    wp_mesh = sdf_to_mesh(f, octree_depth=4, refine_depth=6, backend="warp")
    assert wp_mesh.metadata["meshing"]["backend"] == "warp"
    assert wp_mesh.is_watertight and wp_mesh.volume > 0  # outward winding
    assert len(wp_mesh.faces) == len(cpu.faces)
    assert wp_mesh.volume == pytest.approx(cpu.volume, rel=1e-4)
    assert cKDTree(cpu.vertices).query(wp_mesh.vertices)[0].max() < 1e-5


def _tiny_vae_field():
    from actionmesh_core.models import TripoSGVAE
    from actionmesh_core.weights import _calibrate_vae

    torch.manual_seed(0)
    vae = TripoSGVAE(latent_channels=8, num_attention_heads=2, width_encoder=32, width_decoder=32,
                     num_layers_encoder=1, num_layers_decoder=1, embed_frequency=4).eval()
    _calibrate_vae(vae, 64, 8)
    latent = torch.randn(1, 64, 8, generator=torch.Generator().manual_seed(1))
    return vae.field_fn(latent), vae.inside_sign


def test_half_precision_keeps_every_sign_that_decides_the_surface():
    """bf16 field evaluation (as on CUDA) with fp32 re-evaluation near the level: the same signs as fp32."""
    field, inside = _tiny_vae_field()
    # bf16 alone flips signs near the surface (otherwise this test would prove nothing)
    ax = torch.linspace(-BOUNDS, BOUNDS, 65)
    pts = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    exact = field(pts)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        approx = field(pts).float()
    assert ((exact > 0) != (approx > 0)).any(), "bf16 never flips a sign here: pick a harder field"
    fp32 = sdf_to_mesh(field, inside=inside, octree_depth=4, refine_depth=6, precision="fp32")
    half = sdf_to_mesh(field, inside=inside, octree_depth=4, refine_depth=6, precision="bf16")
    st = half.metadata["meshing"]
    assert st["precision"] == "bfloat16"
    assert 0 < st["points_fp32"] < st["points_evaluated"]  # only the points near the level in fp32
    # same sign-change cells, hence the same faces; vertices move by less than a voxel
    assert len(half.faces) == len(fp32.faces)
    assert st["band_cells"] == fp32.metadata["meshing"]["band_cells"]
    assert cKDTree(fp32.vertices).query(half.vertices)[0].max() < voxel(6)


def test_the_field_runs_in_fp32_by_default_on_every_device():
    """precision="auto" is fp32 on CUDA too: half precision widens the band by its error margin (on an H200 the
    released-size anchor took 5.3x the points and 3.8x the time in bf16, same faces); bf16 is an opt-in."""
    from actionmesh_core.geometry.meshing import _resolve_precision

    for device in ("cpu", "cuda", "mps"):
        assert _resolve_precision("auto", torch.device(device)) is None  # None = fp32
    assert _resolve_precision("bf16", torch.device("cuda")) is torch.bfloat16
    mesh = sdf_to_mesh(sphere_sdf(0.5), octree_depth=3, refine_depth=5)
    assert mesh.metadata["meshing"]["precision"] == "fp32"


_NOISE_WAVES = torch.tensor([[37.1, -53.3, 71.7], [-61.9, 29.3, 43.7]]).T


def bf16_noisy_sphere(c):
    """Sphere r = 0.5 computed as one linear layer over features that cancel: ``(sdf + c s1 - c s2) - c s1 + c s2``
    with ``s1, s2`` fast sines of the point.  Exact in fp32; under bf16 autocast the layer's inputs are rounded
    (as a network's are), an error of about ``c * 2**-8`` that looks like noise from one grid point to the next
    (c = 8: a margin of ~8 voxels of a 2^7 grid, the order of the released-size TripoSG VAE's bf16 margin on a
    2^9 grid, ~12 voxels)."""
    w = torch.tensor([[1.0, -c, c]])

    def f(p):
        s = torch.sin(p @ _NOISE_WAVES.to(p))
        feats = torch.stack([p.norm(dim=-1) - 0.5 + c * s[:, 0] - c * s[:, 1], s[:, 0], s[:, 1]], -1)
        return torch.nn.functional.linear(feats, w.to(p))[:, 0].float()

    return f


def test_bf16_band_evaluates_the_fp32_points_when_its_error_spans_several_voxels():
    """The 2026-12-04 H200 run: the released-size anchor in bf16 took 28.4 M points (21.1 M again in fp32) against
    5.4 M in fp32 for the same mesh: the half-precision margin (~12 final voxels there) widened the SDF bound at
    every level and made most of the band evaluated twice.  With a margin of the same order (4 -> 7, c = 8) the
    bf16 field now evaluates the fp32 band (refined levels in fp32: the margin is far larger than their cells),
    plus one half-precision pass over the coarse grid, and gives the fp32 mesh (before: 3.2x the points)."""
    f = bf16_noisy_sphere(8.0)
    ax = torch.linspace(-BOUNDS, BOUNDS, 33)
    pts = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        approx = f(pts)
    assert (approx - f(pts)).abs().max() > 2 * voxel(7), "bf16 must be several voxels off here"
    fp32 = sdf_to_mesh(f, octree_depth=4, refine_depth=7, precision="fp32")
    half = sdf_to_mesh(f, octree_depth=4, refine_depth=7, precision="bf16")
    ref, st = fp32.metadata["meshing"], half.metadata["meshing"]
    assert st["precision"] == "bfloat16"
    assert st["points_evaluated"] <= 1.05 * ref["points_evaluated"]
    assert st["points_fp32"] <= ref["points_fp32"]
    assert 5 < st["half_margin"] / (st["slope"][0] / 1.25) / voxel(7) < 20  # the margin, in final voxels
    assert st["points_half"] == 17**3 and st["half_levels"] == []  # the calibration pass only
    assert not st["slope_exceeded"]
    np.testing.assert_array_equal(mesh_key(half), mesh_key(fp32))


def test_bf16_band_runs_the_coarse_levels_in_half_precision_when_its_error_is_small():
    """A small bf16 error (c = 0.25: margin ~0.4 voxel of the 2^7 grid): every level runs in bf16 with few fp32
    re-evaluations, the band stays the fp32 band's size, the faces are the same, and the bf16 noise is not taken
    for a steep field (no slope warning); with c = 2 (margin ~2 voxels) the band grows a little and still evaluates
    less in fp32 than the fp32 run."""
    f = bf16_noisy_sphere(0.25)
    fp32 = sdf_to_mesh(f, octree_depth=4, refine_depth=7, precision="fp32")
    half = sdf_to_mesh(f, octree_depth=4, refine_depth=7, precision="bf16")
    ref, st = fp32.metadata["meshing"], half.metadata["meshing"]
    assert st["points_evaluated"] <= 1.05 * ref["points_evaluated"]
    assert st["points_fp32"] <= 0.3 * ref["points_evaluated"]  # the points near the level only
    assert st["half_levels"] == [5, 6, 7]
    assert not st["slope_exceeded"]
    wider = sdf_to_mesh(bf16_noisy_sphere(2.0), octree_depth=4, refine_depth=7, precision="bf16").metadata["meshing"]
    assert wider["half_levels"] and wider["points_evaluated"] <= 1.15 * ref["points_evaluated"]
    assert wider["points_fp32"] <= 0.6 * ref["points_evaluated"]
    assert len(half.faces) == len(fp32.faces)
    assert cKDTree(fp32.vertices).query(half.vertices)[0].max() < 0.1 * voxel(7)


@pytest.mark.cuda
def test_fp32_field_on_cuda_by_default():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    mesh = sdf_to_mesh(sphere_sdf(0.5), octree_depth=4, refine_depth=6, device="cuda")
    st = mesh.metadata["meshing"]
    assert st["precision"] == "fp32" and st["points_fp32"] == st["points_evaluated"]
    assert st["backend"] == ("warp" if "warp" in available_backends("cuda") else "skimage")
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.5).max() < voxel(6)


@pytest.mark.parametrize("dilation", [0, 1])
def test_surface_leaving_the_box_matches_dense_grid(dilation):
    """A surface cut by the box (open at its faces): the band stops at the box and equals the dense grid.

    (A closure that keeps proposing the cells across the box's faces never ends; one that drops the band's own
    border cells there loses the triangles next to the faces.)"""
    f = sphere_sdf(1.1, (0.2, -0.1, 0.05))
    dense = sdf_to_mesh(f, octree_depth=6, refine_depth=6)
    band = sdf_to_mesh(f, octree_depth=3, refine_depth=6, dilation=dilation)
    assert len(band.faces) == len(dense.faces) > 1000
    np.testing.assert_allclose(mesh_key(band), mesh_key(dense), atol=1e-6)
    assert np.abs(band.vertices).max() <= BOUNDS + 1e-9


def test_no_grid_point_is_evaluated_twice():
    """Points shared by bricks, levels (even points) and closure passes are evaluated once, and counted."""
    seen = []

    def field(p):
        seen.append(p.clone())
        return sphere_with_plate(0.3 * voxel(6), z=voxel(6))(p)[None]  # the plate needs closure passes

    mesh = sdf_to_meshes(field, 1, octree_depth=3, refine_depth=6, dilation=0, chunk_size=3000)[0]
    pts = torch.cat(seen)
    assert pts.shape[0] == mesh.metadata["meshing"]["points_evaluated"]
    grid = torch.round((pts.double() + BOUNDS) / voxel(6)).long()  # every level's points lie on the final grid
    key = (grid[:, 0] * 65 + grid[:, 1]) * 65 + grid[:, 2]
    assert torch.unique(key).numel() == key.numel()


# --------------------------------------------------------------------------- thin and free-standing parts
# Three mechanisms put cells in the band besides the sign changes; each has a case here that only it finds:
# the SDF bound (a free-standing part the coarser levels straddle), the dilation (a part next to the found
# surface that only a finer level sees, bound off) and the closure (a part attached to the found surface that
# only the finest level sees, bound off, no dilation).


def plane_index_only(depth):
    """A z plane of the depth-``depth`` grid that no coarser grid has (odd index)."""
    return -BOUNDS + 33 * voxel(depth) * 2 ** (depth - 6) if depth >= 6 else -BOUNDS + voxel(depth)


def free_plate(half_thickness, z, x=(-0.8, -0.55), radius=0.35):
    """Sphere of ``radius`` plus a separate plate at ``z`` (|y| < 0.15), x in ``x``, not touching it."""
    cx, hx = (x[0] + x[1]) / 2, (x[1] - x[0]) / 2

    def f(p):
        return torch.minimum(p.norm(dim=-1) - radius, box_sdf(p, (cx, 0.0, z), (hx, 0.15, half_thickness)))

    return f


def segment_sdf(p, a, b, r):
    a, b = torch.tensor(a).to(p), torch.tensor(b).to(p)
    t = ((p - a) @ (b - a) / ((b - a) @ (b - a))).clamp(0, 1)
    return (p - a - t[:, None] * (b - a)).norm(dim=-1) - r


def thin_parts(depth):
    """The benchmark's thin-part field at a small depth: a sphere, a free plate 2 voxels thick and free rods
    1.5 voxels across (one along y, two oblique), none touching another."""
    h = voxel(depth)

    def f(p):
        d = torch.minimum(p.norm(dim=-1) - 0.4, box_sdf(p, (0.0, 0.75, 0.0), (0.3, h, 0.3)))
        for a, b in (((0.6, -0.3, 0.1), (0.6, 0.4, 0.1)), ((-0.7, -0.5, -0.6), (-0.2, 0.3, -0.7)),
                     ((0.1, 0.5, -0.6), (0.5, 0.55, 0.3))):
            d = torch.minimum(d, segment_sdf(p, a, b, 0.75 * h))
        return d

    return f


def components(mesh):
    return len(mesh.split(only_watertight=False))


def test_free_standing_plate_and_rods_are_found_as_by_the_dense_grid():
    f = thin_parts(6)
    dense = sdf_to_mesh(f, octree_depth=6, refine_depth=6)
    band = sdf_to_mesh(f, octree_depth=3, refine_depth=6)
    np.testing.assert_allclose(mesh_key(band), mesh_key(dense), atol=1e-6)
    assert components(dense) >= 5  # sphere, plate, 3 rods
    signs_only = sdf_to_mesh(f, octree_depth=3, refine_depth=6, sdf_bound=False)
    assert len(signs_only.faces) < len(dense.faces)  # sign changes + dilation + closure alone lose parts


def test_sdf_bound_alone_finds_a_free_plate_the_coarse_levels_straddle():
    """A plate thinner than a finest voxel, on a plane only the finest grid has, far from the sphere."""
    f = free_plate(0.3 * voxel(6), plane_index_only(6))
    dense = sdf_to_mesh(f, octree_depth=6, refine_depth=6)
    band = sdf_to_mesh(f, octree_depth=3, refine_depth=6, dilation=0)
    np.testing.assert_allclose(mesh_key(band), mesh_key(dense), atol=1e-6)
    assert components(band) == 2
    for dilation in (0, 1, 2):
        assert components(sdf_to_mesh(f, octree_depth=3, refine_depth=6, dilation=dilation, sdf_bound=False)) == 1


def test_dilation_alone_finds_a_plate_next_to_the_surface_that_a_finer_level_sees():
    """Bound off (a field that is not a distance field): a plate in the coarse cell next to the sphere's
    sign-change cells, first seen by the depth-4 grid: only the dilated coarse band reaches it."""
    z4 = -BOUNDS + 9 * voxel(4)  # a depth-4 plane (between depth-3 planes)
    f = free_plate(0.3 * voxel(6), z4, x=(0.54, 0.7), radius=0.35)
    dense = sdf_to_mesh(f, octree_depth=6, refine_depth=6)
    found = sdf_to_mesh(f, octree_depth=3, refine_depth=6, dilation=1, sdf_bound=False)
    lost = sdf_to_mesh(f, octree_depth=3, refine_depth=6, dilation=0, sdf_bound=False)
    np.testing.assert_allclose(mesh_key(found), mesh_key(dense), atol=1e-6)
    assert components(found) == 2 and components(lost) == 1


def test_scaled_distance_fields_give_the_same_band_and_mesh():
    """The bound reads values in units of the field's own slope (measured on the coarse grid): any constant
    scale of a distance field (occupancy-like or flattened) finds the same parts with the same evaluations."""
    f = free_plate(0.3 * voxel(6), plane_index_only(6))
    ref = sdf_to_mesh(f, octree_depth=3, refine_depth=6)
    for scale in (20.0, 0.05):
        m = sdf_to_mesh(lambda p, s=scale: s * f(p), octree_depth=3, refine_depth=6)
        assert m.metadata["meshing"]["points_evaluated"] == ref.metadata["meshing"]["points_evaluated"]
        np.testing.assert_allclose(mesh_key(m), mesh_key(ref), atol=1e-6)
        assert m.metadata["meshing"]["slope"][0] == pytest.approx(scale * ref.metadata["meshing"]["slope"][0])
        assert components(m) == 2 and not m.metadata["meshing"]["slope_exceeded"]


def steep_well(d, factor, width):
    """A field ``factor`` times steeper than the distance ``d`` within ``width`` of its zero set, slope 1 beyond."""
    return torch.where(d < width, factor * d, factor * width + (d - width))


def test_a_field_steeper_than_its_coarse_grid_is_reported_not_silently_trusted(caplog):
    """Not a distance field: the plate sits in a well 8x steeper than the rest, narrower than the distance to
    any coarse grid point, so the coarse grid's slope understates it.  The extractor finds the attached plate
    through the closure, measures the steeper crossings there, logs a warning and flags the result."""
    import logging

    z = plane_index_only(6)
    t = 0.3 * voxel(6)

    def f(p):
        plate = box_sdf(p, (0.675, 0.0, z), (0.275, 0.2, t))
        return torch.minimum(p.norm(dim=-1) - 0.5, steep_well(plate, 8.0, 0.5 * voxel(6)))

    import actionmesh_core.geometry.meshing as meshing

    dense = sdf_to_mesh(f, octree_depth=6, refine_depth=6)
    meshing._LOGGED.discard("slope")  # logged once per process
    with caplog.at_level(logging.WARNING, logger="actionmesh_core.geometry.meshing"):
        band = sdf_to_mesh(f, octree_depth=3, refine_depth=6)
    np.testing.assert_allclose(mesh_key(band), mesh_key(dense), atol=1e-6)
    st = band.metadata["meshing"]
    assert st["slope_exceeded"] and st["closure_cells"] > 0
    assert "steeper" in caplog.text
    smooth = sdf_to_mesh(sphere_with_plate(t, z=z), octree_depth=3, refine_depth=6)
    assert not smooth.metadata["meshing"]["slope_exceeded"]  # the same shape as a distance field: no warning


def test_default_sphere_evaluates_under_2m_points_with_the_sdf_bound():
    """The issue's budget: the bound adds cells only where parts may hide (sphere r = 0.5 at the defaults)."""
    mesh = sdf_to_mesh(sphere_sdf(0.5))
    st = mesh.metadata["meshing"]
    assert st["sdf_bound"] and st["points_evaluated"] <= 2_000_000, st
    assert st["slope"][0] == pytest.approx(1.25, rel=0.01)  # unit slope x the safety factor


# --------------------------------------------------------------------------- surface points (no mesh)


def test_surface_points_are_the_marching_cubes_vertices_of_each_field():
    """Grid-edge crossings of the band, batched over fields: exactly the vertices marching cubes places."""
    from actionmesh_core.geometry.meshing import sdf_surface_points

    def two(p):
        return torch.stack([p.norm(dim=-1) - 0.5, torus_sdf(0.55, 0.2)(p)])

    stats = {}
    points = sdf_surface_points(two, 2, octree_depth=3, refine_depth=6, stats=stats)
    meshes = sdf_to_meshes(two, 2, octree_depth=3, refine_depth=6)
    assert stats["points"] == [len(p) for p in points]
    for pts, mesh in zip(points, meshes):
        assert pts.dtype == torch.float32 and pts.shape == (len(mesh.vertices), 3)
        ref = np.asarray(mesh.vertices)
        assert cKDTree(ref).query(pts.numpy())[0].max() < 1e-6
        assert cKDTree(pts.numpy()).query(ref)[0].max() < 1e-6
    assert stats["points_evaluated"] == meshes[0].metadata["meshing"]["points_evaluated"]


def test_surface_points_cover_the_surface_at_one_voxel_spacing():
    """The candidate resolution the attention chain uses (2^7 cells): ~1.5 A / h^2 points, on the sphere, and
    every surface point has one within a voxel."""
    from actionmesh_core.geometry.meshing import sdf_surface_points

    r, h = 0.5, voxel(7)
    pts = sdf_surface_points(sphere_sdf(r), octree_depth=5, refine_depth=7)[0].double().numpy()
    assert len(pts) == pytest.approx(1.5 * 4 * math.pi * r**2 / h**2, rel=0.05)
    assert np.abs(np.linalg.norm(pts, axis=1) - r).max() < 0.01 * h
    assert cKDTree(pts).query(fibonacci_sphere(20000, r))[0].max() < h
    assert len(np.unique(pts.round(7), axis=0)) == len(pts)  # an edge shared by two bricks gives one point


def test_surface_points_stop_at_the_first_level_with_enough_crossings():
    """``min_points``: a coarser level ends the band when every field already has that many crossings there."""
    from actionmesh_core.geometry.meshing import sdf_surface_points

    def two(p):
        return torch.stack([p.norm(dim=-1) - 0.5, p.norm(dim=-1) - 0.3])

    fine, coarse = {}, {}
    full = sdf_surface_points(two, 2, octree_depth=4, refine_depth=7, stats=fine, min_points=4000)
    early = sdf_surface_points(two, 2, octree_depth=4, refine_depth=7, stats=coarse, min_points=1500)
    assert fine["depth"] == 7 and coarse["depth"] == 6  # r = 0.3 has ~1700 crossings at 2^6, ~6900 at 2^7
    assert min(coarse["points"]) >= 1500 and coarse["points_evaluated"] < fine["points_evaluated"] / 2
    assert coarse["voxel_size"] == pytest.approx(voxel(6))
    mc = sdf_to_meshes(two, 2, octree_depth=4, refine_depth=6)
    for pts, mesh in zip(early, mc):
        assert pts.shape == (len(mesh.vertices), 3)
        assert cKDTree(np.asarray(mesh.vertices)).query(pts.numpy())[0].max() < 1e-6
    assert [len(p) for p in full] == fine["points"]


def test_surface_points_keep_a_free_thin_plate_and_handle_empty_fields():
    from actionmesh_core.geometry.meshing import sdf_surface_points

    f = free_plate(0.3 * voxel(6), plane_index_only(6))
    pts = sdf_surface_points(f, octree_depth=3, refine_depth=6)[0]
    assert (pts[:, 0] < -0.5).sum() > 50  # both faces of the plate
    empty = sdf_surface_points(lambda p: p.norm(dim=-1) + 1.0, octree_depth=3, refine_depth=5)[0]
    assert empty.shape == (0, 3)
    with pytest.raises(ValueError, match="sdf_surface_points: refine_depth"):
        sdf_surface_points(f, octree_depth=5, refine_depth=4)


def test_surface_points_in_bf16_on_the_cpu_match_fp32():
    """The half-precision path (bf16 field, fp32 near the level) run on the CPU: same crossings, moved < 0.1 voxel."""
    from actionmesh_core.geometry.meshing import sdf_surface_points

    field, inside = _tiny_vae_field()
    fp32 = sdf_surface_points(field, inside=inside, octree_depth=4, refine_depth=6, precision="fp32")[0]
    st = {}
    half = sdf_surface_points(field, inside=inside, octree_depth=4, refine_depth=6, precision="bf16", stats=st)[0]
    assert st["precision"] == "bfloat16" and 0 < st["points_fp32"] < st["points_evaluated"]
    assert half.shape == fp32.shape
    assert (half - fp32).abs().max() < 0.1 * voxel(6)
