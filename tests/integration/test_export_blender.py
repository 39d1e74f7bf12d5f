"""Every export opened in a real Blender (bpy in a subprocess): what an artist sees.

For each format: the object, its vertex count, UVs, the texture image, shape
keys or the armature with its action, the frame range, and the evaluated mesh
at the first and last frame equal to the exported animation (Blender's Z-up
frame; Hausdorff distance, since importers may reorder vertices).
Outside CI the module skips when bpy is missing; with CI=true it must run.
"""
import numpy as np
import pytest

from actionmesh_core.export import export_animation
from blender_client import hausdorff, open_in_blender, require_blender, y_up_to_blender
from export_fixtures import bending_tube

pytestmark = pytest.mark.bpy
T, FPS, BONES = 6, 12.0, 4
# format -> (Blender frame of animation frame 0, converts Y-up to Z-up, texture image inside, exact)
EXPECT = {
    "glb": (0, True, True, True),
    "glb-skinned": (0, True, True, False),
    "usda": (0, True, True, True),
    "usdz": (0, True, True, True),
    "abc": (0, True, False, True),
    "fbx": (1, True, True, True),  # Blender's FBX importer offsets animation by one frame (its anim_offset=1)
    "fbx-skinned": (1, True, True, False),
    "obj-sequence": (None, True, True, True),
    "ply-sequence": (None, False, False, True),
}


@pytest.fixture(scope="module")
def opened(tmp_path_factory):
    """Export every format once, open them all in one Blender process."""
    require_blender()
    anim = bending_tube(frames=T, fps=FPS, max_angle_deg=80.0)
    folder = tmp_path_factory.mktemp("blender")
    jobs, keys, results = [], [], {}
    for fmt, (first, *_rest) in EXPECT.items():
        result = export_animation(anim, folder / f"walk_{fmt.replace('-', '_')}", fmt, bones=BONES)
        results[fmt] = result
        if first is None:  # a sequence: open its first and last frame files
            jobs += [(result.files[0], fmt, FPS, [1]), (result.files[T - 1], fmt, FPS, [1])]
            keys += [(fmt, 0), (fmt, T - 1)]
        else:
            jobs.append((result.path, fmt, FPS, [first, first + T - 1]))
            keys.append((fmt, None))
    reports = open_in_blender(jobs)
    return anim, results, dict(zip(keys, reports))


def _positions(anim, fmt, k):
    v = anim.vertices[k]
    return y_up_to_blender(v) if EXPECT[fmt][1] else np.asarray(v, np.float64)


@pytest.mark.parametrize("fmt", [f for f in EXPECT if EXPECT[f][0] is not None])
def test_blender_plays_the_animation(opened, fmt):
    anim, results, reports = opened
    first, _, has_image, exact = EXPECT[fmt]
    rep = reports[(fmt, None)]
    diag = float(np.linalg.norm(np.ptp(anim.vertices[0], axis=0)))
    assert rep["vertices"] == anim.num_vertices and rep["uv_layers"] == 1
    assert rep["fps"] == pytest.approx(FPS)
    if has_image:
        assert any(img["size"] == [48, 32] for img in rep["images"]), rep["images"]
    if fmt in ("glb", "fbx"):  # one shape key per frame (+ basis) with its action
        assert rep["shape_keys"] == T + 1
        assert rep["shape_key_action"]["range"] == [first, first + T - 1]
    elif fmt.endswith("skinned"):
        assert rep["armature_bones"] == results[fmt].info["bones"] >= 2
        assert rep["armature_action"]["range"] == [first, first + T - 1]
        assert "ARMATURE" in rep["modifiers"]
    else:  # point caches stream from the file
        assert "MESH_SEQUENCE_CACHE" in rep["modifiers"] and rep["frame_range"] == [0, T - 1]
    tolerance = 1e-5 if exact else 0.01
    start, end = rep["positions"][first], rep["positions"][first + T - 1]
    assert hausdorff(start, _positions(anim, fmt, 0)) / diag < tolerance
    assert hausdorff(end, _positions(anim, fmt, T - 1)) / diag < tolerance
    # it moves between the first and last frame, as much as the export says
    moved = np.linalg.norm(anim.vertices[-1] - anim.vertices[0], axis=-1).max() / diag
    assert moved > 0.3 and hausdorff(start, end) / diag > 0.1


@pytest.mark.parametrize("fmt", ["obj-sequence", "ply-sequence"])
def test_blender_opens_first_and_last_frame_of_a_sequence(opened, fmt):
    anim, results, reports = opened
    diag = float(np.linalg.norm(np.ptp(anim.vertices[0], axis=0)))
    for k in (0, T - 1):
        rep = reports[(fmt, k)]
        assert rep["vertices"] == anim.num_vertices and rep["uv_layers"] == 1
        assert hausdorff(rep["positions"][1], _positions(anim, fmt, k)) / diag < 1e-5
        if fmt == "obj-sequence":  # the one shared texture, by its unique name
            assert [img["file"] for img in rep["images"]] == ["walk_obj_sequence_texture.png"]
            assert rep["images"][0]["size"] == [48, 32]
    assert hausdorff(reports[(fmt, 0)]["positions"][1], reports[(fmt, T - 1)]["positions"][1]) / diag > 0.1


def test_alembic_texture_is_written_beside_it(opened):
    _, results, _ = opened
    files = results["abc"].files
    assert [p.name for p in files] == ["walk_abc.abc", "walk_abc_texture.png"] and files[1].is_file()
