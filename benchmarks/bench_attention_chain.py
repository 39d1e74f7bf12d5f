"""Timing of the model-independent attention-chain stages at the paper's full size.

Full size (attention-chains app. C): anchor mesh ~20k vertices (40k faces),
1000 landmarks, N = 2048 tokens, 16 frames, candidate surface points per frame
~20k, k = 120 geodesic neighbours.  Attention matrices are synthetic (random
softmax rows); only the cost is measured, not the quality.  The paper's Table 3
reports, on an H100: FPS landmarks 0.46 s, correspondence 0.16 s, geodesic
animation 0.005-0.8 s; ActionMesh stage II ~15 s (learned decoder).  With
``--stage2`` (default on CUDA) the same run also times stage II decoding of the
same anchor mesh with a random-weight autoencoder at the released size (width
1024, 16+1 layers, 8 heads; bf16 on CUDA), so the two decoding modes are
compared side by side; ``--stage2-width``/``--stage2-layers`` shrink it for a
CPU ratio.

``--compare-candidates`` compares the chain's candidate surface points before and after issue #23 on the
same inputs: *old* = every frame meshed with the narrow-band extractor at 2^8 cells (depth 5 -> 8) and 20k
random mesh vertices kept, *new* = the grid-edge crossings of each frame's band at 2^7 cells
(``capture._candidate_points``).  Two cases: a synthetic clip (an ellipsoid moving rigidly, analytic per-frame
SDFs, attention built from token positions that move with it: ground truth known) and the tiny random
weights on the davis_camel clip (no ground truth: old vs new).  Printed: landmark track and final vertex
errors (synthetic) or differences (tiny), candidate counts, field points, seconds.

``--candidates-cost`` measures the candidates' cost before and after they came from each frame's own band
(2026-12-04 follow-up of issue #23), on the window latents of the tiny weights' davis_camel run (16 frames):
*before* = one band of the window's 16 fields (``sdf_surface_points`` batched, as ``capture._candidate_points``
was), *after* = ``capture._candidate_points``; field evaluations, seconds (best of ``--repeat``), peak resident
memory of each in a forked child, and how far the candidates differ; then the accelerator's largest query
activation per chunk at the released width, before (2^16 points x the batch) and after.

``--cli`` times the whole CLI run with the tiny weights, default mode (stage II) against attention-chain mode,
side by side (each run in its own process, the modes alternating, best of ``--repeat``, peak RSS from
``os.wait4``): 16 frames (davis_camel) and 64 frames (davis_camel played forwards and back, attention-chain
with ``--chain-reinforce``), with the CLI's own per-part seconds; ``--old-chain`` adds the attention-chain run
with the old candidates (16 frames).

Usage: python3 benchmarks/bench_attention_chain.py [--device cuda] [--faces 40000] [--frames 16] [--stage2]
       python3 benchmarks/bench_attention_chain.py --compare-candidates
       python3 benchmarks/bench_attention_chain.py --candidates-cost [--repeat 2] [--threads 2]
       python3 benchmarks/bench_attention_chain.py --cli [--old-chain] [--repeat 1] [--threads 2]
Prints one table row per stage (seconds, best of --repeat runs).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actionmesh_core.attention_chain import (AttentionChainConfig, animate_landmarks, attention_rows,  # noqa: E402
                                             geodesic_skinning_weights, rigid_skinning, select_landmarks,
                                             smooth_trajectories, track_landmarks)


def _mesh(faces: int):
    m = trimesh.creation.icosphere(subdivisions=6)
    v = np.asarray(m.vertices) * np.array([1.0, 0.7, 0.5])
    f = np.asarray(m.faces)
    try:
        import fast_simplification
        v, f = fast_simplification.simplify(v.astype(np.float32), f.astype(np.int32),
                                            target_reduction=1 - faces / len(f))
    except ImportError:
        pass
    return np.asarray(v, np.float64), np.asarray(f, np.int64)


def _timed(fn, repeat, sync):
    best, out = float("inf"), None
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--faces", type=int, default=40000)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--candidates", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--stage2", action=argparse.BooleanOptionalAction, default=None,
                    help="also time stage II decoding (default: on for CUDA)")
    ap.add_argument("--stage2-width", type=int, default=1024)
    ap.add_argument("--stage2-layers", type=int, default=16)
    ap.add_argument("--compare-candidates", action="store_true", help="old vs new candidate points (tracking quality)")
    ap.add_argument("--candidates-cost", action="store_true",
                    help="candidates before (one band of the window's fields) / after (a band per frame)")
    ap.add_argument("--cli", action="store_true", help="CLI run, default vs attention-chain mode, 16 and 64 frames")
    ap.add_argument("--old-chain", action="store_true", help="with --cli: also the attention-chain run with the old "
                    "candidates (16 frames)")
    ap.add_argument("--threads", type=int, default=2, help="with --cli / --compare-candidates: torch threads")
    ap.add_argument("--cli-frames", default="16,64", help="with --cli: clip lengths")
    args = ap.parse_args()
    if args.candidates_cost:
        print(f"torch {torch.__version__}, threads {args.threads}, cpus {os.cpu_count()}, load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        torch.set_num_threads(args.threads)
        candidates_cost(args.repeat)
        return
    if args.compare_candidates or args.cli:
        print(f"torch {torch.__version__}, threads {args.threads}, cpus {os.cpu_count()}, load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        if args.compare_candidates:
            torch.set_num_threads(args.threads)
            compare_candidates()
        if args.cli:
            bench_cli([int(x) for x in args.cli_frames.split(",")], args.repeat, args.threads, args.old_chain)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        return
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator(device="cpu").manual_seed(0)
    v, f = _mesh(args.faces)
    cfg = AttentionChainConfig()
    rows = []

    t, lm = _timed(lambda: select_landmarks(v, f, cfg.num_landmarks, cfg.curvature_alpha), args.repeat, sync)
    rows.append(("FPS landmarks (curvature boost)", t))
    n, num_t, num_l = args.tokens, args.frames, len(lm)

    # capture cost: anchor-token rows of one inflated self-attention layer (16 heads, D = 128)
    heads, dim = 16, 128
    qk = (torch.randn(1, heads, n, dim, generator=gen).to(dev),
          torch.randn(1, heads, num_t * (n + 1), dim, generator=gen).to(dev))
    t, _ = _timed(lambda: attention_rows(*qk, chunk=256), args.repeat, sync)
    rows.append((f"attention_rows: {n} x {num_t * (n + 1)} keys, {heads} heads", t))
    qk = None

    def soft(r, c):
        return torch.softmax(torch.randn(r, c, generator=gen) * 3, dim=1).to(dev)

    a_va_za = soft(num_l, n)
    a_za_zf = [soft(n, n) for _ in range(num_t)]
    a_vf_zf = [soft(args.candidates, n) for _ in range(num_t)]
    surf = [torch.randn(args.candidates, 3, generator=gen).to(dev) for _ in range(num_t)]
    t, tracks = _timed(lambda: track_landmarks(a_va_za, a_za_zf, a_vf_zf, surf, 0, v[lm], config=cfg),
                       args.repeat, sync)
    rows.append((f"chain correspondences ({num_t - 1} frames x {args.candidates} candidates)", t))

    rng = np.random.default_rng(0)
    traj = v[lm][None] + np.linspace(0, 0.2, num_t)[:, None, None] + rng.normal(0, 0.002, (num_t, num_l, 3))
    t, _ = _timed(lambda: smooth_trajectories(v[lm], traj, 0, sigma=1.5), args.repeat, sync)
    rows.append(("landmark smoothing", t))
    t, skin = _timed(lambda: geodesic_skinning_weights(v, f, lm, k=cfg.k_nn), args.repeat, sync)
    rows.append((f"geodesic k={cfg.k_nn} neighbours (Dijkstra)", t))
    t, pos = _timed(lambda: rigid_skinning(v, v[lm], traj, skin), args.repeat, sync)
    rows.append((f"rigid skinning ({num_t} frames, weighted Procrustes)", t))
    t, _ = _timed(lambda: smooth_trajectories(v, pos, 0, sigma=1.0), args.repeat, sync)
    rows.append(("final vertex smoothing", t))
    t, _ = _timed(lambda: animate_landmarks(v, f, lm, traj, 0, config=cfg), args.repeat, sync)
    rows.append(("animate_landmarks total (reject+smooth+skin+smooth)", t))

    chain_total = sum(sec for name, sec in rows if not name.startswith(("animate_landmarks", "landmark smoothing",
                                                                          "rigid", "final", "geodesic")))
    chain_total += next(sec for name, sec in rows if name.startswith("animate_landmarks"))
    rows.append(("attention-chain decoding total (excl. stage I, meshing)", chain_total))
    if args.stage2 if args.stage2 is not None else dev.type == "cuda":
        rows.append(_stage2_row(v, f, args, dev, sync))
        rows.append(("stage II / attention-chain time ratio", rows[-1][1] / chain_total))

    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"V={len(v)} F={len(f)} L={num_l} N={n} T={num_t} P_f={args.candidates}")
    print(f"{'stage':<62} {'seconds':>9}")
    print("-" * 72)
    for name, sec in rows:
        print(f"{name:<62} {sec:>9.3f}")


def _stage2_row(v, f, args, dev, sync):
    """Stage II decoding of the same mesh over T frames with a random autoencoder (released size by default)."""
    from actionmesh_core.models import TemporalAutoencoder
    from actionmesh_core.geometry.reference import query_normals
    from actionmesh_core.sampling.stage2 import decode_stage2

    torch.manual_seed(0)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    heads = max(1, args.stage2_width // 128)
    ae = TemporalAutoencoder(width=args.stage2_width, num_layers=args.stage2_layers, num_attention_heads=heads)
    ae = ae.to(dev, dtype).eval().keep_query_path_fp32()
    verts = torch.as_tensor(v, dtype=torch.float32)
    faces = torch.as_tensor(f, dtype=torch.long)
    query = torch.cat([verts, query_normals(verts, faces)], -1).to(dev)
    latents = torch.randn(args.frames, args.tokens, 64, device=dev)
    t, _ = _timed(lambda: decode_stage2(ae, latents, query, faces=faces), args.repeat, sync)
    return (f"stage II decode (width {args.stage2_width}, {args.stage2_layers}+1 layers, {args.frames} frames)", t)


# --------------------------------------------------------------------------- candidates, old vs new (issue #23)


def mesh_vertex_candidates(vae, latents, frames, skip, octree_depth, refine_depth, num_candidates, rng):
    """The candidates before issue #23: each frame meshed by the narrow-band extractor at 2^8 cells (depth 5 -> 8,
    no SDF bound, as it was), ``num_candidates`` random mesh vertices kept (same signature as
    ``capture._candidate_points``)."""
    from actionmesh_core.geometry.meshing import sdf_to_meshes

    dev = next(vae.parameters()).device
    meshes = sdf_to_meshes(vae.field_fn(latents.to(dev)), len(frames), octree_depth=5, refine_depth=8,
                           inside=vae.inside_sign, allow_empty=True, device=dev, sdf_bound=False)
    out = {}
    for f, mesh in zip(frames, meshes):
        pts = np.asarray(mesh.vertices, dtype=np.float32)
        if f != skip and len(pts) == 0:
            raise ValueError(f"frame {f}: its latent has no surface to match the anchor against")
        if len(pts) > num_candidates:
            pts = pts[np.sort(rng.choice(len(pts), num_candidates, replace=False))]
        out[f] = torch.from_numpy(pts).to(dev)
    return out


class _AnalyticFields(torch.nn.Module):
    """A stand-in for the VAE in ``capture._candidate_points``: ``field_fn(latents)`` -> the analytic SDFs of
    the frames the "latents" index (latents (F, 1, 1) hold frame numbers)."""

    inside_sign = "negative"

    def __init__(self, sdf_of_frame):
        super().__init__()
        self.sdf_of_frame = sdf_of_frame
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def field_fn(self, latents):
        frames = [int(x) for x in latents.reshape(-1).tolist()]
        return lambda p: torch.stack([self.sdf_of_frame(f, p) for f in frames])


def _synthetic_clip(num_frames=16, tokens=256):
    """An ellipsoid moving rigidly: per-frame analytic SDF, anchor mesh, landmark/candidate attention built from
    token positions that move with it (each point attends to nearby tokens), identity token transport."""
    from scipy.spatial.transform import Rotation

    axes = torch.tensor([0.6, 0.4, 0.3], dtype=torch.float64)
    rot = [torch.from_numpy(Rotation.from_rotvec(f * np.array([0.02, 0.05, 0.01])).as_matrix()) for f in range(num_frames)]
    shift = [torch.tensor([0.01 * f, 0.0, 0.02 * f], dtype=torch.float64) for f in range(num_frames)]

    def sdf(f, p):  # ellipsoid "distance" (exact on the axes, close to an SDF near the surface)
        q = (p.double() - shift[f]) @ rot[f]
        k0 = (q / axes).norm(dim=-1)
        k1 = (q / axes**2).norm(dim=-1)
        return (k0 * (k0 - 1.0) / k1.clamp_min(1e-12)).float()

    def move(f, x):
        return x @ rot[f].T + shift[f]

    mesh = trimesh.creation.icosphere(subdivisions=5)
    verts = np.asarray(mesh.vertices) * axes.numpy()
    i = np.arange(tokens) + 0.5
    phi, theta = np.arccos(1 - 2 * i / tokens), np.pi * (1 + 5 ** 0.5) * i
    tok = torch.from_numpy(np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)) * axes
    width = 0.5 * float(np.sqrt(4 * np.pi * 0.42 ** 2 / tokens))  # half a token spacing (mean radius ~0.42)

    def attention(x, f):  # (P, 3) points of frame f -> (P, N) attention to frame f's tokens
        d2 = torch.cdist(torch.as_tensor(x, dtype=torch.float64), move(f, tok)) ** 2
        return torch.softmax(-d2 / (2 * width ** 2), dim=1).float()

    transport = (0.9 * torch.eye(tokens) + 0.1 / tokens).float()
    return sdf, move, verts, np.asarray(mesh.faces), attention, transport


def _track_with(candidates, sdf, move, verts, faces, attention, transport, num_frames=16):
    from actionmesh_core.attention_chain import plan_landmarks

    cfg = AttentionChainConfig(num_landmarks=300)
    lm = plan_landmarks(verts, faces, cfg)
    cand = {f: candidates[f].cpu() for f in range(num_frames)}
    tracks = track_landmarks(attention(verts[lm], 0), [transport] * num_frames,
                             lambda f: attention(cand[f], f), [cand[f] for f in range(num_frames)], 0, verts[lm],
                             config=cfg)
    anim = animate_landmarks(verts, faces, lm, tracks.positions, 0, confidence=tracks.confidence, config=cfg)
    gt_lm = np.stack([move(f, torch.from_numpy(verts[lm])).numpy() for f in range(num_frames)])
    gt = np.stack([move(f, torch.from_numpy(verts)).numpy() for f in range(num_frames)])
    return tracks.positions, anim.positions, gt_lm, gt


def compare_candidates():
    """Tracking quality with the old and the new candidate points, same inputs (see the module docstring)."""
    from actionmesh_core.attention_chain import capture

    rows = []
    # ---- synthetic clip: ground truth known
    sdf, move, verts, faces, attention, transport = _synthetic_clip()
    stand_in = _AnalyticFields(sdf)
    frames = list(range(16))
    latents = torch.arange(16, dtype=torch.float32).reshape(16, 1, 1)
    diag = float(np.linalg.norm(verts.max(0) - verts.min(0)))
    results = {}
    for label, fn in (("old (mesh vertices, 2^8)", mesh_vertex_candidates),
                      ("new (edge crossings, 2^7)", capture._candidate_points)):
        t0 = time.perf_counter()
        cands = fn(stand_in, latents, frames, 0, capture.CANDIDATE_COARSE_DEPTH, capture.CANDIDATE_DEPTH, 20000,
                   np.random.default_rng(0))
        secs = time.perf_counter() - t0
        raw, final, gt_lm, gt = _track_with(cands, sdf, move, verts, faces, attention, transport)
        results[label] = (raw, final)
        err_lm = np.linalg.norm(raw - gt_lm, axis=-1)[1:]
        err_v = np.linalg.norm(final - gt, axis=-1)[1:]
        rows.append(("synthetic (rigid ellipsoid, 16 frames)", label, int(np.mean([len(c) for c in cands.values()])),
                     secs, f"{err_lm.mean() / diag:.2e} / {err_lm.max() / diag:.2e}",
                     f"{err_v.mean() / diag:.2e} / {err_v.max() / diag:.2e}"))
        print("  done", rows[-1], flush=True)
    (raw_o, fin_o), (raw_n, fin_n) = results.values()
    d_lm, d_v = np.linalg.norm(raw_o - raw_n, axis=-1)[1:], np.linalg.norm(fin_o - fin_n, axis=-1)[1:]
    rows.append(("synthetic", "old vs new", "", float("nan"), f"{d_lm.mean() / diag:.2e} / {d_lm.max() / diag:.2e}",
                 f"{d_v.mean() / diag:.2e} / {d_v.max() / diag:.2e}"))
    # ---- tiny random weights on davis_camel: old vs new
    rows += _compare_tiny(capture)
    print("\n| clip | candidates | candidates per frame | candidate seconds | landmark tracks: mean / max "
          "(fraction of the bbox diagonal) | final vertices: mean / max |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {'' if r[3] != r[3] else f'{r[3]:.2f}'} | {r[4]} | {r[5]} |")
    print("\n(synthetic rows: error against the ground-truth motion; 'old vs new' rows: distance between the two runs)")


def _tiny_inputs(tmp: Path):
    """Tiny weights, davis_camel: the denoiser, VAE, DINOv2 features, anchor latent and cleaned anchor mesh exactly
    as the CLI's attention-chain run hands them to ``attention_chain_decode`` (captured from a pipeline run)."""
    from actionmesh_core.attention_chain import capture
    from actionmesh_core.pipeline import ActionMeshPipeline, PipelineConfig
    from actionmesh_core.weights import make_tiny_weights

    class _Got(Exception):
        pass

    got = {}
    real = capture.attention_chain_decode

    def grab(denoiser, vae, context, anchor_latent, vertices, faces, anchor_frame, **kw):
        got.update(args=(denoiser, vae, context, anchor_latent, np.asarray(vertices), np.asarray(faces), anchor_frame))
        raise _Got

    weights = make_tiny_weights(tmp / "w", seed=0)
    pipe = ActionMeshPipeline(weights, PipelineConfig(device="cpu", mode="attention-chain"), progress=lambda info: None)
    capture.attention_chain_decode = grab
    try:
        pipe.run(_frames_dir())
    except _Got:
        pass
    finally:
        capture.attention_chain_decode = real
    return got["args"]


def candidates_cost(repeat: int) -> None:
    """Candidates before / after they came from each frame's own band (see the module docstring)."""
    from actionmesh_core import perf
    from actionmesh_core.attention_chain import capture
    import actionmesh_core.geometry.meshing as meshing
    from bench_meshing import peak_rss_of

    calls = []
    real = capture._candidate_points

    def grab(vae, latents, frames, skip, od, rd, nc, rng):
        calls.append((latents.detach().clone(), list(frames), skip, od, rd, nc))
        return real(vae, latents, frames, skip, od, rd, nc, rng)

    with tempfile.TemporaryDirectory() as tmp:
        den, vae, ctx, latent, verts, faces, anchor_frame = _tiny_inputs(Path(tmp))
        capture._candidate_points = grab
        try:
            capture.attention_chain_decode(den, vae, ctx, latent, verts, faces, anchor_frame)
        finally:
            capture._candidate_points = real
    lat, frames, skip, od, rd, nc = calls[0]
    seen = []
    real_points = meshing.sdf_surface_points

    def counted(*a, **k):
        k["stats"] = st = {}
        out = real_points(*a, **k)
        seen.append((a[1], st))
        return out

    def before():  # capture._candidate_points as it was: one batched band, then each frame's random subset
        rng = np.random.default_rng(0)
        out = []
        for pts in meshing.sdf_surface_points(vae.field_fn(lat), len(frames), octree_depth=od, refine_depth=rd,
                                              inside=vae.inside_sign, min_points=max(1, nc // 2)):
            if len(pts) > nc:
                pts = pts[torch.as_tensor(np.sort(rng.choice(len(pts), nc, replace=False)))]
            out.append(pts)
        return out

    def after():
        pts = real(vae, lat, frames, skip, od, rd, nc, np.random.default_rng(0))
        return [pts[f] for f in frames]

    rows, outs = [], {}
    for label, fn in (("before: one band of the window's 16 fields", before),
                      ("after: one band per frame", after)):
        meshing.sdf_surface_points = counted
        try:
            seen.clear()
            best = float("inf")
            for _ in range(max(1, repeat)):
                t0 = time.perf_counter()
                outs[label] = fn()
                best = min(best, time.perf_counter() - t0)
            runs = seen[-len(seen) // max(1, repeat):]
        finally:
            meshing.sdf_surface_points = real_points
        evals = sum(f * st["points_evaluated"] for f, st in runs)
        depths = sorted({st["depth"] for _, st in runs})
        rows.append((label, evals, depths, best, peak_rss_of(fn)))
    (_, a), (_, b) = outs.items()
    same = all(x.shape == y.shape for x, y in zip(a, b))
    diff = max(float((x - y).abs().max()) if len(x) else 0.0 for x, y in zip(a, b)) if same else float("nan")
    print(f"\ntiny weights, davis_camel: the chain's window of {len(frames)} frames, candidates {od} -> {rd} "
          f"(a band ends at a coarser level once its frame(s) have {nc // 2} crossings)\n")
    print("| candidates | field evaluations (points x fields) | depth reached | seconds (best of "
          f"{max(1, repeat)}) | peak RSS above start (MB) |")
    print("|---|---|---|---|---|")
    for label, evals, depths, secs, peak in rows:
        print(f"| {label} | {evals:,} | {depths} | {secs:.2f} | {peak:.0f} |")
    print(f"\nsame candidates: {'yes' if same else 'no'} (counts per frame equal; largest coordinate difference "
          f"{diff:.2e} model units, float32 rounding of a batch of 16 vs 1; candidates per frame "
          f"{int(np.mean([len(x) for x in b])):,}, drawn from the same crossings with the same generator)")
    width = 4 * 1024  # the released VAE decoder's feed-forward width
    for batch in (len(frames), 1):
        old, new = 2**16, perf.query_chunk_points("cuda", batch * width)
        print(f"accelerator, released width, {batch} field(s) per call: largest query activation per chunk "
              f"{old * batch * width * 4 / 2**30:.2f} GiB before (2^16 points), "
              f"{new * batch * width * 4 / 2**30:.2f} GiB after ({new} points)")


def _compare_tiny(capture):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        den, vae, ctx, latent, verts, faces, anchor_frame = _tiny_inputs(Path(tmp))
        diag = float(np.linalg.norm(verts.max(0) - verts.min(0)))
        real = capture._candidate_points
        out = {}
        for label, fn in (("old (mesh vertices, 2^8)", mesh_vertex_candidates), ("new (edge crossings, 2^7)", real)):
            counts = []

            def counted(*a, _fn=fn, **k):
                c = _fn(*a, **k)
                counts.extend(len(x) for x in c.values())
                return c

            capture._candidate_points = counted
            try:
                res = capture.attention_chain_decode(den, vae, ctx, latent, verts, faces, anchor_frame)
            finally:
                capture._candidate_points = real
            out[label] = res
            rows.append(("tiny weights, davis_camel (16 frames)", label, int(np.mean(counts)), res.timings["candidates"],
                         "", ""))
            print("  done", rows[-1], res.timings, flush=True)
    old, new = out.values()
    d_lm = np.linalg.norm(old.animation.raw_landmarks - new.animation.raw_landmarks, axis=-1)[1:]
    d_v = np.linalg.norm(old.animation.positions - new.animation.positions, axis=-1)[1:]
    travel = np.linalg.norm(new.animation.positions - verts[None], axis=-1)[1:]
    rows.append(("tiny weights", "old vs new", "", float("nan"), f"{d_lm.mean() / diag:.2e} / {d_lm.max() / diag:.2e}",
                 f"{d_v.mean() / diag:.2e} / {d_v.max() / diag:.2e} (vertex travel {travel.mean() / diag:.2e} / "
                 f"{travel.max() / diag:.2e})"))
    return rows


def _frames_dir() -> str:
    root = Path(__file__).resolve().parents[1]
    fixtures = os.environ.get("ACTIONMESH_FIXTURES_DIR") or next(
        (str(p / "shared" / "fixtures") for p in (root.parent, root.parent.parent) if (p / "shared").is_dir()),
        str(root / "tests" / "data" / "fixtures"))
    return str(Path(fixtures) / "davis_camel")


# --------------------------------------------------------------------------- CLI: default vs attention-chain mode

_CLI = ("import sys, runpy; sys.argv = ['actionmesh_core'] + {args!r}; {prelude}"
        "runpy.run_module('actionmesh_core', run_name='__main__')")
_OLD_PRELUDE = ("sys.path.insert(0, {bench!r}); import bench_attention_chain as b; "
                "import actionmesh_core.attention_chain.capture as c; c._candidate_points = b.mesh_vertex_candidates; ")


def _long_clip(src: str, dst: Path, count: int) -> str:
    """``count`` frames of ``src`` played forwards then backwards (ping-pong), as PNG links in ``dst``."""
    files = sorted(Path(src).glob("*.png"))
    cycle = files + files[-2:0:-1]
    dst.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        os.symlink(cycle[i % len(cycle)], dst / f"{i:04d}.png")
    return str(dst)


def _run_measured(cmd, env):
    """Run ``cmd`` -> (wall s, peak RSS MB of that process, rc, stdout, stderr)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), out.read(), err.read()


def _timings(line: str) -> dict:
    import re

    inner = line[line.rfind("(") + 1:line.rfind(")")]
    return {k.strip(): float(v) for k, v in re.findall(r"([A-Za-z0-9+ -]+?) ([0-9.]+)s", inner.replace(";", ","))}


def bench_cli(lengths, repeat: int, threads: int, old_chain: bool):
    """Default vs attention-chain CLI runs with the tiny weights, side by side (see the module docstring)."""
    from actionmesh_core.weights import make_tiny_weights

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = make_tiny_weights(tmp / "w", seed=0)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(root))
        table = []
        for count in lengths:
            frames = _frames_dir() if count == 16 else _long_clip(_frames_dir(), tmp / f"clip{count}", count)
            base = ["video-to-4d", frames, "--weights", str(weights), "--device", "cpu"]
            modes = [("default (stage II)", base + ["--out", str(tmp / "d.glb")], ""),
                     ("attention-chain" + (" + reinforce" if count > 16 else ""),
                      base + ["--out", str(tmp / "c.glb"), "--mode", "attention-chain"]
                      + (["--chain-reinforce"] if count > 16 else []), "")]
            if old_chain and count == 16:
                modes.append(("attention-chain, old candidates", modes[1][1],
                              _OLD_PRELUDE.format(bench=str(root / "benchmarks"))))
            best = {}
            for r in range(repeat):  # the modes alternate; each keeps its fastest run
                for label, args, prelude in (modes if r % 2 == 0 else modes[::-1]):
                    wall, rss, rc, out, err = _run_measured(
                        [sys.executable, "-c", _CLI.format(args=args, prelude=prelude)], env)
                    if rc:
                        print(out[-2000:], err[-3000:])
                        raise SystemExit(f"CLI run failed ({label}, {count} frames)")
                    line = [ln for ln in out.splitlines() if ln.startswith("wrote")][-1]
                    print(f"  {count} frames, {label}: {wall:.1f} s, {rss:.0f} MB: {line}", flush=True)
                    if label not in best or wall < best[label][0]:
                        best[label] = (wall, rss, _timings(line))
            for label, (wall, rss, t) in best.items():
                table.append((count, label, wall, rss, t))
        cols = ("stage0", "dinov2", "stage1", "stage2", "stage1+chain", "chain stage1", "chain candidates",
                "chain correspondences", "chain skinning", "chain reinforcement")
        print("\n| frames | mode | wall (s) | peak RSS (MB) | decoding (s): stage II or candidates + "
              "correspondences + skinning | " + " | ".join(cols) + " |")
        print("|---|---|---|---|---|" + "---|" * len(cols))
        for count, label, wall, rss, t in table:
            decoding = t.get("stage2", sum(t.get(f"chain {k}", 0.0) for k in ("candidates", "correspondences",
                                                                              "skinning")))
            print(f"| {count} | {label} | {wall:.1f} | {rss:.0f} | {decoding:.1f} | "
                  + " | ".join(f"{t[c]:.1f}" if c in t else "-" for c in cols) + " |")


if __name__ == "__main__":
    main()
