"""Batch conversion on Ray: a local Ray instance on CPU, 2 workers, tiny weights, one Ray session for the file.

- 3 good clips + 1 corrupt one -> 3 outputs + 1 recorded failure; a second run skips the 3;
- a worker killed (SIGKILL) in the middle of a clip -> the clip is retried on a new worker, or, with no retries
  left, recorded as failed; never a half-written output;
- Ctrl-C in the driver -> in-flight clips recorded as interrupted, their workers stopped, nothing partial.
Outside CI the file is skipped when Ray is not installed; in CI (CI=true) Ray is required.
"""
from __future__ import annotations

import os
import signal

import pytest

if os.environ.get("CI") != "true":
    pytest.importorskip("ray", reason="Ray is not installed (pip install ray); the Ray engine tests need it")
import ray  # noqa: E402

import data_dirs  # noqa: E402
from actionmesh_core.batch import BatchSettings, ClipSpec, RayOptions, read_inputs, run_batch  # noqa: E402
from actionmesh_core.batch.state import record_path  # noqa: E402
from actionmesh_core.io.glb import read_animated_glb  # noqa: E402
from actionmesh_core.weights import make_tiny_weights  # noqa: E402
from batch_helpers import (SPHERE_VERTICES, fast_config, make_clip, make_corrupt_clip, make_mesh,  # noqa: E402
                           read_report, temp_files, write_csv)

pytestmark = pytest.mark.ray
TWO_WORKERS = RayOptions(workers=2, cpus_per_worker=1)


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance (2 CPUs) shared by every test of this file; the engine leaves it running."""
    # worker start-up on 2 shared, busy cores can take longer than Ray's default 60 s registration timeout
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _system_config={"worker_register_timeout_seconds": 600},
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 [str(data_dirs.REPO_ROOT)]
                 + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_batch")
    return {"weights": make_tiny_weights(root / "weights"), "sphere": make_mesh(root / "sphere.ply"), "root": root}


def _settings(assets, out, **kw):
    return BatchSettings(weights=assets["weights"], out_dir=out, config=fast_config(), **kw)


def test_ray_two_workers_three_good_one_corrupt_then_resume(ray_session, assets, tmp_path):
    lib = tmp_path / "lib"
    rows = [{"clip": str(make_clip(lib / f"good{k}", seed=k)), "mesh": str(assets["sphere"])} for k in range(3)]
    rows.insert(1, {"clip": str(make_corrupt_clip(lib / "corrupt")), "mesh": str(assets["sphere"])})
    clips = read_inputs([write_csv(tmp_path / "clips.csv", rows)])
    out = tmp_path / "out"
    events = []
    summary = run_batch(clips, _settings(assets, out), engine="ray", ray_options=TWO_WORKERS, progress=False,
                        on_event=events.append)
    assert summary.counts == {"done": 3, "failed": 1}
    report = read_report(out)
    assert report["corrupt"]["status"] == "failed" and report["corrupt"]["error_kind"] == "input"
    for k in range(3):
        row = report[f"good{k}"]
        assert row["status"] == "done" and row["attempts"] == 1
        anim = read_animated_glb(out / f"good{k}.glb")
        assert anim.num_frames == 4 and anim.num_vertices == SPHERE_VERTICES
    # both actors worked, in their own processes (results streamed back from each)
    assert {row["worker"] for row in report.values()} == {"w0", "w1"}
    ready = [e for e in events if e["event"] == "worker-ready"]
    assert len({e["pid"] for e in ready}) == 2 and os.getpid() not in {e["pid"] for e in ready}
    assert any(e["event"] == "status" and e.get("stage") not in (None, "idle", "starting", "done") for e in events)
    assert temp_files(out) == []

    # second run: the 3 done clips are skipped (only the corrupt one runs again)
    stamps = {k: (out / f"good{k}.glb").stat().st_mtime_ns for k in range(3)}
    summary = run_batch(clips, _settings(assets, out), engine="ray", ray_options=TWO_WORKERS, progress=False)
    assert summary.counts == {"skipped": 3, "failed": 1}
    assert {k: (out / f"good{k}.glb").stat().st_mtime_ns for k in range(3)} == stamps


def _kill_when_running(target: str, killed: list):
    """An event listener that SIGKILLs the worker process as soon as it reports being inside clip ``target``."""
    def listener(event):
        if (not killed and event["event"] == "status" and event.get("clip") == target
                and event.get("stage") not in (None, "idle")):
            os.kill(event["pid"], signal.SIGKILL)
            killed.append(event["stage"])
    return listener


@pytest.mark.parametrize("retries", [1, 0])
def test_ray_worker_killed_mid_clip_is_retried_or_recorded_never_half_written(ray_session, assets, tmp_path, retries):
    clips = [ClipSpec(f"c{k}", make_clip(tmp_path / f"c{k}", seed=k), mesh=assets["sphere"]) for k in range(2)]
    out = tmp_path / "out"
    killed = []
    events = []

    def listen(event):
        events.append(event)
        _kill_when_running("c0", killed)(event)

    summary = run_batch(clips, _settings(assets, out, retries=retries), engine="ray", ray_options=TWO_WORKERS,
                        progress=False, on_event=listen)
    assert killed, "the worker was never seen inside the clip"
    died = [e for e in events if e["event"] == "worker-died"]
    assert len(died) == 1 and died[0]["clip"] == "c0" and died[0]["retry"] == bool(retries)
    c0, c1 = summary.rows
    assert c1["status"] == "done"
    if retries:
        assert c0["status"] == "done" and c0["attempts"] == 2
        assert read_animated_glb(out / "c0.glb").num_vertices == SPHERE_VERTICES
    else:
        assert c0["status"] == "failed" and c0["error_kind"] == "worker-died" and c0["attempts"] == 1
        assert not (out / "c0.glb").exists() and not record_path(out, "c0").exists()
    assert temp_files(out) == []
    assert read_report(out)["c0"]["status"] == c0["status"]


def test_ray_ctrl_c_records_in_flight_clips_and_a_rerun_finishes(ray_session, assets, tmp_path):
    clips = [ClipSpec(f"c{k}", make_clip(tmp_path / f"c{k}", seed=k), mesh=assets["sphere"]) for k in range(3)]
    out = tmp_path / "out"

    def ctrl_c(event):
        if event["event"] == "status" and event.get("clip") == "c0" and event.get("stage") not in (None, "idle"):
            raise KeyboardInterrupt

    summary = run_batch(clips, _settings(assets, out), engine="ray", ray_options=TWO_WORKERS, progress=False,
                        on_event=ctrl_c)
    assert summary.interrupted
    statuses = {r["clip"]: r["status"] for r in summary.rows}
    assert statuses["c0"] == "interrupted" and statuses["c2"] == "pending"
    for name, status in statuses.items():  # an output exists exactly for the clips recorded as done
        assert (out / f"{name}.glb").exists() == (status == "done") == record_path(out, name).exists()
    assert temp_files(out) == []
    summary = run_batch(clips, _settings(assets, out), engine="ray", ray_options=TWO_WORKERS, progress=False)
    assert {r["status"] for r in summary.rows} <= {"done", "skipped"} and summary.counts.get("done", 0) >= 2
