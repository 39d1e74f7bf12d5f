"""Release fidelity beyond the parity vectors: where we keep correct behaviour instead of the release's,
each difference is a tested property (README "Differences from the official release"); plus the
conventions no parity vector pins down (VAE inside sign, GLB normal deltas, denormalisation).
"""
from __future__ import annotations

import math

import numpy as np
import pygltflib
import pytest
import torch
import trimesh

from actionmesh_core.geometry.meshing import sdf_to_meshes
from actionmesh_core.geometry.reference import merge_by_position, prepare_reference_mesh, query_normals
from actionmesh_core.io.animated_mesh import AnimatedMesh
from actionmesh_core.io.glb import export_animated_glb
from actionmesh_core.models.layers import fourier_point_embedding
from actionmesh_core.sampling.stage2 import decode_stage2, release_written_frames
from export_fixtures import box
from tiny_models import tiny_autoencoder, tiny_vae


# ------------------------------------------------------------------ TripoSG VAE inside sign


def _vae_with_known_field(level=2.7):
    """A TripoSG VAE whose raw decoder output is negative inside the blob cos x + cos y + cos z > level.

    That is the sign convention of a true SDF, as TripoSG's decoder is trained. The cross-attention block is
    made the identity, the query projection builds s = sum(cos) - level next to a large constant pair, the
    output LayerNorm keeps the sign of s, and proj_out negates it.
    """
    vae = tiny_vae()
    dec = vae.decoder
    width = dec.proj_query.out_features
    probe = torch.rand(64, 3) * 2 - 1
    emb = fourier_point_embedding(probe, vae.config["embed_frequency"], vae.config["embed_include_pi"])
    cos_cols = [next(j for j in range(emb.shape[1]) if torch.allclose(emb[:, j], probe[:, a].cos()))
                for a in range(3)]
    with torch.no_grad():
        for name, p in dec.blocks[-1].named_parameters():
            if name.endswith(("to_out.0.weight", "to_out.0.bias", "net.2.weight", "net.2.bias")):
                p.zero_()
        dec.proj_query.weight.zero_()
        dec.proj_query.bias.zero_()
        for j in cos_cols:
            dec.proj_query.weight[0, j] = 1.0
            dec.proj_query.weight[1, j] = -1.0
        dec.proj_query.bias[0], dec.proj_query.bias[1] = -level, level
        dec.proj_query.bias[2], dec.proj_query.bias[3] = 10.0, -10.0
        dec.norm_out.weight.fill_(1.0)
        dec.norm_out.bias.zero_()
        dec.proj_out.weight.zero_()
        dec.proj_out.bias.zero_()
        dec.proj_out.weight[0, 0] = 1.0  # raw output = LN(s) ~ s: positive where sum(cos) > level ...
        dec.proj_out.weight.neg_()  # ... negated: raw output negative inside, as an SDF
    assert width >= 4
    return vae


def test_vae_inside_sign_gives_an_outward_mesh_of_the_known_shape():
    level = 2.7
    vae = _vae_with_known_field(level)
    latent = torch.randn(1, 5, vae.config["latent_channels"])
    inside_point = torch.zeros(1, 1, 3)
    raw = -vae.decode(latent, inside_point)  # decode() returns the negated decoder output
    assert raw.item() < 0, "the handmade decoder is an SDF: negative inside"
    mesh = sdf_to_meshes(vae.field_fn(latent), 1, octree_depth=5, refine_depth=6, inside=vae.inside_sign)[0]
    assert mesh.is_watertight
    assert mesh.volume > 0, "faces must wind outward (inside sign of the TripoSG field)"
    centres = mesh.triangles_center
    assert (np.einsum("ij,ij->i", mesh.face_normals, centres) > 0).all(), "every face looks away from the centre"
    on_surface = np.cos(mesh.vertices).sum(1) - level
    assert np.abs(on_surface).max() < 5e-3, "vertices lie on the known level set"
    # the blob of sum(cos) > 2.7 has radius ~ sqrt(2 * 0.3): not the complement (the grid's box)
    assert np.linalg.norm(mesh.vertices, axis=1).max() < 0.85


# ------------------------------------------------------------------ anchor mesh coordinates


@pytest.mark.parametrize("centre", [(0.0, 0.0, 0.0), (0.2, -0.15, 0.1)])
def test_anchor_mesh_coordinates_are_not_shrunk_or_shifted(centre):
    """Marching-cubes indices map to the grid's own spacing: no 1.56 % shrink and 0.016 shift (release: /512 on a
    505-point axis). A sphere comes out with its true radius and centre."""
    radius = 0.55
    c = torch.tensor(centre)
    mesh = sdf_to_meshes(lambda p: (p - c).norm(dim=-1) - radius, 1, octree_depth=6, refine_depth=7)[0]
    r = np.linalg.norm(mesh.vertices - np.asarray(centre), axis=1)
    assert abs(r.mean() / radius - 1) < 1e-3, r.mean()
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    np.testing.assert_allclose((lo + hi) / 2, centre, atol=2e-3)
    np.testing.assert_allclose(hi - lo, 2 * radius, rtol=2e-3)


# ------------------------------------------------------------------ stage II: welded seams, every frame


def test_uv_seam_vertices_are_welded_for_stage2_queries():
    """Split seam copies share one query (position and normal) and so move together in every frame."""
    mesh = box((1.2, 0.8, 0.5), (3.0, -2.0, 1.0))
    assert len(mesh.vertices) == 24
    ref = prepare_reference_mesh(mesh, num_surface_points=512, num_query_points=16, subset_points=128)
    assert ref.num_vertices == 8
    # unwelded, the split copies of a corner get the normals of their own side: 90 degrees apart
    split = query_normals(ref.normalize(mesh.vertices).astype(np.float32), mesh.faces)
    _, to_merged = merge_by_position(mesh.vertices)
    corner = np.nonzero(to_merged == 0)[0]
    assert len(corner) == 3
    assert np.degrees(np.arccos(np.clip(split[corner[0]] @ split[corner[1]], -1, 1))) > 80
    ae = tiny_autoencoder()
    latents = torch.randn(5, 6, ae.config["latent_channels"])
    positions = decode_stage2(ae, latents, ref.vertex_queries(), faces=torch.from_numpy(ref.faces), anchor_frame=2,
                              window=4, slide=3)
    anim = ref.to_animated_mesh(positions)
    for group in range(ref.num_vertices):
        copies = np.nonzero(ref.to_original == group)[0]
        assert len(copies) == 3
        for k in copies[1:]:
            np.testing.assert_array_equal(anim.vertices[:, k], anim.vertices[:, copies[0]])


@pytest.mark.parametrize("num_frames,anchor,window,slide", [(2, 1, 16, 15), (7, 6, 4, 3), (23, 9, 8, 5), (40, 0, 16, 15)])
def test_every_frame_is_decoded_for_any_clip_length_and_anchor(num_frames, anchor, window, slide):
    """The release writes only frames min+1..max of each window (no frame 0 when the anchor is not 0) and takes
    16-31 frames; we decode every frame of any clip of >= 2 frames."""
    ae = tiny_autoencoder()
    torch.manual_seed(num_frames)
    verts = torch.rand(9, 3) - 0.5
    faces = torch.tensor([[0, 1, 2], [1, 3, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8], [0, 4, 8]])
    query = torch.cat([verts, query_normals(verts, faces)], -1)
    out = decode_stage2(ae, torch.randn(num_frames, 6, ae.config["latent_channels"]), query, faces=faces,
                        anchor_frame=anchor, window=window, slide=slide)
    assert out.shape == (num_frames, 9, 3) and torch.isfinite(out).all()
    assert torch.equal(out[anchor], verts)
    others = [f for f in range(num_frames) if f != anchor]
    assert all((out[f] - verts).abs().max() > 1e-4 for f in others), "a frame was left undecoded"
    written = release_written_frames(num_frames, anchor, window, slide)
    assert (0 in written) == (anchor == 0)
    assert set(written) | {0} == set(range(num_frames))


# ------------------------------------------------------------------ reference mesh denormalisation


def test_reference_mesh_denormalisation_with_scale_not_one():
    """A mesh in centimetres far from the origin: model space is [-1, 1], the animation comes back in cm."""
    mesh = box((37.0, 12.0, 5.0), (120.0, -40.0, 7.5))
    ref = prepare_reference_mesh(mesh, num_surface_points=512, num_query_points=16, subset_points=128)
    assert ref.scale == pytest.approx(2 / 37.0) and ref.scale != 1
    np.testing.assert_allclose(ref.center, [120.0, -40.0, 7.5], atol=1e-9)
    assert np.abs(ref.vertices).max() == pytest.approx(1.0, abs=1e-6)
    shift = np.array([0.25, -0.1, 0.05])  # model units
    motion = np.stack([ref.vertices + k * shift for k in range(3)]).astype(np.float32)
    anim = ref.to_animated_mesh(motion)
    for k in range(3):  # a model-space shift of d is d / scale = d * 18.5 cm
        np.testing.assert_allclose(anim.vertices[k], mesh.vertices + k * shift * 18.5, atol=1e-4)
    model = ref.to_animated_mesh(motion, denormalize=False)
    np.testing.assert_allclose(model.vertices[0], ref.vertices[ref.to_original], atol=0)


# ------------------------------------------------------------------ GLB normal morph targets


def _rotation(angle):
    return np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1.0]])


def _read_vec3(gltf, blob, index):
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    assert acc.componentType == pygltflib.FLOAT and acc.type == "VEC3"
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    return np.frombuffer(blob, np.float32, acc.count * 3, start).reshape(-1, 3)


def test_glb_normal_morph_targets_are_deltas(tmp_path):
    """glTF morph targets hold deltas: base NORMAL + target NORMAL = the frame's normals (read with pygltflib).

    The animation is a rigid rotation, so the frame's normals are the rotated rest normals whatever the
    normal definition; storing absolute normals (or POSITION-style deltas with the wrong base) fails.
    """
    sphere = trimesh.creation.icosphere(2)
    rest = sphere.vertices * [1.0, 0.7, 0.5]  # an ellipsoid: its normals are not its positions
    frames = np.stack([rest @ _rotation(0.35 * k).T for k in range(5)])
    anim = AnimatedMesh(faces=sphere.faces, vertices=frames.astype(np.float32), times=np.arange(5) / 8)
    path = export_animated_glb(anim, tmp_path / "normals.glb", include_normals=True)
    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()
    prim = gltf.meshes[0].primitives[0]
    base = _read_vec3(gltf, blob, prim.attributes.NORMAL)
    np.testing.assert_allclose(np.linalg.norm(base, axis=1), 1.0, atol=1e-5)
    assert (np.einsum("ij,ij->i", base, anim.vertices[0]) > 0).all(), "rest normals point outward"
    assert len(prim.targets) == 5
    np.testing.assert_array_equal(_read_vec3(gltf, blob, prim.targets[0]["NORMAL"]), 0.0)
    for k in range(1, 5):
        delta = _read_vec3(gltf, blob, prim.targets[k]["NORMAL"])
        np.testing.assert_allclose(base + delta, base @ _rotation(0.35 * k).T, atol=2e-5)
