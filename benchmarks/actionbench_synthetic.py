"""Run ``python -m actionmesh_core evaluate`` on synthetic ActionBench folders with known answers.

Run: ``python3 benchmarks/actionbench_synthetic.py [--n-pts-icp 10000] [--n-pts-chamfer 100000]
[--icp-iterations 200] [--frames 16] [--keep DIR]``. The defaults are the release's sample counts; on a CPU the
ICP then takes minutes per frame (``--n-pts-icp 1000`` gives a quick look).

Samples (ground truth: ``surfaces.npy`` of 100 000 tracked points, the layout ActionBench ships):

* ``rigid``: an asymmetric object turning 10 degrees per frame about z and moving 0.06 along x; the prediction
  is the same clip moved rigidly as a whole (10 degrees, 0.07): every metric should be the sampling floor.
* ``shuffled``: the same prediction with its frames in another order: CD-3D stays at the floor, CD-4D and
  CD-M rise.
* ``offset``: a unit sphere translated by o_k at frame k (|o_k| from 0 to 0.4) against the static sphere:
  CD-4D = mean |o_k| and CD-M = 2 mean |o_k| analytically (plus the sampling floor).

Also printed: the sampling floor (a perfectly aligned prediction), and the effect of the release's pairing of
the ICP's remembered transform (rotation of the best step, translation and scale after it) against pairing all
three from the best step.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actionmesh_core.cli import main as cli_main  # noqa: E402
from actionmesh_core.eval import actionbench, metrics  # noqa: E402


def _shape() -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(1.6, 1.0, 0.6))
    bump = trimesh.creation.icosphere(2, radius=0.3).apply_translation([0.8, 0.5, 0.3])
    return trimesh.util.concatenate([box, bump])


def build(base: Path, num_frames: int) -> dict:
    """Write GT_ROOT and PRED_ROOT under ``base``; returns the analytic values."""
    gt_root, pred_root = base / "gt", base / "pred"
    m = _shape()
    clip = [trimesh.Trimesh(m.vertices @ Rotation.from_euler("z", 10 * k, degrees=True).as_matrix().T
                            + [0.06 * k, 0, 0], m.faces, process=False) for k in range(num_frames)]
    rot = Rotation.from_rotvec(np.radians(10) * np.array([1, 1, 0]) / np.sqrt(2)).as_matrix()
    moved = [trimesh.Trimesh(c.vertices @ rot.T + [0.05, -0.03, 0.04], c.faces, process=False) for c in clip]
    order = np.random.default_rng(0).permutation(num_frames)
    sphere = trimesh.creation.icosphere(4)
    directions = Rotation.random(num_frames, random_state=1).apply([1.0, 0, 0])
    offsets = directions * np.linspace(0.0, 0.4, num_frames)[:, None]
    samples = {
        "rigid": (clip, moved),
        "shuffled": (clip, [moved[i] for i in order]),
        "offset": ([sphere] * num_frames,
                   [trimesh.Trimesh(sphere.vertices + o, sphere.faces, process=False) for o in offsets]),
    }
    floors = {}
    for uid, (gt_meshes, pred_meshes) in samples.items():
        pts = metrics.sample_tracked_points(gt_meshes, 100_000, seed=1)
        (gt_root / uid).mkdir(parents=True)
        np.save(gt_root / uid / "surfaces.npy", np.concatenate([pts, np.zeros_like(pts)], -1))
        (pred_root / uid).mkdir(parents=True)
        for k, mesh in enumerate(pred_meshes):  # the release's layout
            mesh.export(pred_root / uid / f"mesh_{k:02d}.glb")
        floors[uid] = float(np.mean([metrics.chamfer_distance(p, g) for p, g in
                                     zip(metrics.sample_surface_points(gt_meshes), pts)]))
    d = np.linalg.norm(offsets, axis=1).mean()
    return {"floor": floors, "offset_cd_4d": d, "offset_cd_m": 2 * d}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-pts-icp", type=int, default=metrics.N_PTS_ICP)
    ap.add_argument("--n-pts-chamfer", type=int, default=metrics.N_PTS_CHAMFER)
    ap.add_argument("--icp-iterations", type=int, default=metrics.ICP_ITERATIONS)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--keep", help="write the folders here (kept) instead of a temporary folder")
    args = ap.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="actionbench-synthetic-"))
    try:
        known = build(base, args.frames)
        out = base / "results.csv"
        argv = ["evaluate", str(base / "pred"), str(base / "gt"), "--out", str(out),
                "--n-pts-icp", str(args.n_pts_icp), "--n-pts-chamfer", str(args.n_pts_chamfer),
                "--icp-iterations", str(args.icp_iterations)]
        print("$ python -m actionmesh_core " + " ".join(["evaluate", "PRED_ROOT", "GT_ROOT", "--out", "results.csv"]
                                                       + argv[5:]))
        code = cli_main(argv)
        print(f"exit status {code}")
        print(out.read_text())
        print("sampling floor (perfect alignment): " + ", ".join(f"{k} {v:.4f}" for k, v in known["floor"].items()))
        print(f"offset analytic: CD-4D {known['offset_cd_4d']:.4f}, CD-M {known['offset_cd_m']:.4f} (+ floor)")
        # the release's pairing of the ICP transform vs one step's parameters, on the rigid sample's frame 0
        gt = actionbench.load_ground_truth(base / "gt" / "rigid" / "surfaces.npy")
        meshes = actionbench.load_prediction(base / "pred", "rigid", gt.shape[0])
        pts = metrics.sample_surface_points(meshes[:1], args.n_pts_chamfer)
        icp_pred = metrics.subsample_points(pts, args.n_pts_icp)[0]
        icp_gt = metrics.subsample_points(gt[:1], args.n_pts_icp)[0]
        scores = []
        for pairing in (True, False):
            al = metrics.gradient_icp(icp_pred, icp_gt, iterations=args.icp_iterations, release_pairing=pairing)
            scores.append(metrics.chamfer_distance(al.apply(pts[0]), gt[0]))
        print(f"ICP pairing, rigid frame 0 Chamfer: release {scores[0]:.6f}, same step {scores[1]:.6f}, "
              f"difference {abs(scores[0] - scores[1]):.2e}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
