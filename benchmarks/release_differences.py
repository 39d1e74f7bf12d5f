"""Measure the effect of each deliberate difference from the official release (README "Differences ...").

Run: ``python3 benchmarks/release_differences.py`` (CPU, seconds). Uses the stage II parity checkpoint and
latents of ``tests/data/parity/stage2_windows`` (``$ACTIONMESH_PARITY_DIR``), so model-dependent numbers are
for those tiny random weights; geometric numbers do not depend on weights.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the shared test meshes (export_fixtures)

from actionmesh_core.checkpoints import load_model  # noqa: E402
from export_fixtures import box  # noqa: E402
from actionmesh_core.geometry.reference import prepare_reference_mesh, query_normals  # noqa: E402
from actionmesh_core.sampling.stage2 import decode_stage2, release_written_frames, stage2_schedule  # noqa: E402

BOUNDS = 1.005


def main() -> None:
    parity = Path(os.environ.get("ACTIONMESH_PARITY_DIR", ROOT / "tests" / "data" / "parity"))
    case = parity / "stage2_windows"
    spec = json.loads((case / "case.json").read_text())
    io = load_file(str(case / "io.safetensors"))
    model = load_model(case / "checkpoint", kind=spec["model"])

    # 1. anchor coordinates: the release maps marching-cubes indices of a 505-point axis with /512
    verts = io["anchor_vertices"].double().numpy()
    release = (verts + BOUNDS) * (504 / 512) - BOUNDS
    shift = np.linalg.norm(release - verts, axis=1)
    print(f"anchor 505^3 //512: scale {504 / 512:.6f} (shrink {100 * (1 - 504 / 512):.3f} %), "
          f"offset at the origin {BOUNDS * (504 / 512 - 1):.4f} per axis; on the parity anchor mesh frame 0 moves "
          f"by mean {shift.mean():.4f}, max {shift.max():.4f} (model units, object size ~2)")

    # 2. frame 0 when the anchor is not 0
    for key, sub in sorted(spec["subcases"].items()):
        written = release_written_frames(sub["num_frames"], sub["anchor_frame"], spec["window"], spec["slide"])
        print(f"{key}: release writes {len(written)} of {sub['num_frames']} frames; missing {sorted(set(range(sub['num_frames'])) - set(written))}")

    # 2b. window rules over every clip of 2..80 frames and every anchor (16 / 15): where the release cannot run
    short_index, short_dup, fails, extra_only_0 = 0, 0, 0, 0
    for t in range(2, 81):
        for a in range(t):
            if t < 16 and 0 < a < t - 1:  # the release indexes outside the clip
                if a > t - a and 2 * t >= 16:
                    short_dup += 1  # left side first: indices t-16..-1 wrap around, frames twice in a window
                else:
                    short_index += 1  # right side first (frames up to 15), or indices below -t: IndexError
                continue
            sched = stage2_schedule(t, a)
            if any(s.release_fails for s in sched):
                fails += 1
            elif a != 0:
                extra_only_0 += 1
    print(f"window rules, 3239 clips (2..80 frames x every anchor): release IndexError {short_index}, duplicated "
          f"frames {short_dup} (shorter than 16 frames, anchor inside); stage II source never decoded "
          f"(AssertionError) {fails} (anchor >= 30 with >= 31 frames); runs but lacks frame 0 {extra_only_0}")

    # 3. UV seams: a box exported with split seams (24 vertices); release queries the split vertices
    split = box((1.0, 0.7, 0.45))
    ref = prepare_reference_mesh(split, num_surface_points=512, num_query_points=16, subset_points=128)
    sv = torch.from_numpy(ref.normalize(split.vertices).astype(np.float32))
    sn = query_normals(sv, torch.from_numpy(split.faces))
    groups = [np.nonzero(ref.to_original == g)[0] for g in range(ref.num_vertices)]
    angle = max(np.degrees(np.arccos(np.clip(float(sn[a] @ sn[b]), -1, 1))) for g in groups for a in g for b in g)
    key = sorted(spec["subcases"])[0]
    sub = spec["subcases"][key]
    kw = dict(anchor_frame=sub["anchor_frame"], window=spec["window"], slide=spec["slide"])
    unwelded = decode_stage2(model, io[f"{key}_latents"], torch.cat([sv, sn], -1),
                             faces=torch.from_numpy(split.faces), **kw)
    tear = max(float((unwelded[:, g[0]] - unwelded[:, b]).norm(dim=-1).max()) for g in groups for b in g[1:])
    welded = decode_stage2(model, io[f"{key}_latents"], ref.vertex_queries(), faces=torch.from_numpy(ref.faces), **kw)
    expanded = welded[:, torch.from_numpy(ref.to_original)]
    tear_ours = max(float((expanded[:, g[0]] - expanded[:, b]).norm(dim=-1).max()) for g in groups for b in g[1:])
    print(f"UV seams (box, 24 split vertices -> 8): normals of coincident copies up to {angle:.1f} deg apart; "
          f"stage II ({key}, parity weights) tears copies apart by up to {tear:.4f} (release) vs {tear_ours:.4f} (ours)")


if __name__ == "__main__":
    main()
