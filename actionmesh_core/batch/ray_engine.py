"""The Ray engine: one actor per worker, each holding one resident ActionMeshPipeline.

Each actor reserves ``gpus_per_worker`` GPUs and ``cpus_per_worker`` CPUs, loads
its models on its first clip and keeps them. The driver sends one clip at a time
to each idle actor (so long and short clips balance out), and handles each
result as soon as it arrives (report row, progress). A worker that dies
(killed, lost node, host out of memory) is replaced; its clip is retried up to
``retries`` more times, then recorded as failed (``worker-died``). Outputs are
written by the worker through the atomic writers, so a killed worker leaves no
half-written file at an output name; the driver also removes the temporary
files such a worker left. Inputs and ``--out`` must be reachable at the same
paths on every node (a shared file system) when the cluster has several nodes.

Ctrl-C, SIGTERM or SIGHUP: in-flight clips are stopped (their actors killed),
recorded as interrupted, and every finished clip is kept; the next run skips those.
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Optional, Sequence

from ..interrupts import describe, reinstall
from .state import done_record, remove_stale_temps
from .worker import ClipJob, ClipResult, one_line

__all__ = ["import_ray", "run_ray"]

_STATUS_INTERVAL = 0.5


def import_ray():
    """Import Ray, or raise a one-line :class:`BatchError` naming the install command."""
    from .events import BatchError

    try:
        import ray
    except ImportError:
        raise BatchError("the Ray engine needs Ray: pip install 'ray>=2.9' (or use --engine local)") from None
    return ray


class _ClipActor:
    """Ray actor body: a :class:`ClipRunner` plus a status query answered while a clip runs."""

    def __init__(self, weights: str, config: Dict[str, Any], worker: str, threads: int,
                 checked_weights: Dict[str, Any]):
        import torch

        from ..pipeline import PipelineConfig
        from .worker import ClipRunner

        torch.set_num_threads(max(1, threads))
        self.runner = ClipRunner(weights, PipelineConfig(**config), worker=worker, checked_weights=checked_weights)

    def ready(self) -> Dict[str, Any]:
        return dict(self.runner.status)

    def run(self, job: ClipJob) -> ClipResult:
        return self.runner.run(job)

    def status(self) -> Dict[str, Any]:
        return dict(self.runner.status)


def _start_ray(ray, options):
    """Connect to ``options.address`` or start a local instance; returns True when this call started Ray."""
    from .events import BatchError

    if ray.is_initialized():
        return False
    kwargs: Dict[str, Any] = dict(log_to_driver=options.verbose, configure_logging=options.verbose)
    package_root = str(Path(__file__).resolve().parents[2])
    if options.address is None:
        kwargs["include_dashboard"] = False
        # a busy machine can take more than Ray's default 60 s to start a worker process
        kwargs["_system_config"] = {"worker_register_timeout_seconds": 600}
        # workers on this machine import the package from the same checkout as the driver
        paths = [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}
    try:
        ray.init(address=options.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BatchError(f"cannot connect to the Ray cluster at {options.address}: {one_line(exc)} (start one "
                         "with `ray start --head`, or leave out --address for a local one)") from None
    reinstall()  # ray.init replaces the driver's SIGTERM handler with an exit: SIGTERM stops the batch like Ctrl-C
    return True


def _resources(ray, options):
    """(workers, gpus_per_worker, cpus_per_worker) after defaults and a check against the cluster."""
    from .events import BatchError

    cluster = ray.cluster_resources()
    total_gpus = float(cluster.get("GPU", 0))
    total_cpus = float(cluster.get("CPU", 0))
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if total_gpus >= 1 else 0.0
    cpus = float(options.cpus_per_worker)
    if gpus < 0 or cpus < 0:
        raise BatchError("--gpus-per-worker and --cpus-per-worker must be >= 0")
    workers = options.workers
    if workers is None:
        workers = max(1, int(total_gpus // gpus)) if gpus > 0 else 1
    if workers < 1:
        raise BatchError(f"--workers must be >= 1, got {workers}")
    if gpus > total_gpus:
        raise BatchError(f"each worker needs {gpus:g} GPU(s) but the Ray cluster has {total_gpus:g}; lower "
                         "--gpus-per-worker (0 runs on CPU) or add GPU nodes")
    if cpus > total_cpus:
        raise BatchError(f"each worker needs {cpus:g} CPU(s) but the Ray cluster has {total_cpus:g}; lower "
                         "--cpus-per-worker")
    return workers, gpus, cpus


def run_ray(jobs: Sequence[ClipJob], settings, options, emit: Callable[[Dict[str, Any]], None],
            record: Callable[[Dict[str, Any]], None], checked_weights: Optional[Dict[str, Any]] = None) -> bool:
    """Run ``jobs`` on Ray actors; returns True when interrupted (Ctrl-C).

    Raises:
        BatchError: Ray missing, cluster unreachable, not enough resources for one worker, or every worker
            failed to start (the first start error is named).
    """
    from .events import BatchError

    if not jobs:
        return False
    ray = import_ray()
    from ray.exceptions import GetTimeoutError, RayActorError, RayError

    started = _start_ray(ray, options)
    actors: Dict[str, Any] = {}
    inflight: Dict[Any, tuple] = {}  # ref -> ("ready"|"run", worker, job)
    busy: Dict[str, ClipJob] = {}
    queue: Deque[ClipJob] = deque(jobs)
    attempts: Dict[str, int] = {job.name: 0 for job in jobs}
    try:
        workers, gpus, cpus = _resources(ray, options)
        actor_cls = ray.remote(_ClipActor)
        config = asdict(settings.config)
        checked_ref = ray.put(checked_weights or {})
        generation: Dict[str, int] = {}
        ever_ready = [False]

        def start_actor(slot: int) -> None:
            generation[slot] = generation.get(slot, 0) + 1
            worker = f"w{slot}" + (f"#{generation[slot]}" if generation[slot] > 1 else "")
            actor = actor_cls.options(num_cpus=cpus, num_gpus=gpus, max_concurrency=2, max_restarts=0,
                                      max_task_retries=0).remote(str(settings.weights), config, worker,
                                                                 max(1, int(cpus)), checked_ref)
            actors[worker] = (slot, actor)
            inflight[actor.ready.remote()] = ("ready", worker, None)
            emit({"event": "status", "worker": worker, "clip": None, "stage": "starting", "step": 0, "total": 0})

        def dispatch(worker: str) -> None:
            if not queue:
                emit({"event": "status", "worker": worker, "clip": None, "stage": "done", "step": 0, "total": 0})
                return
            job = queue.popleft()
            attempts[job.name] += 1
            busy[worker] = job
            inflight[actors[worker][1].run.remote(job)] = ("run", worker, job)
            emit({"event": "start", "clip": job.name, "worker": worker, "attempt": attempts[job.name]})

        def worker_died(worker: str, job: Optional[ClipJob], exc: BaseException) -> None:
            slot, actor = actors.pop(worker)
            busy.pop(worker, None)
            ray.kill(actor, no_restart=True)
            message = one_line(exc, 200)
            retry = job is not None and attempts[job.name] <= settings.retries
            emit({"event": "worker-died", "worker": worker, "clip": job.name if job else None, "error": message,
                  "retry": retry})
            if job is not None:
                remove_stale_temps(job.targets())
                if retry:
                    queue.appendleft(job)
                else:
                    record(ClipResult(clip=job.name, status="failed", error_kind="worker-died", worker=worker,
                                      attempts=attempts[job.name], hash=job.hash, frames=job.frames, mesh=job.mesh,
                                      error=f"the worker died while converting this clip ({attempts[job.name]} "
                                            f"attempt(s)): {message}").row())
            if queue:  # a replacement only when a clip waits (e.g. the one just put back)
                start_actor(slot)

        for slot in range(min(workers, len(jobs))):
            start_actor(slot)
        last_status = 0.0
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=_STATUS_INTERVAL)
            for ref in ready:
                kind, worker, job = inflight.pop(ref)
                if worker not in actors:
                    continue
                try:
                    value = ray.get(ref)
                except RayActorError as exc:
                    if kind == "ready" and not ever_ready[0] and "creation task" in str(exc):
                        raise BatchError(f"the Ray workers cannot start: {one_line(exc, 300)}") from None
                    worker_died(worker, job, exc)
                    continue
                except RayError as exc:  # a task error outside the runner (e.g. an input that does not pickle)
                    busy.pop(worker, None)
                    if job is not None:
                        record(ClipResult(clip=job.name, status="failed", error_kind="error", worker=worker,
                                          attempts=attempts[job.name], error=one_line(exc), hash=job.hash,
                                          frames=job.frames, mesh=job.mesh).row())
                    dispatch(worker)
                    continue
                if kind == "ready":
                    ever_ready[0] = True
                    emit({"event": "worker-ready", **value})
                else:
                    busy.pop(worker, None)
                    value.attempts = attempts[job.name]
                    record(value.row())
                dispatch(worker)
            if time.monotonic() - last_status >= _STATUS_INTERVAL and busy:
                last_status = time.monotonic()
                queries = {actors[w][1].status.remote(): w for w in busy if w in actors}
                try:
                    done, _ = ray.wait(list(queries), num_returns=len(queries), timeout=_STATUS_INTERVAL)
                    for ref in done:
                        try:
                            emit({"event": "status", **ray.get(ref)})
                        except RayError:
                            pass  # the run ref reports the death
                except GetTimeoutError:
                    pass
        return False
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP (actionmesh_core.interrupts)
        for worker, job in list(busy.items()):
            ray.kill(actors[worker][1], no_restart=True)
            remove_stale_temps(job.targets())
            row = ClipResult(clip=job.name, status="interrupted", error=f"stopped by {describe(exc)} before it "
                             "finished; the next run of the batch redoes it",
                             worker=worker, attempts=attempts[job.name], hash=job.hash, frames=job.frames,
                             mesh=job.mesh).row()
            if done_record(Path(job.out_dir), job.name, job.hash):  # it finished just before the kill
                row.update(status="done", error=None)
            record(row)
        return True
    finally:
        for _, actor in actors.values():
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already dead
                pass
        if started:
            ray.shutdown()
