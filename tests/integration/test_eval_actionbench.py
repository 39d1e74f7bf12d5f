"""``python -m actionmesh_core evaluate PRED_ROOT GT_ROOT --out results.csv`` on synthetic ActionBench folders.

Ground truth in the release's layout (``<uid>/surfaces.npy``, (T, N, 6)); predictions in each layout the
command reads: the release's ``<uid>/mesh_*.glb``, our ``--per-frame-dir`` files next to our animated GLB, and
one animated GLB ``<uid>.glb``. Few ICP points and steps (CPU time): the numbers are checked against the
library call on the same files, the per-sample status, the CSV, the summary and resuming.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from actionmesh_core.cli import main
from actionmesh_core.eval import actionbench, metrics
from actionmesh_core.io.animated_mesh import AnimatedMesh
from actionmesh_core.io.glb import export_animated_glb, export_static_glbs

OPTS = ["--n-pts-icp", "150", "--n-pts-chamfer", "3000", "--icp-iterations", "40", "--device", "cpu"]
SETTINGS = dict(num_icp_points=150, num_points=3000, icp_iterations=40, device="cpu")


def _clip(T=2):
    box = trimesh.creation.box(extents=(1.6, 1.0, 0.6))
    bump = trimesh.creation.icosphere(2, radius=0.3).apply_translation([0.8, 0.5, 0.3])
    m = trimesh.util.concatenate([box, bump])
    verts = np.stack([m.vertices @ Rotation.from_euler("z", 10 * k, degrees=True).as_matrix().T + [0.06 * k, 0, 0]
                      for k in range(T)]).astype(np.float32)
    return AnimatedMesh(m.faces, verts)


def _surfaces(anim, path, seed=1):
    """Ground truth as ActionBench ships it: (T, N, 6) tracked points + normals."""
    meshes = [trimesh.Trimesh(v, anim.faces, process=False) for v in anim.vertices]
    pts = metrics.sample_tracked_points(meshes, 3000, seed=seed)
    path.mkdir(parents=True)
    np.save(path / "surfaces.npy", np.concatenate([pts, np.zeros_like(pts)], -1))


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("actionbench")
    gt, pred = base / "gt", base / "pred"
    anim = _clip()
    shifted = AnimatedMesh(anim.faces, anim.vertices + np.float32([0.05, -0.02, 0.03]))
    for uid in ("clip_release", "clip_ours", "clip_animated", "gt_only"):
        _surfaces(anim, gt / uid)
    _surfaces(_clip(3), gt / "clip_short")
    # the release's layout: mesh_00.glb, mesh_01.glb written by trimesh
    (pred / "clip_release").mkdir(parents=True)
    for k in range(anim.num_frames):
        shifted.frame_mesh(k).export(pred / "clip_release" / f"mesh_{k:02d}.glb")
    # our CLI's outputs: --out pred/clip_ours/anim.glb --per-frame-dir pred/clip_ours
    export_animated_glb(shifted, pred / "clip_ours" / "anim.glb")
    export_static_glbs(shifted, pred / "clip_ours", "anim")
    # one animated GLB named by the uid
    export_animated_glb(shifted, pred / "clip_animated.glb")
    # 2 frames for a 3-frame ground truth; a prediction without ground truth
    export_static_glbs(shifted, pred / "clip_short", "anim")
    export_animated_glb(shifted, pred / "pred_only" / "anim.glb")
    return pred, gt


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_evaluate_command(roots, tmp_path, capsys):
    pred, gt = roots
    out = tmp_path / "results.csv"
    code = main(["evaluate", str(pred), str(gt), "--out", str(out)] + OPTS)
    captured = capsys.readouterr()
    assert code == actionbench.EXIT_SOME_FAILED
    rows = _rows(out)
    assert [r["uid"] for r in rows] == ["clip_animated", "clip_ours", "clip_release", "clip_short"]
    assert list(rows[0]) == ["uid", "cd_3d", "cd_4d", "cd_motion", "n_frames", "status", "error_message"]
    status = {r["uid"]: r["status"] for r in rows}
    assert status == {"clip_animated": "success", "clip_ours": "success", "clip_release": "success",
                      "clip_short": "error"}
    short = rows[3]
    assert short["error_message"] == "Not enough meshes: found 2, need 3" and short["cd_3d"] == ""
    assert "1 ground-truth samples have no prediction" in captured.err
    assert "1 predictions have no ground truth" in captured.err
    # the numbers are the library's on the same files
    for row in rows[:3]:
        meshes = actionbench.load_prediction(pred, row["uid"], 2)
        expected = metrics.evaluate_sequence(meshes, actionbench.load_ground_truth(gt / row["uid"] / "surfaces.npy"),
                                             **SETTINGS)
        assert float(row["cd_3d"]) == expected["cd_3d"] and float(row["cd_4d"]) == expected["cd_4d"]
        assert float(row["cd_motion"]) == expected["cd_m"] and row["n_frames"] == "2"
        assert 0 < expected["cd_3d"] < 0.2
    # the three layouts hold the same animation: the same scores
    assert rows[0]["cd_4d"] == rows[1]["cd_4d"] == rows[2]["cd_4d"]
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["n_total"] == 4 and summary["n_success"] == 3 and summary["n_failed"] == 1
    assert summary["success_rate"] == 0.75
    assert summary["cd_3d_mean"] == pytest.approx(np.mean([float(r["cd_3d"]) for r in rows[:3]]), rel=1e-12)
    assert summary["settings"]["num_icp_points"] == 150
    assert "CD-3D" in captured.out and "[clip_short] error: Not enough meshes" in captured.out

    # resume: the scored samples are kept, only the failed one is tried again
    calls = []
    real = metrics.evaluate_sequence

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(metrics, "evaluate_sequence", counting)
        assert main(["evaluate", str(pred), str(gt), "--out", str(out)] + OPTS) == actionbench.EXIT_SOME_FAILED
    assert calls == [] and _rows(out) == rows  # the short clip fails while loading, before any scoring
    # other settings on the same --out: refused (one line), nothing changed
    before = out.read_bytes()
    assert main(["evaluate", str(pred), str(gt), "--out", str(out), "--seed", "7"] + OPTS) == 2
    assert "other settings (seed)" in capsys.readouterr().err and out.read_bytes() == before


def test_layouts_read_the_same_frames(roots):
    pred, _ = roots
    frames = [actionbench.load_prediction(pred, uid) for uid in ("clip_release", "clip_ours", "clip_animated")]
    assert [len(f) for f in frames] == [2, 2, 2]
    for k in range(2):
        ref = frames[1][k]
        for other in (frames[0][k], frames[2][k]):
            # trimesh's loader of the release's files may merge vertices: compare the surfaces
            np.testing.assert_allclose(np.sort(other.triangles.reshape(-1, 9), axis=0),
                                       np.sort(ref.triangles.reshape(-1, 9), axis=0), atol=1e-6)
    source = actionbench._prediction_source(pred, "clip_ours")
    assert source[0] == "frames" and [p.name for p in source[1]] == ["anim_000.glb", "anim_001.glb"]


@pytest.mark.parametrize("argv,message", [
    (["evaluate", "{missing}", "{gt}", "--out", "{tmp}/r.csv"], "is not a folder"),
    (["evaluate", "{pred}", "{gt}", "--out", "{tmp}/r.txt"], "give a .csv file"),
    (["evaluate", "{pred}", "{pred}", "--out", "{tmp}/r.csv"], "no ground truth"),
    (["evaluate", "{pred}", "{gt}", "--out", "{tmp}/r.csv", "--n-pts-icp", "0"], "--n-pts-icp must be >= 1"),
    (["evaluate", "{pred}", "{gt}", "--out", "{tmp}/r.csv", "--device", "tpu"], "--device"),
])
def test_bad_input_is_one_line(roots, tmp_path, capsys, argv, message):
    pred, gt = roots
    args = [a.format(missing=tmp_path / "nope", gt=gt, pred=pred, tmp=tmp_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "r.csv").exists()
