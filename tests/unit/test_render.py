"""Preview renderer: geometric truths of the orthographic z-buffer rasteriser."""
from __future__ import annotations

import numpy as np
import pytest

from actionmesh_core.io.animated_mesh import AnimatedMesh
from actionmesh_core.render import camera_basis, rasterize, render_animation

SIZE = 64
SQUARE_FACES = np.array([[0, 1, 2], [0, 2, 3]])


def square(z=0.0, half=0.5, offset=(0.0, 0.0)):
    """A square in the xy plane facing +z (towards the default camera)."""
    ox, oy = offset
    return np.array([[-half + ox, -half + oy, z], [half + ox, -half + oy, z],
                     [half + ox, half + oy, z], [-half + ox, half + oy, z]], dtype=np.float32)


def front(anim, **kwargs):
    """Front view (azimuth 0, elevation 0), window [-1, 1]^2, white background."""
    kwargs.setdefault("mode", "normal")
    return render_animation(anim, size=SIZE, view=(0.0, 0.0), center=(0.0, 0.0), extent=1.0, **kwargs)


def coverage(image, background=1.0):
    return np.any(np.abs(image - background) > 1e-6, axis=-1)


def test_square_facing_the_camera_covers_the_expected_pixels():
    anim = AnimatedMesh(faces=SQUARE_FACES, vertices=square()[None])
    image = front(anim)[0]
    covered = coverage(image)
    # [-0.5, 0.5]^2 in a [-1, 1]^2 window of 64 px = pixels 16..47 on both axes: a quarter of the image.
    assert covered.sum() == 32 * 32
    assert covered[16:48, 16:48].all()
    np.testing.assert_allclose(image[covered], np.tile([0.5, 0.5, 1.0], (1024, 1)), atol=1e-6)  # normal (0,0,1)
    assert np.all(image[~covered] == 1.0)


def test_shaded_mode_is_uniform_on_a_plane_and_follows_the_light():
    anim = AnimatedMesh(faces=SQUARE_FACES, vertices=square()[None])
    flat = front(anim, mode="shaded")[0][coverage(front(anim)[0])]
    assert np.ptp(flat, axis=0).max() < 1e-6  # flat shading: one colour
    assert 0.8 * 0.3 < flat[0, 0] <= 0.8  # between ambient only and fully lit (base colour 0.8)
    # Tilting the square away from the light (which comes from the upper left) darkens it.
    tilt = np.radians(60)
    rot = np.array([[np.cos(tilt), 0, np.sin(tilt)], [0, 1, 0], [-np.sin(tilt), 0, np.cos(tilt)]])
    tilted = AnimatedMesh(faces=SQUARE_FACES, vertices=(square() @ rot.T)[None])
    shade = front(tilted, mode="shaded")[0]
    assert shade[coverage(shade)][0, 0] < flat[0, 0]


def test_translation_moves_the_silhouette_by_the_expected_pixels():
    frames = np.stack([square(), square(offset=(0.25, 0.0)), square(offset=(0.0, -0.5))])
    anim = AnimatedMesh(faces=SQUARE_FACES, vertices=frames)
    masks = [coverage(img) for img in front(anim)]
    # 0.25 model units = 0.25 * 64 / 2 = 8 px to the right; -0.5 in y = 16 px down (rows grow downwards).
    np.testing.assert_array_equal(np.roll(masks[0], 8, axis=1), masks[1])
    np.testing.assert_array_equal(np.roll(masks[0], 16, axis=0), masks[2])


def test_automatic_framing_is_shared_by_all_frames():
    frames = np.stack([square(), square(offset=(0.25, 0.0))])
    anim = AnimatedMesh(faces=SQUARE_FACES, vertices=frames)
    images = render_animation(anim, size=SIZE, view=(0.0, 0.0), mode="normal")
    masks = [coverage(img) for img in images]
    # Fit: x in [-0.5, 0.75], y in [-0.5, 0.5] -> centre x 0.125, half-extent 0.625 * 1.05.
    scale = SIZE / 2 / (0.625 * 1.05)
    cols = [np.nonzero(m.any(axis=0))[0] for m in masks]
    assert abs((cols[1].mean() - cols[0].mean()) - 0.25 * scale) < 0.6
    for m in masks:  # nothing touches the border (5 % margin)
        assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())


def test_depth_ordering_of_overlapping_triangles():
    near = np.array([[-0.6, -0.6, 0.3], [0.4, -0.6, 0.3], [-0.6, 0.4, 0.3]])
    far = np.array([[-0.4, -0.4, -0.3], [0.6, -0.4, -0.3], [-0.4, 0.6, -0.3]])
    vertices = np.concatenate([near, far])[None]
    for faces in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):  # draw order must not matter
        depth = front(AnimatedMesh(faces=np.array(faces), vertices=vertices), mode="depth")[0][..., 0]
        near_value, far_value = 0.15 + 0.85 * 1.0, 0.15  # depth range of the sequence is [-0.3, 0.3]
        # Pixel (row 41, col 22): x = y = -0.297 lies in both triangles: the near one wins.
        assert depth[41, 22] == pytest.approx(near_value)
        # Pixel (row 14, col 20): x = -0.36, y = 0.55 lies only in the far triangle.
        assert depth[14, 20] == pytest.approx(far_value)


def test_depth_is_interpolated_across_a_sloped_triangle():
    # A square whose depth goes linearly from -0.5 (left) to +0.5 (right).
    vertices = np.array([[-0.5, -0.5, -0.5], [0.5, -0.5, 0.5], [0.5, 0.5, 0.5], [-0.5, 0.5, -0.5]])
    depth = front(AnimatedMesh(faces=SQUARE_FACES, vertices=vertices[None]), mode="depth")[0][..., 0]
    row = depth[32, 16:48]
    x = (np.arange(16, 48) + 0.5) / 32.0 - 1.0  # pixel centres in model units
    np.testing.assert_allclose(row, 0.15 + 0.85 * (x + 0.5), atol=1e-6)


def test_camera_convention():
    np.testing.assert_allclose(camera_basis(0, 0), np.eye(3), atol=1e-12)
    side = np.array([[0.0, -0.5, -0.5], [0.0, -0.5, 0.5], [0.0, 0.5, 0.5], [0.0, 0.5, -0.5]])  # faces +x
    anim = AnimatedMesh(faces=SQUARE_FACES, vertices=side[None])
    edge_on = render_animation(anim, size=SIZE, view=(0, 0), center=(0, 0), extent=1.0)
    assert coverage(edge_on[0]).sum() == 0
    from_right = render_animation(anim, size=SIZE, view=(90, 0), center=(0, 0), extent=1.0, mode="normal")
    assert coverage(from_right[0]).sum() == 32 * 32
    # Seen from +x, model +z is on the image's left; seen from above, model -z is at the top.
    marker = np.array([[0.0, -0.1, 0.7], [0.0, -0.1, 0.9], [0.0, 0.1, 0.8]])  # in the yz plane, at +z
    anim = AnimatedMesh(faces=np.array([[0, 1, 2]]), vertices=marker[None])
    cols = np.nonzero(coverage(render_animation(anim, size=SIZE, view=(90, 0), center=(0, 0), extent=1.0)[0]))[1]
    assert cols.size and cols.max() < SIZE // 2
    marker_back = np.array([[-0.1, 0.0, -0.9], [0.1, 0.0, -0.9], [0.0, 0.0, -0.7]])  # in the xz plane, at -z
    top = render_animation(AnimatedMesh(faces=np.array([[0, 1, 2]]), vertices=marker_back[None]), size=SIZE,
                           view=(0, 90), center=(0, 0), extent=1.0)[0]
    rows = np.nonzero(coverage(top))[0]
    assert rows.size and rows.max() < SIZE // 2


def test_closed_mesh_has_no_holes_and_chunking_does_not_change_the_result():
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.8)
    xy = sphere.vertices[:, :2] * 32 + 32
    xy[:, 1] = 64 - xy[:, 1]
    face_a, z_a = rasterize(xy, sphere.vertices[:, 2], sphere.faces, 64, 64)
    face_b, z_b = rasterize(xy, sphere.vertices[:, 2], sphere.faces, 64, 64, max_fragments=7)
    np.testing.assert_array_equal(face_a, face_b)
    np.testing.assert_array_equal(z_a, z_b)
    rows, cols = np.mgrid[0:64, 0:64]
    radius = np.hypot(cols + 0.5 - 32, rows + 0.5 - 32)
    assert (face_a[radius < 0.8 * 32 * 0.97] >= 0).all()  # inside the inscribed polygon: no holes
    assert (face_a[radius > 0.8 * 32 + 0.5] == -1).all()
    visible = face_a[face_a >= 0]
    assert (sphere.face_normals[visible, 2] > -1e-9).all()  # only front faces survive the z-test


def test_output_contract_and_callback():
    frames = np.stack([square(), square(offset=(0.1, 0.1))])
    anim = AnimatedMesh(faces=SQUARE_FACES, vertices=frames)
    calls = []
    images = render_animation(anim, size=32, background=(0.0, 0.2, 0.4), callback=lambda d, t: calls.append((d, t)))
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    np.testing.assert_allclose(images[0, 0, 0], [0.0, 0.2, 0.4])
    assert calls == [(1, 2), (2, 2)]
    with pytest.raises(ValueError, match="unknown render mode"):
        render_animation(anim, mode="wireframe")
    with pytest.raises(ValueError, match="size"):
        render_animation(anim, size=4)
    with pytest.raises(ValueError, match="elevation"):
        render_animation(anim, view=(0, 120))
    with pytest.raises(ValueError, match="background"):
        render_animation(anim, background=2.0)


# --------------------------------------------------------------------------- the mesh's own colours, framing

QUADRANTS = {(0, 0): (1.0, 0.0, 0.0), (0, 1): (0.0, 1.0, 0.0), (1, 0): (0.0, 0.0, 1.0), (1, 1): (1.0, 1.0, 0.0)}


def quadrant_texture(side=32):
    """RGB uint8 texture: top-left red, top-right green, bottom-left blue, bottom-right yellow (image rows)."""
    texture = np.zeros((side, side, 3), np.uint8)
    h = side // 2
    for (qr, qc), rgb in QUADRANTS.items():
        texture[qr * h:(qr + 1) * h, qc * h:(qc + 1) * h] = np.asarray(rgb) * 255
    return texture


def textured_square():
    """The front-facing square with UVs spanning the texture (trimesh convention: v = 1 is the top row)."""
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)  # corners (-,-) (+,-) (+,+) (-,+)
    return AnimatedMesh(faces=SQUARE_FACES, vertices=square()[None], uv=uv, texture=quadrant_texture())


def test_textured_square_shows_its_texture_quadrants_in_place():
    anim = textured_square()
    unlit = front(anim, mode="unlit")[0]
    # the square covers pixels 16..47; each texture quadrant is a 16 px quadrant of it (keep 2 px off the seams)
    for (qr, qc), rgb in QUADRANTS.items():
        patch = unlit[18 + 16 * qr:30 + 16 * qr, 18 + 16 * qc:30 + 16 * qc]
        np.testing.assert_allclose(patch.reshape(-1, 3), np.tile(rgb, (144, 1)), atol=1e-6)
    shaded = front(anim, mode="textured")[0]
    light = np.array([-0.35, 0.45, 1.0]) / np.linalg.norm([-0.35, 0.45, 1.0])
    factor = 0.3 + 0.7 * light[2]  # Lambert of a face looking at the camera
    np.testing.assert_allclose(shaded[20, 20], np.array(QUADRANTS[(0, 0)]) * factor, atol=1e-6)
    np.testing.assert_allclose(shaded[40, 40], np.array(QUADRANTS[(1, 1)]) * factor, atol=1e-6)
    assert np.all(shaded[:16] == 1.0)  # background untouched


def test_vertex_colours_are_interpolated_and_material_colour_is_the_fallback():
    import trimesh

    tri = np.array([[-0.8, -0.8, 0.0], [0.8, -0.8, 0.0], [-0.8, 0.8, 0.0]], np.float32)
    colors = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]], np.uint8)
    anim = AnimatedMesh(faces=[[0, 1, 2]], vertices=tri[None], vertex_colors=colors)
    image = front(anim, mode="unlit")[0]
    # pixel centre (x, y) = column/row + 0.5 in a [-1, 1] window of 64 px; weights of vertices 1 and 2 are
    # the fractions of the way along +x and +y from vertex 0
    r, c = 50, 12
    x, y = (c + 0.5) / 32 - 1, 1 - (r + 0.5) / 32
    w1, w2 = (x + 0.8) / 1.6, (y + 0.8) / 1.6
    np.testing.assert_allclose(image[r, c], [1 - w1 - w2, w1, w2], atol=1e-6)
    material = trimesh.visual.material.PBRMaterial(baseColorFactor=[255, 128, 0, 255])
    plain = AnimatedMesh(faces=[[0, 1, 2]], vertices=tri[None], material=material)
    np.testing.assert_allclose(front(plain, mode="unlit")[0][40, 20], [1.0, 128 / 255, 0.0], atol=1e-6)
    grey = AnimatedMesh(faces=[[0, 1, 2]], vertices=tri[None])
    np.testing.assert_allclose(front(grey, mode="unlit")[0][40, 20], [0.8, 0.8, 0.8], atol=1e-6)


def test_textured_glb_renders_its_texture_through_the_real_reader(tmp_path):
    import trimesh
    from PIL import Image

    from actionmesh_core.geometry.reference import prepare_reference_mesh

    vertices = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float64) * 0.7 + [2.0, 1.0, 0.0]
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(quadrant_texture(64)))
    mesh = trimesh.Trimesh(vertices, SQUARE_FACES, visual=trimesh.visual.TextureVisuals(uv=uv, material=material),
                           process=False)
    path = tmp_path / "square.glb"
    mesh.export(path)
    reference = prepare_reference_mesh(path, num_surface_points=256, num_query_points=16, subset_points=64)
    anim = reference.to_animated_mesh(reference.vertices, denormalize=False)
    image = render_animation(anim, size=60, mode="unlit", view=(0.0, 0.0), margin=0.0)[0]
    np.testing.assert_allclose(image[10, 10], QUADRANTS[(0, 0)], atol=0.02)  # top-left red, not flipped
    np.testing.assert_allclose(image[10, 50], QUADRANTS[(0, 1)], atol=0.02)
    np.testing.assert_allclose(image[50, 10], QUADRANTS[(1, 0)], atol=0.02)
    np.testing.assert_allclose(image[50, 50], QUADRANTS[(1, 1)], atol=0.02)


def test_margin_frames_the_object_centred_like_prepare_frames():
    import trimesh

    from actionmesh_core.frames import prepare_frames

    box = trimesh.creation.box(extents=(1.0, 0.5, 0.3))
    vertices = np.asarray(box.vertices) + [3.0, -2.0, 0.5]  # framing must not depend on where the object is
    anim = AnimatedMesh(faces=box.faces, vertices=vertices[None])
    image = render_animation(anim, size=120, mode="shaded", view=(0.0, 0.0), margin=0.1)[0]
    rows, cols = np.nonzero(coverage(image))
    # longer side 1.0 -> 120 / (1 + 2 * 0.1) = 100 px, centred: columns 10..109; height 0.5 -> rows 35..84
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (10, 109, 35, 84)
    prepared = prepare_frames(np.stack([image, image]), margin=0.1)  # white background -> colour estimate
    assert prepared.crop_box == (0, 0, 120, 120)  # Prepare Frames keeps the render's framing as is
    wide = render_animation(anim, size=120, mode="shaded", view=(0.0, 0.0), margin=0.5)[0]
    cols = np.nonzero(coverage(wide).any(axis=0))[0]
    assert (cols.min(), cols.max()) == (30, 89)  # 120 / 2 = 60 px wide, centred
    with pytest.raises(ValueError, match="margin"):
        render_animation(anim, size=32, margin=-0.1)


@pytest.mark.parametrize("case", ["clockwise", "from the back"])
def test_open_or_clockwise_surfaces_render_from_either_side(case):
    """No back-face culling and two-sided shading: a clockwise-wound square, or an open square seen from behind,
    covers the same pixels as the square seen from the front and shades as facing the camera."""
    anim = AnimatedMesh(faces=SQUARE_FACES, vertices=square()[None])
    ref = {mode: front(anim, mode=mode)[0] for mode in ("normal", "shaded")}
    if case == "clockwise":
        other = AnimatedMesh(faces=SQUARE_FACES[:, ::-1].copy(), vertices=square()[None])
        got = {mode: front(other, mode=mode)[0] for mode in ("normal", "shaded")}
    else:
        got = {mode: render_animation(anim, size=SIZE, view=(180.0, 0.0), center=(0.0, 0.0), extent=1.0,
                                      mode=mode)[0] for mode in ("normal", "shaded")}
        got = {mode: img[:, ::-1] for mode, img in got.items()}  # seen from behind: left and right swap
    assert coverage(got["normal"]).sum() == 32 * 32
    np.testing.assert_array_equal(coverage(got["normal"]), coverage(ref["normal"]))
    np.testing.assert_allclose(got["normal"], ref["normal"], atol=1e-6)  # camera-facing normal (0, 0, 1)
    # lit like the front face (the light is fixed to the camera), not left dark (ambient only) or culled
    np.testing.assert_allclose(got["shaded"], ref["shaded"], atol=1e-6)
    assert ref["shaded"][coverage(ref["normal"])].min() > 0.8 * 0.3 + 0.05
