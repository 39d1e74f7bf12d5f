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

Usage: python3 benchmarks/bench_attention_chain.py [--device cuda] [--faces 40000] [--frames 16] [--stage2]
Prints one table row per stage (seconds, best of --repeat runs).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

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
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
