"""The benchmark scripts run as a user runs them (a subprocess with their tiny options), and what they print holds.

A benchmark nobody runs rots. No test imports a benchmark script (``tests/unit/test_test_layout.py`` checks it):
what a test needs of one lives in the library (``actionmesh_core.perf_model``: the pipeline workload and its
analytic FLOPs, checked in ``test_speed_paths.py``), and the scripts themselves run here:

- ``benchmarks/bench_pipeline.py --tiny``: every stage in the plain and the optimised path, its table and JSON,
  the FLOPs it reports equal to the library's model; GPU-only options refused on the CPU in one line;
  ``--low-vram`` on a GPU (marker ``cuda``).
- ``benchmarks/bench_meshing.py`` at small depths: the pre-#14 extractor, which is no longer in the tree
  (``benchmarks/_baseline_loader.py`` reads it from git history at a pinned commit), meshes the same surface as
  the library; ``_baseline_loader.py --tree`` extracts the whole pre-#14 library for the CLI comparison.
- ``benchmarks/gpu_check.sh --cpu``: the GPU check's dry run (tiny sizes on the CPU), so the next GPU run is not
  the first run of its code: every part ends ok, stage 0 runs once and each preset, in its own process, gets a
  figure on the shared anchor, and the table holds them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import data_dirs
from actionmesh_core.perf_model import STAGES, stage_flops, tiny_sizes

BENCH = data_dirs.REPO_ROOT / "benchmarks"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _run(script: str, *args, cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python3 benchmarks/<script> args...`` from a folder outside the repository."""
    return subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


# --------------------------------------------------------------------------- bench_pipeline.py


def test_pipeline_benchmark_tiny_runs_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    proc = _run("bench_pipeline.py", "--tiny", "--repeats", 1, "--threads", 0, "--markdown", "--json", out,
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| stage2 |" in proc.stdout and "| total |" in proc.stdout
    payload = json.loads(out.read_text())
    assert payload["environment"]["sizes"] == "tiny"
    results = payload["results"]
    assert [r["stage"] for r in results] == list(STAGES)
    sz = tiny_sizes()
    for r in results:
        assert r["plain_s"] > 0 and r["optimised_s"] > 0 and r["flops_plain"] >= r["flops_optimised"] > 0
        assert r["max_abs_diff"] <= 1e-4 * max(1.0, r["max_abs_ref"]), r["stage"]
        assert r["peak_bytes_plain"] is None and r["low_vram_s"] is None  # CPU: no peak figure, no low-VRAM run
        if r["stage"] != "meshing":  # (the meshing FLOPs follow the band the random field gave)
            assert r["flops_plain"] == pytest.approx(stage_flops(sz, r["stage"], "default", True), rel=1e-12)
            assert r["flops_optimised"] == pytest.approx(stage_flops(sz, r["stage"], "default", False), rel=1e-12)
    assert results[2]["stage"] == "stage1" and results[2]["flops_plain"] > results[2]["flops_optimised"]  # K/V cache


def test_pipeline_benchmark_refuses_gpu_only_options_on_cpu(tmp_path):
    for args, said in ((["--device", "cpu", "--compile"], "CUDA"), (["--device", "cpu", "--low-vram"], "CUDA"),
                       (["--stages", "stage9"], "unknown stages")):
        proc = _run("bench_pipeline.py", "--tiny", "--threads", 0, *args, cwd=tmp_path)
        assert proc.returncode == 1, (args, proc.stdout[-2000:], proc.stderr[-2000:])
        assert said in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])


@pytest.mark.cuda
@needs_cuda
def test_pipeline_benchmark_low_vram_run_on_cuda(tmp_path):
    """The low-VRAM branch: every model parked on the CPU, the stage's own model on the GPU only while it runs;
    the models go back to the GPU afterwards (the next stage runs on them)."""
    out = tmp_path / "bench.json"
    proc = _run("bench_pipeline.py", "--tiny", "--repeats", 1, "--device", "cuda", "--low-vram", "--json", out,
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert [r["stage"] for r in results] == list(STAGES)
    for r in results:
        assert r["low_vram_s"] > 0 and r["low_vram_peak_bytes"] > 0 and r["peak_bytes_optimised"] > 0, r


# --------------------------------------------------------------------------- bench_meshing.py


def _table_rows(text: str, field: str) -> list:
    """The benchmark's markdown rows of ``field`` as lists of cells."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {field} |")]


def test_meshing_benchmark_old_and_new_extractors_mesh_the_same_surface(tmp_path):
    """At depths 4 -> 6 (seconds): the old dense-then-refine extractor from git history and the library's band
    (signs only, and with the SDF bound) give the same torus, watertight, within a voxel of the analytic surface,
    the band evaluating fewer points."""
    proc = _run("bench_meshing.py", "--fields", "torus", "--depths", "4,6", "--threads", 1, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if "its rows are left out" in proc.stdout:  # a shallow clone or a source tarball: the new column only
        pytest.skip("the pinned baseline commit is not in this checkout's git history")
    rows = _table_rows(proc.stdout, "torus")
    # field | extractor | points | time | ref | time/ref | cpu/ref | max dist (voxels) | plate | peak | faces | watertight
    assert [r[1] for r in rows] == ["old 4->6 dense+refine", "new 4->6 band, signs only", "new 4->6 band + SDF bound"]
    points = [int(r[2].replace(",", "")) for r in rows]
    faces = {int(r[10].replace(",", "")) for r in rows}
    assert len(faces) == 1 and faces.pop() > 1000, rows
    assert all(r[11] == "True" for r in rows) and all(float(r[7]) < 1.0 for r in rows), rows
    assert points[1] < points[0] and points[2] < points[0], rows


def test_end_to_end_baseline_is_the_library_before_issue_14(tmp_path):
    """The CLI comparison's old column runs the whole pre-#14 library (dense 2^8 -> 2^9 extractor), extracted from
    git history; the current tree's changes (field chunks, allocator, clean-up) must not leak into it."""
    proc = _run("_baseline_loader.py", "--tree", tmp_path / "pre14", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if "pre-#14 library: unavailable" in proc.stdout:
        pytest.skip("the pinned pre-#14 commit is not in this checkout's git history")
    root = tmp_path / "pre14"
    assert f"pre-#14 library: {root / 'actionmesh_core'}" in proc.stdout
    meshing = (root / "actionmesh_core" / "geometry" / "meshing.py").read_text()
    assert "octree_depth: int = 8" in meshing and "narrow band" not in meshing.lower()
    assert (root / "actionmesh_core" / "cli.py").is_file()
    assert "query_chunk_points" not in (root / "actionmesh_core" / "models" / "vae.py").read_text()


# --------------------------------------------------------------------------- gpu_check.sh


def test_gpu_check_dry_run_gives_every_preset_a_figure_on_one_shared_anchor(tmp_path):
    """2026-12-04 on an H200 one time limit for all presets ran out during the default preset, which had no figure,
    and each preset meshed the same anchor again.  Now stage 0 runs once (``anchor``), each preset in its own
    process under its own limit on the saved anchor, and the table lists the three presets in order."""
    env = dict(os.environ, OUT=str(tmp_path), PATH=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--cpu"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    status = {r["name"]: r["rc_text"] for r in recs if r["part"] == "status"}
    assert status == dict.fromkeys(["env", "tests", "anchor", "clip-default", "clip-fast", "clip-attention-chain",
                                    "meshing"], "ok"), status
    anchor = [r for r in recs if r["part"] == "anchor" and "parts" in r]
    assert len(anchor) == 1 and anchor[0]["anchor_vertices"] > 0 and (tmp_path / "anchor.pt").is_file()
    assert {"dinov2", "meshing", "clean-up"} <= set(anchor[0]["parts"])
    last = {}
    for r in recs:
        if r["part"] == "clip" and "preset" in r:
            last[r["preset"]] = r
    assert list(last) == ["default", "fast", "attention-chain"]  # the default first
    for preset, r in last.items():
        assert r["complete"] and "error" not in r, r
        assert r["anchor"].startswith("shared") and r["anchor_vertices"] == anchor[0]["anchor_vertices"]
        own = {"stage1", "stage2"} if preset != "attention-chain" else {"chain stage1", "chain candidates",
                                                                       "chain correspondences", "chain skinning"}
        assert own <= set(r["parts"]) and r["parts"]["meshing"] == anchor[0]["parts"]["meshing"]
        assert r["total_s"] >= sum(r["parts"][k] for k in own) + r["parts"]["meshing"] - 0.05
    table = (tmp_path / "gpu_table.md").read_text()
    rows = [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ") and "(met" in line
            or "(not met" in line]
    assert rows == ["default", "fast", "attention-chain"]
    assert "stage 0 once for all presets" in table
