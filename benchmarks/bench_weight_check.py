"""Cost of the weights value check (NaN/inf, dtypes) on a released-size weights layout, and its memory.

Usage::

    python benchmarks/bench_weight_check.py [--dtype bf16|fp16|fp32] [--keep DIR] [--tiny]

Writes the released layout (``ActionMesh/{denoiser,autoencoder}``, ``TripoSG/{vae,transformer,
image_encoder_dinov2,scheduler}``, ``dinov2-large``) with the released sizes (release: actionmesh/configs/actionmesh.yaml: denoiser and TripoSG
transformer width 2048 x 21 layers, autoencoder 1024 x 16, VAE 512/1024, DINOv2-L twice) and random normal values
(safetensors written tensor by tensor, so writing needs no model in memory), then times, each in a fresh process:

* ``headers``  — ``validate_weights(values=False)``: configs, headers, keys and shapes (what was checked before);
* ``cold``     — ``validate_weights()`` after evicting the files from the page cache (``posix_fadvise
  DONTNEED``; only these files, nothing else of the machine's cache): the first run after a download;
* ``warm``     — ``validate_weights()`` again with an empty list of checked files (files in the page cache);
* ``remembered`` — ``validate_weights()`` once more, the files remembered as checked (later runs).

Prints one table: seconds, GB scanned, GB/s, ratio to ``headers``, peak RSS of the process (MB).
``--tiny`` runs on the tiny test sizes (seconds; for the test suite).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_ST = {"bf16": "BF16", "fp16": "F16", "fp32": "F32"}


def _write_safetensors(path: Path, shapes: dict, dtype: str, seed: int) -> int:
    """A safetensors file of random normal tensors (std 0.02) with these shapes, written tensor by tensor."""
    import torch

    tdtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    item = torch.tensor([], dtype=tdtype).element_size()
    header, offset = {}, 0
    for name in sorted(shapes):
        n = 1
        for d in shapes[name]:
            n *= int(d)
        header[name] = {"dtype": _ST[dtype], "shape": list(shapes[name]), "data_offsets": [offset, offset + n * item]}
        offset += n * item
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * ((-len(blob)) % 8)
    gen = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(len(blob).to_bytes(8, "little") + blob)
        for name in sorted(shapes):
            n = (header[name]["data_offsets"][1] - header[name]["data_offsets"][0]) // item
            for start in range(0, n, 1 << 24):
                part = torch.randn(min(1 << 24, n - start), generator=gen).mul_(0.02).to(tdtype)
                handle.write(part.view(torch.uint8).numpy().tobytes())
    return offset


def build_layout(root: Path, dtype: str, tiny: bool) -> int:
    """The released layout under ``root``; returns the tensor bytes written."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    from actionmesh_core.checkpoints import WEIGHT_FILES
    from actionmesh_core.models import TemporalAutoencoder, TemporalDenoiser, TripoSGDiT, TripoSGVAE
    from actionmesh_core.weights import COMPONENTS
    from actionmesh_core.perf_model import released_sizes, tiny_sizes

    sizes = tiny_sizes() if tiny else released_sizes()
    total = 0
    models = {"denoiser": (TemporalDenoiser, sizes.denoiser, "actionmesh_denoiser", {}),
              "autoencoder": (TemporalAutoencoder, sizes.autoencoder, "actionmesh_autoencoder", {}),
              "vae": (TripoSGVAE, sizes.vae, "triposg_vae", {"_class_name": "TripoSGVAEModel"}),
              "transformer": (TripoSGDiT, sizes.dit, "triposg_dit", {"_class_name": "TripoSGDiTModel"})}
    for seed, (comp, (cls, cfg, kind, extra)) in enumerate(models.items()):
        with torch.device("meta"):
            model = cls(**cfg)
        folder = root / COMPONENTS[comp][0]
        total += _write_safetensors(folder / WEIGHT_FILES[kind],
                                    {k: tuple(v.shape) for k, v in model.state_dict().items()}, dtype, seed)
        (folder / "config.json").write_text(json.dumps({**extra, **model.config}))
    dino_cfg = dict(sizes.dino)
    mlp = dino_cfg.pop("mlp_ratio", 4)
    dino_cfg["intermediate_size"] = int(mlp * dino_cfg["hidden_size"])
    for seed, comp in enumerate(("dinov2", "triposg_dinov2"), start=10):
        config = Dinov2Config(**dino_cfg)
        with torch.device("meta"):
            model = Dinov2Model(config)
        folder = root / COMPONENTS[comp][0]
        total += _write_safetensors(folder / "model.safetensors",
                                    {k: tuple(v.shape) for k, v in model.state_dict().items()}, dtype, seed)
        (folder / "config.json").write_text(config.to_json_string())
    sched = root / COMPONENTS["scheduler"][0]
    sched.mkdir(parents=True, exist_ok=True)
    (sched / "scheduler_config.json").write_text(json.dumps({"_class_name": "RectifiedFlowScheduler", "shift": 1.0}))
    return total


def _evict(root: Path) -> None:
    """Drop these files (only) from the page cache: the next read comes from the disk."""
    for path in root.rglob("*.safetensors"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from actionmesh_core.validation import validate_weights
t0 = time.perf_counter()
validate_weights({weights!r}, "video", values={values})
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _measure(weights: Path, values: bool, cache_dir: Path) -> dict:
    code = _CHILD.format(root=str(ROOT), weights=str(weights), values=values)
    env = {**os.environ, "ACTIONMESH_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="bf16", choices=sorted(_ST), help="dtype of the written tensors")
    parser.add_argument("--keep", help="write the layout here and keep it (default: a temporary folder, removed)")
    parser.add_argument("--tiny", action="store_true", help="tiny test sizes (seconds)")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="weights_check_"))
    try:
        t0 = time.perf_counter()
        written = build_layout(root, args.dtype, args.tiny)
        print(f"layout: {written / 1e9:.2f} GB of {args.dtype} tensors in {len(list(root.rglob('*.safetensors')))} "
              f"files, written in {time.perf_counter() - t0:.0f} s ({root})", flush=True)
        caches = Path(tempfile.mkdtemp(prefix="weights_check_cache_"))
        rows = {"headers": _measure(root, False, caches / "h")}
        _evict(root)
        rows["cold"] = _measure(root, True, caches / "cold")
        rows["warm"] = _measure(root, True, caches / "warm")
        rows["remembered"] = _measure(root, True, caches / "warm")
        shutil.rmtree(caches, ignore_errors=True)
        base = rows["headers"]["seconds"]
        print("| check | seconds | GB scanned | GB/s | x headers-only | peak RSS MB |")
        print("|---|---|---|---|---|---|")
        for name, row in rows.items():
            scanned = written if name in ("cold", "warm") else 0
            rate = f"{scanned / 1e9 / row['seconds']:.2f}" if scanned else "-"
            print(f"| {name} | {row['seconds']:.2f} | {scanned / 1e9:.2f} | {rate} | {row['seconds'] / base:.1f} | "
                  f"{row['rss_mb']:.0f} |")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
