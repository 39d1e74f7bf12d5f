#!/usr/bin/env python3
"""Batch throughput on Ray: clips per minute with 1 vs N workers on the same clips, in one run (issue #13).

One Ray session (local, or ``--address`` of a cluster) is started once; then the
same clips are converted with each worker count in turn (``--force``, a fresh
output folder each time), and the table prints wall seconds, clips per minute
and the speed-up over the first worker count. The wall time includes starting
the actors and loading the models in each (what a real batch pays once), so
use enough clips for the steady state to dominate.

Defaults: tiny random weights made on the fly, synthetic 8-frame 64 px clips,
a 642-vertex anchor mesh ({video + mesh} -> 4D: no TripoSG), 4 stage I steps,
CPU workers with 1 CPU (= 1 torch thread) each. On a GPU cluster pass your real
weights, frames and ``--gpus-per-worker 1 --workers-list 1,2,4,8``.

Examples::

    python3 benchmarks/bench_batch.py                                   # CPU, 1 vs 2 workers
    python3 benchmarks/bench_batch.py --clips 16 --workers-list 1,2
    python3 benchmarks/bench_batch.py --address auto --weights /models/actionmesh --clips-dir /data/clips \\
        --gpus-per-worker 1 --workers-list 1,2,4,8 --device cuda --fast
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _synthetic_clips(folder: Path, count: int, frames: int, size: int) -> list:
    from PIL import Image

    clips = []
    for c in range(count):
        clip = folder / f"clip{c:03d}"
        clip.mkdir(parents=True)
        colour = np.random.default_rng(c).integers(30, 230, 3)
        for k in range(frames):
            image = np.zeros((size, size, 4), np.uint8)
            x = size // 6 + k
            image[size // 4:size // 4 * 3, x:x + size // 2, :3] = colour
            image[size // 4:size // 4 * 3, x:x + size // 2, 3] = 255
            Image.fromarray(image).save(clip / f"{k:03d}.png")
        clips.append(clip)
    return clips


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="weights root (default: tiny random weights made in a temp folder)")
    parser.add_argument("--clips-dir", help="a folder of clips (default: synthetic clips)")
    parser.add_argument("--clips", type=int, default=8, help="synthetic clips (default 8)")
    parser.add_argument("--frames", type=int, default=8, help="frames per synthetic clip (default 8)")
    parser.add_argument("--size", type=int, default=64, help="synthetic frame side in pixels (default 64)")
    parser.add_argument("--no-mesh", action="store_true", help="let TripoSG make the anchor (default: an icosphere)")
    parser.add_argument("--workers-list", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--address", help="Ray cluster address (default: a local Ray on this machine)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--gpus-per-worker", type=float)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=4, help="stage I steps (default 4)")
    parser.add_argument("--fast", action="store_true", help="the fast preset (15/50 steps) instead of --steps")
    parser.add_argument("--octree-depth", type=int, default=5)
    parser.add_argument("--refine-depth", type=int, default=6)
    args = parser.parse_args(argv)

    import ray
    import trimesh

    from actionmesh_core.batch import BatchSettings, ClipSpec, RayOptions, read_inputs, run_batch
    from actionmesh_core.pipeline import PipelineConfig
    from actionmesh_core.weights import make_tiny_weights

    counts = [int(n) for n in args.workers_list.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        weights = Path(args.weights) if args.weights else make_tiny_weights(tmp / "weights")
        mesh = None
        if not args.no_mesh:
            mesh = tmp / "sphere.ply"
            trimesh.creation.icosphere(3).export(str(mesh))
        if args.clips_dir:
            clips = read_inputs([args.clips_dir])
            clips = [ClipSpec(c.name, c.frames, mesh=c.mesh or mesh, options=c.options) for c in clips]
        else:
            clips = [ClipSpec(p.name, p, mesh=mesh) for p in _synthetic_clips(tmp / "clips", args.clips, args.frames,
                                                                           args.size)]
        config = PipelineConfig(device=args.device, steps=args.steps, octree_depth=args.octree_depth,
                                refine_depth=args.refine_depth, stage0_steps=50)
        if args.fast:
            config = PipelineConfig(device=args.device, octree_depth=args.octree_depth,
                                    refine_depth=args.refine_depth).fast()
        t0 = time.perf_counter()
        if args.address:
            ray.init(address=args.address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(counts) * max(1, int(args.cpus_per_worker)), include_dashboard=False,
                     log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        ray_start = time.perf_counter() - t0
        results = []
        try:
            for n in counts:
                settings = BatchSettings(weights=weights, out_dir=tmp / f"out_{n}", config=config, force=True)
                options = RayOptions(address=args.address, workers=n, cpus_per_worker=args.cpus_per_worker,
                                     gpus_per_worker=args.gpus_per_worker)
                summary = run_batch(clips, settings, engine="ray", ray_options=options, progress=False)
                done = summary.counts.get("done", 0)
                if done != len(clips):
                    print(f"warning: {len(clips) - done} clips did not finish with {n} workers: {summary.counts}")
                busy = sum(r.get("total_seconds") or 0.0 for r in summary.rows)
                results.append((n, summary.seconds, 60.0 * done / summary.seconds, busy / max(done, 1)))
        finally:
            ray.shutdown()

    print(f"# bench_batch: {len(clips)} clips x {args.frames} frames, device {args.device}, "
          f"{os.cpu_count()} CPU cores on this machine ({platform.processor() or platform.machine()}), "
          f"Ray start {ray_start:.1f}s (not counted)")
    print(f"{'workers':>7}  {'wall s':>8}  {'clips/min':>9}  {'s/clip in worker':>16}  {'speed-up':>8}")
    base = results[0][2]
    for n, wall, rate, per_clip in results:
        print(f"{n:>7}  {wall:>8.1f}  {rate:>9.2f}  {per_clip:>16.2f}  {rate / base:>7.2f}x")
    if len(results) >= 2:
        print(f"ratio clips/min {results[-1][0]} vs {results[0][0]} workers: {results[-1][2] / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
