"""Small clips, meshes and settings for the batch tests (tiny weights, a few seconds per clip on CPU)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

# run options of the tests: CPU, 2 stage I steps, coarse SDF meshing (5 -> 6)
FAST = ["--device", "cpu", "--fast", "--steps", "2", "--octree-depth", "5", "--refine-depth", "6"]
SPHERE_VERTICES = 42  # trimesh.creation.icosphere(1)


def fast_config():
    """The PipelineConfig matching FAST."""
    from actionmesh_core.pipeline import PipelineConfig

    return PipelineConfig(device="cpu", steps=2, stage0_steps=50, octree_depth=5, refine_depth=6)


def make_clip(folder: Path, frames: int = 4, seed: int = 0, size: int = 48) -> Path:
    """A folder of ``frames`` RGBA PNGs: a coloured square moving right on a transparent background."""
    folder.mkdir(parents=True, exist_ok=True)
    colour = np.random.default_rng(seed).integers(30, 230, 3)
    for k in range(frames):
        image = np.zeros((size, size, 4), np.uint8)
        image[12:32, 8 + 2 * k:28 + 2 * k, :3] = colour
        image[12:32, 8 + 2 * k:28 + 2 * k, 3] = 255
        Image.fromarray(image).save(folder / f"{k:02d}.png")
    return folder


def make_corrupt_clip(folder: Path) -> Path:
    """A frame folder whose first PNG is truncated (a decoder error)."""
    make_clip(folder)
    data = (folder / "00.png").read_bytes()
    (folder / "00.png").write_bytes(data[:len(data) // 3])
    return folder


def make_mesh(path: Path) -> Path:
    """A 42-vertex icosphere (keeps stage 0 and stage II tiny)."""
    trimesh.creation.icosphere(1).export(str(path))
    return path


def write_csv(path: Path, rows) -> Path:
    """A CSV manifest from dicts (header = keys of the first row)."""
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(str(row.get(k, "")) for k in keys) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_report(out: Path) -> dict:
    """report.jsonl as {clip: row}."""
    rows = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines() if line.strip()]
    return {row["clip"]: row for row in rows}


def temp_files(folder: Path) -> list:
    """Leftovers of the atomic writers: temporary files and (hidden) staging folders."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))
