#!/usr/bin/env python3
"""The one prepared GPU check (issue #23): the parts ``benchmarks/gpu_check.sh`` runs, each in its own process.

Every part appends JSON records to ``OUT/results.jsonl`` as soon as a figure exists (``OUT`` = ``$OUT`` or
``benchmarks/gpu_out``), and ``table`` rebuilds the dated markdown table ``OUT/gpu_table.md`` from them, so a
part killed by its time limit still leaves the figures it had.

Parts:

- ``env``: device, versions, whether warp-lang imports (``warp: unavailable`` otherwise: marching cubes then
  runs with scikit-image on the CPU, the library's fallback).
- ``anchor``: stage 0 of the 16-frame clip once for every preset, at the released sizes (random weights, bf16
  models, fp32 VAE, PyTorch SDPA unless flash-attn is installed): DINOv2, stage 0 sampling at 100 and at 50
  steps, the anchor meshing of the 100-step latent (narrow band 2^6 -> 2^9, the library's defaults: fp32 field,
  warp marching cubes), clean-up, peak memory; saves the latent, the cleaned anchor mesh and the centred VAE
  output bias to ``OUT/anchor.pt``.  A warm-up first (kernel selection, warp's kernel build), in which the random
  VAE's output bias is centred on the random models' latents so every frame's field has a surface (as the tiny
  weights do).
- ``clip --preset P``: one preset after stage 0, in its own process (``gpu_check.sh`` gives each its own time
  limit): default (stage I 30 steps + stage II), fast (15 + stage II) or attention-chain (4 steps, candidates,
  correspondences, skinning), on the saved anchor (the same random weights: same seed); the total adds the
  anchor part's DINOv2, stage 0 at the preset's step count (fast: 50), meshing and clean-up, the peak is the
  larger of the two parts' (all models resident in both).  A warm-up of the preset's own stages first; a record
  after every stage, so a preset stopped by its limit keeps what it finished.  Without a saved anchor the preset
  runs stage 0 itself.
- ``meshing``: the narrow band on the GPU: analytic fields (sphere r = 0.5, the thin-part field of
  ``bench_meshing.py``) at the defaults (fp32 field, warp) against a dense 513^3 pass on the GPU (same faces?)
  and a dense 257^3 scikit-image pass (the CPU reference of the CPU tables); the released-size VAE field: the
  anchor extraction fp32+warp (the default) vs bf16+warp vs fp32+scikit-image, and the chain's candidate points of 16
  frames (as the chain computes them: one band per frame; and one band of the 16 fields, as on 2026-12-04), each
  with its peak memory.
- ``table``: the markdown table (``--to-results`` also appends it to ``benchmarks/RESULTS.md``).

``--cpu`` runs the same code at tiny sizes on the CPU (a dry run that proves the script end to end).
Targets printed beside the figures (H100, per 16-frame clip): default <= 35 s, fast <= 20 s,
attention-chain <= 6 s, peak <= 24 GB.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TARGETS = {"default": ("total s", 35.0), "fast": ("total s", 20.0), "attention-chain": ("total s", 6.0)}
PEAK_TARGET_GB = 24.0
PRESETS = ("default", "fast", "attention-chain")  # default first: the 2026-12-04 run ran out of time on it


def out_dir() -> Path:
    path = Path(os.environ.get("OUT") or ROOT / "benchmarks" / "gpu_out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def record(part: str, **fields) -> None:
    """Append one result record (flushed at once: survives a later kill)."""
    fields = {"part": part, **fields}
    with open(out_dir() / "results.jsonl", "a") as fh:
        fh.write(json.dumps(fields) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    print("RESULT", json.dumps(fields), flush=True)


def _device(cpu: bool):
    import torch

    if cpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu for the dry run")
    return torch.device("cuda")


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class _Timer:
    def __init__(self, dev):
        self.dev = dev
        self.parts = {}

    def __call__(self, name, fn, *a, **k):
        print(f"{time.strftime('%T')}   {name}", flush=True)
        _sync(self.dev)
        t0 = time.perf_counter()
        out = fn(*a, **k)
        _sync(self.dev)
        self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - t0
        return out


# --------------------------------------------------------------------------- env


def part_env(args) -> None:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": "cpu (dry run)" if args.cpu else None, "date": datetime.datetime.now().isoformat(" ", "seconds")}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB"
        info["device"] = info["device"] or info["gpu"]
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except Exception as exc:  # pragma: no cover - host
        info["transformers"] = f"unavailable ({exc})"
    from actionmesh_core.geometry.meshing import available_backends
    from actionmesh_core.models.attention import flash_attention_available

    try:
        import warp

        info["warp"] = warp.__version__ if "warp" in available_backends() else f"{warp.__version__} (too old)"
    except Exception:
        info["warp"] = "unavailable"
    for mod in ("trimesh", "fast_simplification", "skimage", "scipy", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = "unavailable"
    info["flash_attn"] = "yes" if flash_attention_available() else "no (SDPA)"
    record("env", **info)


# --------------------------------------------------------------------------- clip


def _sizes(cpu: bool):
    from bench_pipeline import released_sizes, tiny_sizes

    sz = released_sizes()
    if cpu:  # the dry run: tiny models, the real clip length and steps cut to a few
        sz = dataclasses.replace(tiny_sizes(), frames=8, vertices=2000, grid=33,
                                 steps0={"default": 3, "fast": 2}, steps1={"default": 3, "fast": 2})
    return sz


def _smooth_vae(vae, keep_freqs: int = 2) -> None:
    """Random VAE with a realistic surface: zero the query projection's columns of the Fourier features above
    the ``keep_freqs`` lowest frequencies (per-point cost unchanged, the field becomes a few smooth blobs instead
    of a box-filling high-frequency surface whose band would cover most of the grid)."""
    import torch

    nf = vae.config["embed_frequency"]
    cols = [3 + block * 3 * nf + axis * nf + k for block in (0, 1) for axis in range(3) for k in range(keep_freqs, nf)]
    with torch.no_grad():
        vae.decoder.proj_query.weight[:, cols] = 0.0


def _centre_vae(vae, latents) -> None:
    """Shift the random VAE's output bias so the median field value of ``latents`` (B, N, C) on a 17^3 probe is 0
    (every frame's field then has a surface, as the tiny weights' calibration does)."""
    import torch

    with torch.no_grad():
        g = torch.linspace(-0.9, 0.9, 17, device=latents.device)
        pts = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        vals = vae.field_fn(latents.float())(pts)
        vae.decoder.proj_out.bias += vals.float().median().to(vae.decoder.proj_out.bias.dtype)


def _anchor_mesh(vae, latent, depth, dev, timer, clean: bool = True):
    """Stage 0's meshing + clean-up, as the pipeline runs them."""
    import trimesh

    from actionmesh_core.geometry.meshing import sdf_to_meshes

    mesh = timer("meshing", lambda: sdf_to_meshes(vae.field_fn(latent.float()), 1, octree_depth=depth - 3,
                                                   refine_depth=depth, inside=vae.inside_sign, device=dev,
                                                   allow_empty=True)[0])
    stats = dict(mesh.metadata.get("meshing", {}))
    if len(mesh.faces) == 0:
        mesh = trimesh.creation.icosphere(5, radius=0.5)
        stats["note"] = "empty anchor field: icosphere stand-in"
    if not clean:
        return mesh, stats
    try:
        import fast_simplification  # noqa: F401

        from actionmesh_core.geometry.cleanup import clean_mesh

        mesh = timer("clean-up", clean_mesh, mesh, target_faces=40000)
    except ImportError:
        stats["note"] = "fast-simplification unavailable: anchor mesh not decimated"
    return mesh, stats


def anchor_path() -> Path:
    """The anchor that ``anchor`` leaves for the presets (latent, cleaned mesh, the centred VAE's output bias)."""
    return out_dir() / "anchor.pt"


def _setup(args):
    """The device, sizes, random-weight models (same seed in every process: the same weights) and inputs."""
    import torch

    from bench_pipeline import build_models, synthetic_inputs

    dev = _device(args.cpu)
    sz = _sizes(args.cpu)
    t0 = time.perf_counter()
    models = build_models(sz, dev, torch.bfloat16, vae_dtype=torch.float32)  # bf16 models as on the GPU
    _smooth_vae(models.vae)
    inputs = synthetic_inputs(sz, dev)
    _sync(dev)
    return dev, sz, models, inputs, time.perf_counter() - t0


def _steps0(sz, preset: str) -> int:
    return sz.steps0["fast" if preset == "fast" else "default"]  # the chain: the CLI's default stage 0


def part_anchor(args) -> None:
    """Stage 0 once for every preset: DINOv2, sampling at the default and the fast step counts, the released-size
    anchor meshing (narrow band 2^6 -> 2^9, the library's defaults) and clean-up; saves what the presets need."""
    import torch

    from actionmesh_core import perf
    from actionmesh_core.sampling.stage1 import sample_stage1
    from actionmesh_core.sampling.triposg import sample_image_to_3d

    dev, sz, models, inputs, built = _setup(args)
    depth = int(round(math.log2(sz.grid - 1)))
    record("anchor", event="models built", seconds=round(built, 1), sizes=sz.name, frames=sz.frames,
           tokens=sz.tokens, meshing_depth=depth,
           resident_gb=None if dev.type != "cuda" else round(torch.cuda.memory_allocated(dev) / 2**30, 2))
    t0 = time.perf_counter()
    with torch.no_grad():  # warm-up (kernels, warp's kernel build) and the random VAE centred on the random latents
        ctx = models.dino(inputs["images"])
        latent = sample_image_to_3d(models.dit, ctx[:1], steps=1, seed=0, num_tokens=sz.tokens)
        early = sample_stage1(models.denoiser, ctx, {0: latent[0]}, steps=4, seed=0)
        _centre_vae(models.vae, torch.cat([latent, early]).to(dev))
        _anchor_mesh(models.vae, latent, min(depth, 6), dev, _Timer(dev), clean=False)
    record("anchor", event="warm-up", seconds=round(time.perf_counter() - t0, 1))
    timer = _Timer(dev)
    perf.reset_peak_memory(dev)
    with torch.no_grad():
        ctx = timer("dinov2", models.dino, inputs["images"])
        latents = {}
        for preset in ("fast", "default"):  # the default's latent is meshed: the one the presets share
            steps = _steps0(sz, preset)
            latents[steps] = timer(f"stage0 sampling {steps}", sample_image_to_3d, models.dit, ctx[:1], steps=steps,
                                   seed=0, num_tokens=sz.tokens)
        latent = latents[_steps0(sz, "default")]
        mesh, mstats = _anchor_mesh(models.vae, latent, depth, dev, timer)
    peak = perf.peak_memory(dev)
    tmp = anchor_path().with_suffix(".pt.tmp")
    torch.save({"latent": latent.cpu(), "vertices": torch.as_tensor(mesh.vertices, dtype=torch.float32),
                "faces": torch.as_tensor(mesh.faces, dtype=torch.long),
                "vae_out_bias": models.vae.decoder.proj_out.bias.detach().cpu()}, tmp)
    os.replace(tmp, anchor_path())
    record("anchor", parts={k: round(v, 2) for k, v in timer.parts.items()}, steps0=sorted(latents),
           peak_gb=None if peak is None else round(peak / 2**30, 2), anchor_vertices=int(len(mesh.vertices)),
           anchor_points_evaluated=mstats.get("points_evaluated"), anchor_backend=mstats.get("backend"),
           anchor_precision=mstats.get("precision"), **({"note": mstats["note"]} if "note" in mstats else {}))


def _shared_parts(preset: str, sz):
    """The anchor part's figures a preset counts as its own (stage 0 at its step count, the shared meshing)."""
    path = out_dir() / "results.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    rec = next((r for r in reversed(recs) if r["part"] == "anchor" and "parts" in r), None)
    if rec is None:
        return None, None
    p = rec["parts"]
    steps = _steps0(sz, preset)
    parts = {"dinov2": p.get("dinov2", 0.0), "stage0 sampling": p.get(f"stage0 sampling {steps}", 0.0),
             "meshing": p.get("meshing", 0.0), "clean-up": p.get("clean-up", 0.0)}
    return parts, rec


def part_clip(args) -> None:
    """One preset of the 16-frame clip after stage 0 (its own process and time limit, ``gpu_check.sh``), on the
    anchor the ``anchor`` part saved; stage 0's figures are that part's (measured once).  Without a saved anchor
    (that part failed) the preset runs stage 0 itself.  A record is written after every stage (a preset killed by
    its limit keeps the stages it finished)."""
    import numpy as np
    import torch

    from actionmesh_core import perf
    from actionmesh_core.attention_chain.capture import attention_chain_decode
    from actionmesh_core.geometry.reference import query_normals
    from actionmesh_core.sampling.stage1 import sample_stage1
    from actionmesh_core.sampling.stage2 import decode_stage2
    from actionmesh_core.sampling.triposg import sample_image_to_3d

    preset = args.preset
    dev, sz, models, inputs, built = _setup(args)
    dtype = torch.bfloat16
    depth = int(round(math.log2(sz.grid - 1)))
    saved = torch.load(anchor_path()) if anchor_path().exists() else None
    shared, anchor_rec = _shared_parts(preset, sz) if saved is not None else (None, None)
    chain_depths = dict(octree_depth=3, refine_depth=5) if args.cpu else {}  # dry run: a coarser grid

    def post_anchor(ctx, latent, verts, faces, timer, warm: bool):
        if preset == "attention-chain":  # 4 steps as published: the VAE is centred on 4-step stage I latents
            kw = dict(octree_depth=3, refine_depth=5) if warm else chain_depths  # warm-up: kernels only
            chain = attention_chain_decode(models.denoiser, models.vae, ctx, latent[0].to(dtype), verts.numpy(),
                                           faces.numpy(), 0, steps=4, **kw)
            for k, v in chain.timings.items():
                timer.parts[f"chain {k}"] = v
            return
        steps1 = 1 if warm else sz.steps1[preset]
        latents = timer("stage1", sample_stage1, models.denoiser, ctx, {0: latent[0]}, steps=steps1, seed=0)
        progress()
        query = torch.cat([verts, query_normals(verts, faces)], -1).to(dev)
        timer("stage2", decode_stage2, models.autoencoder, latents, query, faces=faces)

    state = {"timer": None, "start": 0.0, "extra": {}, "final": False}

    def progress():  # the figures so far (a later kill keeps them)
        if state["timer"] is None:
            return
        _sync(dev)
        own = time.perf_counter() - state["start"]
        parts = dict(state["timer"].parts)
        total = own
        if shared is not None:
            parts = {**shared, **parts}
            total += sum(shared.values())
        peak = perf.peak_memory(dev)
        peaks = [x for x in (peak / 2**30 if peak is not None else None,
                             (anchor_rec or {}).get("peak_gb")) if x is not None]
        record("clip", preset=preset, total_s=round(total, 2), peak_gb=round(max(peaks), 2) if peaks else None,
               parts={k: round(v, 2) for k, v in parts.items()}, complete=state["final"],
               **state["extra"])

    record("clip", event=f"{preset}: models built", seconds=round(built, 1))
    t0 = time.perf_counter()
    with torch.no_grad():
        ctx = models.dino(inputs["images"])
        if saved is not None:
            models.vae.decoder.proj_out.bias.copy_(saved["vae_out_bias"].to(dev))
            latent, verts, faces = saved["latent"].to(dev), saved["vertices"], saved["faces"]
            post_anchor(ctx, latent, verts, faces, _Timer(dev), warm=True)
        else:  # no anchor part: centre the VAE here, warm up with a small band
            latent = sample_image_to_3d(models.dit, ctx[:1], steps=1, seed=0, num_tokens=sz.tokens)
            early = sample_stage1(models.denoiser, ctx, {0: latent[0]}, steps=4, seed=0)
            _centre_vae(models.vae, torch.cat([latent, early]).to(dev))
            _anchor_mesh(models.vae, latent, min(depth, 6), dev, _Timer(dev), clean=False)
    record("clip", event=f"{preset}: warm-up", seconds=round(time.perf_counter() - t0, 1))

    timer = _Timer(dev)
    perf.reset_peak_memory(dev)
    _sync(dev)
    state.update(timer=timer, start=time.perf_counter())
    with torch.no_grad():
        if saved is not None:
            ctx = timer("dinov2", models.dino, inputs["images"]) if shared is None else ctx
            state["extra"] = dict(anchor="shared (measured once by the anchor part)",
                                  anchor_vertices=int(len(verts)),
                                  anchor_points_evaluated=(anchor_rec or {}).get("anchor_points_evaluated"),
                                  anchor_backend=(anchor_rec or {}).get("anchor_backend"),
                                  anchor_precision=(anchor_rec or {}).get("anchor_precision"))
        else:
            ctx = timer("dinov2", models.dino, inputs["images"])
            latent = timer("stage0 sampling", sample_image_to_3d, models.dit, ctx[:1], steps=_steps0(sz, preset),
                           seed=0, num_tokens=sz.tokens)
            mesh, mstats = _anchor_mesh(models.vae, latent, depth, dev, timer)
            verts = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
            faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.long)
            state["extra"] = dict(anchor="own (no anchor part)", anchor_vertices=int(len(verts)),
                                  anchor_points_evaluated=mstats.get("points_evaluated"),
                                  anchor_backend=mstats.get("backend"), anchor_precision=mstats.get("precision"))
        progress()
        post_anchor(ctx, latent, verts, faces, timer, warm=False)
    state["final"] = True
    progress()


# --------------------------------------------------------------------------- meshing


def part_meshing(args) -> None:
    import torch

    import bench_meshing as bm
    from actionmesh_core.geometry.meshing import available_backends, sdf_surface_points, sdf_to_meshes

    dev = _device(args.cpu)
    d1 = 6 if args.cpu else 9
    d0 = d1 - 3
    # the dry run runs warp's kernels on the CPU device (the GPU picks warp by itself)
    wkw = dict(backend="warp") if args.cpu and "warp" in available_backends("cpu") else {}

    def timed(fn):
        _sync(dev)
        t0 = time.perf_counter()
        out = fn()
        _sync(dev)
        return out, time.perf_counter() - t0

    def peak_of(fn):  # (output, seconds, peak GB of the call above what was allocated before it; None on the CPU)
        from actionmesh_core import perf

        base = torch.cuda.memory_allocated(dev) if dev.type == "cuda" else 0
        perf.reset_peak_memory(dev)
        out, secs = timed(fn)
        peak = perf.peak_memory(dev)
        return out, secs, None if peak is None else round((peak - base) / 2**30, 2)

    # warm-up (warp's kernel build on a fresh machine: its own figure)
    first = timed(lambda: sdf_to_meshes(lambda p: bm.sphere(p)[None], 1, octree_depth=3, refine_depth=5,
                                        device=dev, **wkw))
    record("meshing", field="warm-up", seconds=round(first[1], 2), backend=first[0][0].metadata["meshing"]["backend"])
    for name in ("sphere", "thin_parts"):
        fn = bm.FIELDS[name]
        try:
            (mesh,), secs = timed(lambda: sdf_to_meshes(lambda p: fn(p)[None], 1, octree_depth=d0, refine_depth=d1,
                                                        device=dev, **wkw))
            (mesh,), secs2 = timed(lambda: sdf_to_meshes(lambda p: fn(p)[None], 1, octree_depth=d0, refine_depth=d1,
                                                         device=dev, **wkw))
            secs = min(secs, secs2)  # best of 2
            st = mesh.metadata["meshing"]
            ref = bm.reference_mc(fn) if not args.cpu else float("nan")
            (dense,), dsecs = timed(lambda: sdf_to_meshes(lambda p: fn(p)[None], 1, octree_depth=d1, refine_depth=d1,
                                                          device=dev, backend=st["backend"]))
            record("meshing", field=name, extractor=f"band {d0}->{d1}", seconds=round(secs, 3),
                   points=st["points_evaluated"], faces=len(mesh.faces), backend=st["backend"],
                   precision=st["precision"], dense_faces=len(dense.faces), dense_seconds=round(dsecs, 3),
                   same_faces_as_dense=len(dense.faces) == len(mesh.faces),
                   parts=bm.parts_found(mesh) if name == "thin_parts" else None,
                   ref_257_skimage_cpu_s=None if ref != ref else round(float(ref), 3))
            del dense
        except Exception as exc:
            traceback.print_exc()
            record("meshing", field=name, error=f"{type(exc).__name__}: {exc}"[:300])
    # the released-size VAE field (random weights, centred on random latents)
    try:
        from actionmesh_core.models import TripoSGVAE

        sz = _sizes(args.cpu)
        torch.manual_seed(0)
        with torch.device(dev):
            vae = TripoSGVAE(**sz.vae).eval().requires_grad_(False)
        _smooth_vae(vae)
        nfr = 4 if args.cpu else 16  # the chain's window: 16 frames
        lat = torch.randn(nfr, sz.tokens, sz.vae["latent_channels"], generator=torch.Generator().manual_seed(0)).to(dev)
        _centre_vae(vae, lat)
        for label, kw in (("fp32 + auto backend (the default)", {}), ("bf16 + auto backend", dict(precision="bf16")),
                          ("fp32 + scikit-image", dict(precision="fp32", backend="skimage"))):
            (mesh,), secs, peak = peak_of(lambda: sdf_to_meshes(vae.field_fn(lat[:1]), 1, octree_depth=d0,
                                                                refine_depth=d1, inside=vae.inside_sign, device=dev,
                                                                allow_empty=True, **kw))
            st = mesh.metadata["meshing"]
            record("meshing", field=f"VAE ({sz.name}) anchor", extractor=f"band {d0}->{d1}, {label}",
                   seconds=round(secs, 3), points=st["points_evaluated"], points_fp32=st["points_fp32"],
                   points_half=st["points_half"], half_levels=st["half_levels"], faces=len(mesh.faces),
                   backend=st["backend"], precision=st["precision"], peak_gb=peak)
        cd = min(7, d1)  # the chain's candidate depth (the dry run's grid is smaller)
        # the chain's candidates as the chain computes them (one band per frame, a frame's band ended at 2^6 once it
        # has num_candidates / 2 = 10,000 crossings) and, as on 2026-12-04, one band of the 16 fields to 2^7; peak
        # memory above the resident VAE (2026-12-04: 54.4 GB for the whole chain preset)
        import numpy as np

        import actionmesh_core.geometry.meshing as meshing
        from actionmesh_core.attention_chain import capture

        seen = []
        real = meshing.sdf_surface_points

        def counted(*a, **k):
            k["stats"] = st = {}
            out = real(*a, **k)
            seen.append(st)
            return out

        meshing.sdf_surface_points = counted
        try:
            cands, secs, peak = peak_of(lambda: capture._candidate_points(
                vae, lat, list(range(nfr)), -1, cd - 2, cd, 20000, np.random.default_rng(0)))
        finally:
            meshing.sdf_surface_points = real
        record("meshing", field=f"VAE ({sz.name}) {nfr} frames",
               extractor=f"chain candidates as the chain computes them (one band per frame, {cd - 2}->"
                         f"{sorted({st['depth'] for st in seen})})",
               seconds=round(secs, 3), points=sum(st["points_evaluated"] for st in seen), per_field=True,
               crossings_per_frame=int(sum(sum(st["points"]) for st in seen) / nfr),
               precision=seen[0]["precision"], peak_gb=peak)
        stats = {}
        _, secs, peak = peak_of(lambda: sdf_surface_points(vae.field_fn(lat), nfr, octree_depth=cd - 2, refine_depth=cd,
                                                           inside=vae.inside_sign, device=dev, stats=stats))
        record("meshing", field=f"VAE ({sz.name}) {nfr} frames",
               extractor=f"one band of the {nfr} fields, {cd - 2}->{cd} (the chain's candidates on 2026-12-04)",
               seconds=round(secs, 3), points=stats["points_evaluated"], crossings_per_frame=int(
                   sum(stats["points"]) / len(stats["points"])), precision=stats["precision"], peak_gb=peak)
    except Exception as exc:
        traceback.print_exc()
        record("meshing", field="VAE", error=f"{type(exc).__name__}: {exc}"[:300])


# --------------------------------------------------------------------------- table


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def build_table() -> str:
    path = out_dir() / "results.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    env = next((r for r in recs if r["part"] == "env"), {})
    lines = [f"### GPU check, {env.get('date', datetime.date.today().isoformat())}", "",
             f"`bash benchmarks/gpu_check.sh` on {env.get('device', '?')}; torch {env.get('torch', '?')} "
             f"(CUDA {env.get('cuda', '?')}), transformers {env.get('transformers', '?')}, warp: "
             f"{env.get('warp', '?')}, fast-simplification {env.get('fast_simplification', '?')}, flash-attn: "
             f"{env.get('flash_attn', '?')}. Random weights at "
             + ("tiny sizes (dry run: the figures mean nothing)" if "dry run" in str(env.get("device")) else
                "the released sizes") + ", bf16 models, fp32 VAE (its query projection kept to the 2 lowest Fourier "
             "frequencies and its output centred, so the random surfaces have a realistic size). "
             "Targets are the H100 ones.", ""]
    tests = [r for r in recs if r["part"] == "tests"]
    if tests:
        lines += [f"CUDA tests (`pytest -m cuda`): {tests[-1].get('summary', '?')}", ""]
    latest = {}  # a preset writes a record after every stage: its last one counts
    for r in recs:
        if r["part"] == "clip" and "preset" in r:
            latest[r["preset"]] = r
    clips = [latest[p] for p in PRESETS if p in latest]
    if clips:
        cols = sorted({k for r in clips for k in r.get("parts", {})},
                      key=lambda k: ["dinov2", "stage0 sampling", "meshing", "clean-up", "stage1", "stage2",
                                     "chain stage1", "chain candidates", "chain correspondences",
                                     "chain skinning"].index(k) if k in (
                          "dinov2", "stage0 sampling", "meshing", "clean-up", "stage1", "stage2", "chain stage1",
                          "chain candidates", "chain correspondences", "chain skinning") else 99)
        lines += ["| 16-frame clip | total (s) | target (s) | after stage 0 (s) | peak GPU memory (GB) | target (GB) | "
                  + " | ".join(cols) + " | notes |", "|---|---|---|---|---|---|" + "---|" * len(cols) + "---|"]
        for r in clips:
            if "error" in r:
                lines.append(f"| {r['preset']} | failed | {TARGETS[r['preset']][1]:.0f} | | | | "
                             + " | " * len(cols) + f" {r['error']} |")
                continue
            t = TARGETS[r["preset"]][1]
            ok = "met" if r["total_s"] <= t else "not met"
            pk = r.get("peak_gb")
            after = r["total_s"] - sum(r["parts"].get(k, 0.0) for k in ("stage0 sampling", "meshing", "clean-up"))
            if r.get("complete") is False:
                ok = "incomplete: stopped at its time limit"
            lines.append(f"| {r['preset']} | {r['total_s']:.1f} ({ok}) | <= {t:.0f} | {after:.1f} | {_fmt(pk)} | "
                         f"<= {PEAK_TARGET_GB:.0f} | " + " | ".join(_fmt(r['parts'].get(c)) for c in cols)
                         + f" | anchor {r.get('anchor', '')}: {r.get('anchor_vertices')} vertices, "
                         f"{r.get('anchor_points_evaluated')} field points, "
                         f"{r.get('anchor_backend')}/{r.get('anchor_precision')}"
                         + (f"; {r['note']}" if r.get("note") else "") + " |")
        lines.append("")
    anchor = next((r for r in reversed(recs) if r["part"] == "anchor" and "parts" in r), None)
    if anchor:
        lines.append("- stage 0 once for all presets (anchor part): " + ", ".join(
            f"{k} {v:.2f} s" for k, v in anchor["parts"].items()) + f"; peak {_fmt(anchor.get('peak_gb'))} GB; "
            "each preset's total counts DINOv2, its own stage 0 step count, the meshing and the clean-up from it")
    for r in recs:
        if r["part"] in ("clip", "anchor") and r.get("event"):
            lines.append(f"- {r['part']} {r['event']}: {r['seconds']} s" + (f", {r['resident_gb']} GB resident"
                                                                     if r.get("resident_gb") else ""))
    mesh = [r for r in recs if r["part"] == "meshing"]
    if mesh:
        lines += ["", "| meshing field | extractor | s | points evaluated | faces | backend / precision | "
                  "dense faces (s) | same as dense | parts | ref 257^3 scikit-image CPU (s) | peak GB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in mesh:
            if "error" in r:
                lines.append(f"| {r['field']} | failed: {r['error']} | | | | | | | | | |")
                continue
            if r["field"] == "warm-up":
                lines.append(f"| first call (warp kernel build) | | {r['seconds']:.2f} | | | {r['backend']} | | | | | |")
                continue
            pts = r.get("points")
            if r.get("points_fp32") is not None:
                pts = f"{pts:,} ({r['points_fp32']:,} fp32" + (
                    f", {r['points_half']:,} half, levels {r.get('half_levels')})" if r.get("points_half") else ")")
            elif r.get("crossings_per_frame"):
                pts = (f"{pts:,} field evaluations" if r.get("per_field") else f"{pts:,} x the frames") + \
                    f" ({r['crossings_per_frame']:,} crossings per frame)"
            lines.append(f"| {r['field']} | {r.get('extractor', '')} | {r['seconds']:.3f} | {pts} | "
                         f"{_fmt(r.get('faces'))} | {_fmt(r.get('backend'))} / {_fmt(r.get('precision'))} | "
                         + (f"{r['dense_faces']:,} ({r['dense_seconds']:.2f})" if r.get("dense_faces") is not None
                            else "-")
                         + f" | {_fmt(r.get('same_faces_as_dense'))} | {_fmt(r.get('parts'))} | "
                         f"{_fmt(r.get('ref_257_skimage_cpu_s'))} | {_fmt(r.get('peak_gb'))} |")
    parts = [r for r in recs if r["part"] == "status"]
    if parts:
        lines += ["", "Parts: " + ", ".join(f"{r['name']} {r['rc_text']} ({r['seconds']} s)" for r in parts)]
    return "\n".join(lines) + "\n"


def part_table(args) -> None:
    text = build_table()
    tmp = out_dir() / "gpu_table.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, out_dir() / "gpu_table.md")
    if args.to_results:
        results = ROOT / "benchmarks" / "RESULTS.md"
        body = results.read_text()
        tmp = results.with_suffix(".md.tmp")
        tmp.write_text(body.rstrip("\n") + "\n\n" + text)
        os.replace(tmp, results)
        print(f"appended the table to {results}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["env", "anchor", "clip", "meshing", "table", "status", "tests"])
    ap.add_argument("--preset", choices=PRESETS, default="default", help="clip: the preset to run")
    ap.add_argument("--cpu", action="store_true", help="dry run at tiny sizes on the CPU")
    ap.add_argument("--to-results", action="store_true", help="table: also append it to benchmarks/RESULTS.md")
    ap.add_argument("--name", default="")
    ap.add_argument("--rc", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0.0)
    ap.add_argument("--summary", default="")
    args = ap.parse_args(argv)
    if args.part == "status":  # the shell's record of one part: exit status and wall time
        text = {0: "ok", 124: "TIMED OUT", 137: "KILLED (time limit)", 125: "skipped (budget spent)"}.get(
            args.rc, f"failed (exit {args.rc})")
        record("status", name=args.name, rc=args.rc, rc_text=text, seconds=round(args.seconds))
        return
    if args.part == "tests":
        record("tests", summary=args.summary or "no summary line")
        return
    if args.part in ("anchor", "clip", "meshing"):  # where a slow part spends its time, in the log
        import faulthandler

        faulthandler.dump_traceback_later(45, repeat=True)
    {"env": part_env, "anchor": part_anchor, "clip": part_clip, "meshing": part_meshing,
     "table": part_table}[args.part](args)


if __name__ == "__main__":
    main()
