#!/usr/bin/env python3
"""Plain vs optimised ActionMesh pipeline, side by side in one run (issue #5).

Builds every model of the pipeline with random weights (speed does not depend
on weight values) and runs, stage by stage, first the *plain* path
(``actionmesh_core.perf.plain_mode``: no K/V caching, unfused QKV, one stage II
pass per target time, PyTorch SDPA) and then the *optimised* default path on
the same inputs:

- stage 0: TripoSG DiT rectified flow with CFG (100 steps; fast 50);
- DINOv2-L features of the 16 frames (a control row: no switch affects it);
- stage I: masked flow matching with CFG over a 16-frame window (30; fast 15);
- stage II: 15 target times decoded on ~20k query vertices;
- SDF meshing of the anchor latent: the library's narrow-band extractor (VAE field + marching cubes).

Per stage it prints wall time, the analytically counted FLOPs (matmuls of the
linear and attention layers; elementwise work is not counted) and achieved
TFLOP/s, peak GPU memory (``torch.cuda.max_memory_allocated``; n/a on CPU),
the plain/optimised time ratio and the max abs difference of the outputs.
Each stage gets identical inputs in both paths (the plain path's output of the
previous stage), so the difference is that stage's own.

Sizes: ``--full`` = the released sizes (needs a big GPU); the default is a
reduced CPU-sized set (ratios only); ``--tiny`` takes seconds (tests).
``--low-vram`` adds an optimised run in which each model lives on the GPU only
for its stage (:func:`actionmesh_core.perf.offload`) and reports its memory.

Examples::

    python3 benchmarks/bench_pipeline.py                       # reduced, CPU
    python3 benchmarks/bench_pipeline.py --device cuda --full  # released sizes, bf16
    python3 benchmarks/bench_pipeline.py --device cuda --full --compile --low-vram --preset fast
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from actionmesh_core import perf  # noqa: E402
from actionmesh_core.models.attention import get_attention_backend, set_attention_backend  # noqa: E402
from actionmesh_core.models.compile import compile_blocks as compile_model_blocks, uncompile_blocks  # noqa: E402
# the workload and its analytic FLOPs live in the library (tests check them without importing this script);
# gpu_check.py takes the sizes and models from here too
from actionmesh_core.perf_model import (STAGES, Models, Sizes, build_models, make_stage_fns,  # noqa: E402,F401
                                        reduced_sizes, released_sizes, stage_flops, synthetic_inputs, tiny_sizes)

# --------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Measurement:
    seconds: float
    peak_bytes: Optional[int]
    output: torch.Tensor


def measure(fn: Callable[[], torch.Tensor], device: torch.device) -> Measurement:
    """Wall time (synchronised) and CUDA peak memory of one call."""
    perf.reset_peak_memory(device)
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = fn()
    _sync(device)
    secs = time.perf_counter() - t0
    return Measurement(secs, perf.peak_memory(device), out.detach())


@dataclass
class StageResult:
    stage: str
    plain: Measurement
    opt: Measurement
    flops_plain: float
    flops_opt: float
    max_abs_diff: float
    max_abs_ref: float
    low_vram: Optional[Measurement] = None
    compile_s: Optional[float] = None
    notes: List[str] = field(default_factory=list)
    extra: Dict[str, Measurement] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.plain.seconds / max(self.opt.seconds, 1e-12)


# --------------------------------------------------------------------------- the run


ABLATIONS = {
    # optimised path with one optimisation switched off (does that optimisation pay?)
    "opt without kv cache": dict(cache_cross_kv=False),
    "opt without fused qkv": dict(fused_qkv=False),
    "opt without target batching": dict(batch_targets=False),
    "opt with all targets in one pass": dict(target_batch=1 << 20),
    "opt without token-major qk": dict(token_major=False),
    "opt with contiguous cpu query": dict(contiguous_query=True),
    # low-memory option: identical results, lower peak
    "opt with cfg split": dict(cfg_batch_split=True),
}
ABLATION_STAGES = {
    "opt without kv cache": ("stage0", "stage1", "stage2", "meshing"),
    "opt without fused qkv": ("stage0", "stage1", "stage2", "meshing"),
    "opt without target batching": ("stage2",),
    "opt with all targets in one pass": ("stage2",),
    "opt without token-major qk": ("stage0", "stage1", "stage2"),
    "opt with contiguous cpu query": ("stage0", "stage1", "stage2", "meshing"),
    "opt with cfg split": ("stage0", "stage1"),
}


def run_benchmark(sz: Sizes, device: torch.device, dtype: torch.dtype, *, vae_dtype: torch.dtype = torch.float32,
                  preset: str = "default", stages=STAGES, warmup: int = 0, repeats: int = 1,
                  compile_blocks: bool = False, compile_mode: Optional[str] = None, low_vram: bool = False,
                  cfg_batch_split: bool = False, ablate=False, tf32: bool = False, seed: int = 0,
                  log: Callable[[str], None] = print) -> List[StageResult]:
    """Run every requested stage in the plain and the optimised path; returns per-stage results.

    Each path runs ``repeats`` times (alternating which goes first) and keeps
    its fastest run, which discounts interference from other processes.
    ``ablate`` (True, or a tuple of names) adds the :data:`ABLATIONS` variants (in ``StageResult.extra``).
    ``tf32`` lets the optimised path's fp32 matmuls (SDF field, stage II
    query path) use TF32 tensor cores on CUDA: faster, but not the same
    numerics (off by default; the difference column shows its effect).

    Raises:
        ValueError: unknown stage/preset, ``repeats`` < 1, or
            ``compile_blocks``/``low_vram`` without CUDA.
    """
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stages {bad}; choose from {STAGES}")
    if preset not in sz.steps0:
        raise ValueError(f"preset must be one of {sorted(sz.steps0)}, got {preset!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if (compile_blocks or low_vram) and device.type != "cuda":
        raise ValueError("--compile and --low-vram are CUDA options (torch.compile is off on CPU; "
                         "offloading to the CPU saves nothing there)")
    t0 = time.perf_counter()
    models = build_models(sz, device, dtype, vae_dtype, seed)
    log(f"built random-weight models in {time.perf_counter() - t0:.1f}s")
    inputs = synthetic_inputs(sz, device, seed)
    fns = make_stage_fns(models, sz, inputs, preset, device, seed)
    per_model = dict(stage0=models.dit, dinov2=models.dino, stage1=models.denoiser, stage2=models.autoencoder,
                     meshing=models.vae)
    results: List[StageResult] = []
    opt_flags = dict(cfg_batch_split=cfg_batch_split, static_chunks=compile_blocks)
    for stage in [s for s in STAGES if s in stages]:
        fn = fns[stage]
        variants: Dict[str, Callable[[], contextlib.AbstractContextManager]] = {
            "plain": perf.plain_mode, "optimised": lambda: _opt_context(opt_flags, tf32)}
        if ablate:
            for name, flags in ABLATIONS.items():
                if stage in ABLATION_STAGES[name] and (ablate is True or name in ablate):
                    variants[name] = (lambda f=flags: _opt_context({**opt_flags, **f}, tf32))
        best: Dict[str, Measurement] = {}
        meshes: Dict[str, tuple] = {}

        def run(name: str) -> None:
            with variants[name]():
                for _ in range(warmup if name not in best else 0):
                    fn(2)
                m = measure(fn, device)
            if name in best:  # keep the fastest time, the first output and the highest peak
                prev = best[name]
                peaks = [p for p in (prev.peak_bytes, m.peak_bytes) if p is not None]
                m = Measurement(min(prev.seconds, m.seconds), max(peaks) if peaks else None, prev.output)
            best[name] = m
            meshes[name] = inputs.get("last_mesh")

        compile_s = None
        names = list(variants)
        if compile_blocks and stage != "dinov2":
            for _ in range(repeats):
                run("plain")
            n = compile_model_blocks(per_model[stage], mode=compile_mode)
            with variants["optimised"]():
                c0 = time.perf_counter()
                fn(2)
                _sync(device)
                compile_s = time.perf_counter() - c0
            log(f"  compiled {n} blocks of {stage} (first call {compile_s:.1f}s)")
            for r in range(repeats):
                for name in names[1:]:
                    run(name)
        else:
            for r in range(repeats):
                for name in (names if r % 2 == 0 else names[::-1]):
                    run(name)
        if compile_blocks:
            uncompile_blocks(per_model[stage])
        lv = _low_vram_run(models, per_model[stage], fn, device, lambda: _opt_context(opt_flags, tf32)) \
            if low_vram else None
        plain, opt = best["plain"], best["optimised"]
        ref, out = plain.output.float(), opt.output.float()
        points = inputs.get("meshing_points")  # the meshing stage's field calls (its last run)
        with perf.perf_flags(**opt_flags):
            flops_opt = stage_flops(sz, stage, preset, False, device, points)
        res = StageResult(stage, plain, opt, stage_flops(sz, stage, preset, True, device, points),
                          flops_opt, (ref - out).abs().max().item(),
                          ref.abs().max().item(), lv, compile_s)
        res.extra = {k: v for k, v in best.items() if k not in ("plain", "optimised")}
        for name, m in res.extra.items():
            res.notes.append(f"{name}: {m.seconds:.3f}s (optimised {opt.seconds:.3f}s, plain {plain.seconds:.3f}s), "
                             f"max abs diff to plain {(m.output.float() - ref).abs().max().item():.2e}"
                             + ("" if m.peak_bytes is None else f", peak {_gib(m.peak_bytes)} GiB"))
        if stage == "meshing":
            mp, mo = meshes["plain"], meshes["optimised"]
            res.notes.append(f"marching cubes at level {mp[2]:.3g}: plain {mp[0]} vertices / {mp[1]} faces, "
                             f"optimised {mo[0]} / {mo[1]}")
        results.append(res)
        log(f"  {stage}: plain {plain.seconds:.2f}s  optimised {opt.seconds:.2f}s  "
            f"ratio {res.ratio:.2f}  max|diff| {res.max_abs_diff:.2e}")
        _feed(inputs, stage, plain.output)
    return results


@contextlib.contextmanager
def _opt_context(flags: dict, tf32: bool):
    """The optimised path's switches (and TF32 matmuls when asked), restored on exit."""
    with perf.perf_flags(**flags, tf32=tf32), perf.tf32_matmuls():
        yield


def _feed(inputs: dict, stage: str, output: torch.Tensor) -> None:
    key = dict(stage0="anchor", dinov2="context", stage1="latents").get(stage)
    if key:
        inputs[key] = output


def _low_vram_run(models: Models, model, fn, device, context) -> Measurement:
    """Optimised run with every model parked on the CPU and ``model`` on the GPU only for the stage.

    Eager blocks (no compile); the time includes moving the stage's model to the GPU and back.
    """
    everything = (models.dit, models.dino, models.denoiser, models.autoencoder, models.vae)
    for m in everything:
        m.to("cpu")
    torch.cuda.empty_cache()

    def staged():
        with perf.offload(model, device):
            return fn()

    with context():
        meas = measure(staged, device)
    for m in everything:
        m.to(device)
    return meas


# --------------------------------------------------------------------------- report


def _gib(b: Optional[int]) -> str:
    return "n/a" if b is None else f"{b / 2 ** 30:.2f}"


def format_table(results: List[StageResult], markdown: bool = True) -> str:
    """The per-stage table (and a total row)."""
    head = ["stage", "plain s", "optimised s", "plain/opt", "GFLOP plain", "GFLOP opt", "TFLOP/s plain",
            "TFLOP/s opt", "peak GiB plain", "peak GiB opt", "max abs diff", "max abs ref"]
    if any(r.low_vram for r in results):
        head += ["low-VRAM s", "low-VRAM peak GiB"]
    rows = []
    for r in results:
        row = [r.stage, f"{r.plain.seconds:.3f}", f"{r.opt.seconds:.3f}", f"{r.ratio:.2f}",
               f"{r.flops_plain / 1e9:.1f}", f"{r.flops_opt / 1e9:.1f}",
               f"{r.flops_plain / r.plain.seconds / 1e12:.3f}", f"{r.flops_opt / r.opt.seconds / 1e12:.3f}",
               _gib(r.plain.peak_bytes), _gib(r.opt.peak_bytes), f"{r.max_abs_diff:.2e}", f"{r.max_abs_ref:.2e}"]
        if len(head) > 12:
            row += ["n/a", "n/a"] if r.low_vram is None else [f"{r.low_vram.seconds:.3f}", _gib(r.low_vram.peak_bytes)]
        rows.append(row)
    if results:
        tp = sum(r.plain.seconds for r in results)
        to = sum(r.opt.seconds for r in results)
        fp = sum(r.flops_plain for r in results)
        fo = sum(r.flops_opt for r in results)
        pk = [r.plain.peak_bytes for r in results if r.plain.peak_bytes is not None]
        po = [r.opt.peak_bytes for r in results if r.opt.peak_bytes is not None]
        total = ["total", f"{tp:.3f}", f"{to:.3f}", f"{tp / max(to, 1e-12):.2f}", f"{fp / 1e9:.1f}", f"{fo / 1e9:.1f}",
                 f"{fp / tp / 1e12:.3f}", f"{fo / to / 1e12:.3f}", _gib(max(pk) if pk else None),
                 _gib(max(po) if po else None), "", ""]
        if len(head) > 12:
            lv = [r.low_vram for r in results if r.low_vram is not None]
            total += [f"{sum(m.seconds for m in lv):.3f}", _gib(max((m.peak_bytes or 0) for m in lv))]
        rows.append(total)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join("{:>%d}" % w for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device, dtype: torch.dtype, sz: Sizes, preset: str) -> Dict[str, str]:
    """Device, dtype and versions for the report header."""
    import transformers

    from actionmesh_core.models.attention import flash_attention_available

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        dev = f"{props.name}, {props.total_memory / 2 ** 30:.0f} GiB (CUDA {torch.version.cuda})"
    else:
        dev = f"CPU {_cpu_name()} ({os.cpu_count()} cores), {torch.get_num_threads()} threads"
    return {
        "device": dev, "dtype": str(dtype).replace("torch.", ""), "sizes": sz.name, "preset": preset,
        "steps": f"stage 0 {sz.steps0[preset]}, stage I {sz.steps1[preset]}",
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "flash_attn": "yes" if flash_attention_available() else "no", "attention_backend": get_attention_backend(),
        "date": datetime.date.today().isoformat(),
    }


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="released sizes (GPU)")
    size.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; tests)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="model dtype (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--vae-dtype", default="fp32", choices=["bf16", "fp16", "fp32"],
                   help="SDF field dtype (the pipeline meshes in fp32)")
    p.add_argument("--preset", default="default", choices=["default", "fast"])
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list from {','.join(STAGES)}")
    p.add_argument("--warmup", type=int, default=-1, help="warm-up calls per path (default: 1 on CUDA, 0 on CPU)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per path (the fastest is kept)")
    p.add_argument("--ablations", default=None, help="with --ablate: comma list of the variants to run "
                   f"(default all: {', '.join(ABLATIONS)})")
    p.add_argument("--ablate", action="store_true", help="also time the optimised path with each "
                   "optimisation switched off in turn (and with the CFG split)")
    p.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks (CUDA only)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune, reduce-overhead")
    p.add_argument("--attention", default=None, help="attention backend of the optimised path "
                   "(auto | sdpa | flash | cudnn | math)")
    p.add_argument("--tf32", action="store_true", help="optimised path: TF32 for fp32 matmuls on CUDA "
                   "(SDF field, stage II query path); changes numerics slightly")
    p.add_argument("--cfg-split", action="store_true", help="optimised path runs the CFG branches one by one")
    p.add_argument("--low-vram", action="store_true", help="also run the optimised path with per-stage offloading")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=-1, help="torch CPU threads (default: 1 on CPU, for stable "
                   "timings on a shared machine; 0: torch's default)")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.add_argument("--json", default=None, help="also write results to this JSON file")
    return p.parse_args(argv)


def main(argv=None) -> List[StageResult]:
    """Command-line entry point; returns the results."""
    args = _parse(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    threads = args.threads if args.threads >= 0 else (1 if device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for but CUDA is not available; run without --device for the CPU mode")
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    dtype = dtypes["bf16" if device.type == "cuda" else "fp32"] if args.dtype == "auto" else dtypes[args.dtype]
    sz = released_sizes() if args.full else tiny_sizes() if args.tiny else reduced_sizes()
    warmup = args.warmup if args.warmup >= 0 else (1 if device.type == "cuda" else 0)
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    env = environment(device, dtype, sz, args.preset)
    print(" | ".join(f"{k}: {v}" for k, v in env.items()))
    prev_backend = get_attention_backend()
    if args.attention:
        set_attention_backend(args.attention)
    try:
        results = run_benchmark(sz, device, dtype, vae_dtype=dtypes[args.vae_dtype], preset=args.preset,
                                stages=stages, warmup=warmup, repeats=args.repeats,
                                ablate=(tuple(a.strip() for a in args.ablations.split(",")) if args.ablate and
                                        args.ablations else args.ablate),
                                compile_blocks=args.compile,
                                compile_mode=args.compile_mode, low_vram=args.low_vram,
                                cfg_batch_split=args.cfg_split, tf32=args.tf32, seed=args.seed)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        set_attention_backend(prev_backend)
    print()
    print(format_table(results, markdown=args.markdown))
    for r in results:
        for note in r.notes:
            print(f"note ({r.stage}): {note}")
        if r.compile_s is not None:
            print(f"note ({r.stage}): first compiled call {r.compile_s:.1f}s (not in the table)")
    if args.json:
        payload = {"environment": env, "results": [
            {"stage": r.stage, "plain_s": r.plain.seconds, "optimised_s": r.opt.seconds, "ratio": r.ratio,
             "flops_plain": r.flops_plain, "flops_optimised": r.flops_opt,
             "peak_bytes_plain": r.plain.peak_bytes, "peak_bytes_optimised": r.opt.peak_bytes,
             "low_vram_s": None if r.low_vram is None else r.low_vram.seconds,
             "low_vram_peak_bytes": None if r.low_vram is None else r.low_vram.peak_bytes,
             "max_abs_diff": r.max_abs_diff, "max_abs_ref": r.max_abs_ref, "notes": r.notes}
            for r in results]}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return results


if __name__ == "__main__":
    main()
