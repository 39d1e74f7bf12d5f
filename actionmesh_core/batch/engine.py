"""The batch driver: plan (hash, skip), run on an engine (local or Ray), report.

:func:`run_batch` is the Python entry point behind ``python -m actionmesh_core batch``::

    from actionmesh_core.batch import BatchSettings, read_inputs, run_batch
    from actionmesh_core.pipeline import PipelineConfig

    clips = read_inputs(["clips.csv"])
    summary = run_batch(clips, BatchSettings(weights="weights", out_dir="out",
                                             config=PipelineConfig().fast()))
    print(summary.counts)            # {"done": 3, "failed": 1}

Events (:mod:`.events`): ``on_event(event: dict)`` receives every event of the
batch; the console progress display is one such listener.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ..interrupts import describe
from ..pipeline import PipelineConfig
from ..validation import FrameOptions
from .events import BatchError, ConsoleProgress, Event
from .manifest import ClipSpec
from .state import ReportWriter, content_hash, done_record, file_digest, frames_digest, summary_table, \
    weights_fingerprint
from .formats import output_path
from .worker import FRAME_OPTIONS, PIPELINE_OPTIONS, ClipJob, ClipResult, ClipRunner, one_line

__all__ = ["BatchSettings", "RayOptions", "BatchSummary", "BatchError", "plan_batch", "run_batch"]

PathLike = Union[str, os.PathLike]


@dataclass
class BatchSettings:
    """Batch-wide settings (per-clip manifest values override ``config`` fields, ``format`` and ``interpolation``).

    Attributes:
        weights: weights root folder. out_dir: output folder (created).
        config: base :class:`PipelineConfig`. frame_options: base :class:`FrameOptions` (a manifest's
        ``mask_dir``, ``frame_start``, ``frame_stride``, ``max_frames`` override it per clip).
        format: output format (a key of ``actionmesh_core.export.FORMATS``). interpolation: STEP | LINEAR.
        export_options: more ``export_animation`` keywords (``bones``, ``influences``).
        force: redo clips that are already done. retries: extra attempts for a clip whose worker died (Ray).
    """

    weights: PathLike
    out_dir: PathLike
    config: PipelineConfig = field(default_factory=PipelineConfig)
    frame_options: FrameOptions = field(default_factory=FrameOptions)
    format: str = "glb"
    interpolation: str = "STEP"
    export_options: Dict[str, Any] = field(default_factory=dict)
    force: bool = False
    retries: int = 1


@dataclass
class RayOptions:
    """Ray engine options.

    Attributes:
        address: an existing cluster (``"auto"``, ``"ray://head:10001"``, ``"10.0.0.1:6379"``); None starts a
            local Ray instance on this machine.
        workers: number of actors (default: one per GPU of the cluster with ``gpus_per_worker`` = 1, else 1).
        gpus_per_worker: GPUs reserved per actor (fractions share a GPU; default 1 when the cluster has GPUs, else 0).
        cpus_per_worker: CPUs per actor (also its torch thread count).
        verbose: forward worker logs to this terminal.
    """

    address: Optional[str] = None
    workers: Optional[int] = None
    gpus_per_worker: Optional[float] = None
    cpus_per_worker: float = 1.0
    verbose: bool = False


@dataclass
class BatchSummary:
    """What a batch did.

    Attributes:
        rows: one report row per clip, in clip order. interrupted: stopped by Ctrl-C.
        seconds: wall seconds of the batch. report: path of report.jsonl.
    """

    rows: List[Dict[str, Any]]
    interrupted: bool
    seconds: float
    report: Path

    @property
    def counts(self) -> Dict[str, int]:
        """Clips per status."""
        out: Dict[str, int] = {}
        for row in self.rows:
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out

    def table(self) -> str:
        """The summary table (see :func:`summary_table`)."""
        return summary_table(self.rows)


# --------------------------------------------------------------------------- planning


def _jsonable(value):
    return str(value) if isinstance(value, os.PathLike) else value


def _export_options(job: ClipJob):
    from ..export import ExportOptions

    return ExportOptions(interpolation=job.interpolation, **job.export_options)


def _hashed_settings(job: ClipJob) -> Dict[str, Any]:
    out = {k: v for k, v in job.config.items() if k not in ("device", "low_memory")}
    # rig options change only the skinned formats' files: a GLB is not redone for another --bones
    export = dict(job.export_options) if job.format.endswith("-skinned") else {}
    out.update(format=job.format, interpolation=job.interpolation, frames=dict(job.frame_options), export=export)
    return out


def _clip_job(clip: ClipSpec, settings: BatchSettings) -> ClipJob:
    config = asdict(settings.config)
    config.update({k: v for k, v in clip.options.items() if k in PIPELINE_OPTIONS})
    frame_options = {k: _jsonable(v) for k, v in asdict(settings.frame_options).items()}
    frame_options.update({FRAME_OPTIONS[k]: v for k, v in clip.options.items() if k in FRAME_OPTIONS})
    if "fps" in clip.options:  # the clip's own input frame rate wins over the batch's
        frame_options["fps"] = clip.options["fps"]
    return ClipJob(name=clip.name, frames=str(clip.frames), mesh=str(clip.mesh) if clip.mesh is not None else None,
                   config=config, format=clip.options.get("format", settings.format),
                   interpolation=clip.options.get("interpolation", settings.interpolation),
                   out_dir=str(settings.out_dir), frame_options=frame_options,
                   export_options=dict(settings.export_options))


def plan_batch(clips: Sequence[ClipSpec], settings: BatchSettings, weights_digest: Optional[str] = None):
    """Turn clips into jobs; clips that are done (same content hash) become ``skipped`` rows.

    Reads every input file once (hashing; frames are decoded later, by the worker's checks). A clip whose
    options are out of range, whose format cannot be written here, or whose frames or mesh cannot be read
    becomes a ``failed`` row (error_kind ``input``) and the batch goes on.

    Returns:
        ``(jobs, rows)``: the jobs to run, and a dict name -> row for skipped / failed clips.
    """
    from ..validation import validate_export, validate_options

    out_dir = Path(settings.out_dir)
    weights_digest = weights_digest or weights_fingerprint(settings.weights)
    jobs: List[ClipJob] = []
    rows: Dict[str, Dict[str, Any]] = {}
    for clip in clips:
        job = _clip_job(clip, settings)
        try:
            validate_options(PipelineConfig(**job.config))
            validate_export(output_path(out_dir, job.name, job.format), job.format, _export_options(job))
            mask_dir = job.frame_options.get("mask_dir")
            digest = content_hash(frames_digest(job.frames) + (frames_digest(mask_dir) if mask_dir else ""),
                                  file_digest(job.mesh) if job.mesh else None, _hashed_settings(job),
                                  weights_digest)
        except (OSError, ValueError) as exc:
            rows[clip.name] = ClipResult(clip=clip.name, status="failed", error_kind="input",
                                         error=f"{clip.source}: {one_line(exc)}", frames=job.frames,
                                         mesh=job.mesh).row()
            continue
        job.hash, job.settings = digest, _hashed_settings(job)
        record = None if settings.force else done_record(out_dir, clip.name, digest)
        if record is not None:
            rows[clip.name] = ClipResult(
                clip=clip.name, status="skipped", seconds=record.get("seconds") or {},
                total_seconds=record.get("total_seconds"), worker=record.get("worker"), hash=digest,
                frames=job.frames, mesh=job.mesh,
                outputs=[str(out_dir / o["path"]) for o in record["outputs"]]).row()
        else:
            jobs.append(job)
    return jobs, rows


def check_batch(clips: Sequence[ClipSpec], settings: BatchSettings) -> Dict[str, Any]:
    """The batch-wide checks, before any input is hashed or model loaded (seconds).

    Options of the command line, the output folder (nothing created), the batch format's optional module,
    and the weights for every mode the clips need (configs and safetensors headers: once for the batch).

    Returns:
        ``{"video" | "video+mesh": validate_weights(...)}`` for the workers.

    Raises:
        InputError subclasses (OptionError, OutputPathError, WeightsError, WeightsMissingError, BatchError).
    """
    from ..export import ExportOptions
    from ..validation import (check_frame_options, validate_export, validate_options, validate_output_folder,
                              validate_weights)

    validate_options(settings.config)
    check_frame_options(settings.frame_options)
    validate_output_folder(settings.out_dir, "batch output folder")
    if settings.retries < 0:
        raise BatchError(f"retries must be >= 0, got {settings.retries}")
    validate_export(output_path(Path(settings.out_dir), "clip", settings.format), settings.format,
                    ExportOptions(interpolation=settings.interpolation, **settings.export_options))
    modes = sorted({"video+mesh" if clip.mesh else "video" for clip in clips})
    return {mode: validate_weights(settings.weights, mode) for mode in modes}


# --------------------------------------------------------------------------- engines


def _run_local(jobs: Sequence[ClipJob], settings: BatchSettings, emit: Callable[[Event], None],
               record: Callable[[Dict[str, Any]], None], checked_weights: Dict[str, Any]) -> bool:
    """Run every job in this process, models loaded once. Returns True when interrupted (Ctrl-C)."""
    if not jobs:
        return False
    runner = ClipRunner(settings.weights, settings.config, worker="local",
                        on_status=lambda status: emit({"event": "status", **status}), checked_weights=checked_weights)
    try:
        for job in jobs:
            try:
                emit({"event": "start", "clip": job.name, "worker": "local", "attempt": 1})
                result = runner.run(job)
            except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP (actionmesh_core.interrupts)
                # the atomic writers removed their temporary files; a record only exists once all outputs do
                row = ClipResult(clip=job.name, status="interrupted", error=f"stopped by {describe(exc)} before it "
                                 "finished; the next run of the batch redoes it", worker="local", attempts=1,
                                 hash=job.hash, frames=job.frames, mesh=job.mesh).row()
                if done_record(Path(job.out_dir), job.name, job.hash):
                    row.update(status="done", error=None)
                record(row)
                return True
            result.attempts = 1
            record(result.row())
    finally:
        runner.close()
    return False


def run_batch(clips: Sequence[ClipSpec], settings: BatchSettings, engine: str = "local",
              ray_options: Optional[RayOptions] = None, progress: bool = True,
              on_event: Optional[Callable[[Event], None]] = None) -> BatchSummary:
    """Convert many clips: skip those already done, run the rest, write ``report.jsonl``.

    Args:
        clips: from :func:`~actionmesh_core.batch.manifest.read_inputs`.
        settings: :class:`BatchSettings`.
        engine: ``"local"`` (this process, models loaded once) or ``"ray"`` (one actor per worker).
        ray_options: :class:`RayOptions` for the Ray engine.
        progress: draw the console progress (one bar over clips + one line per worker).
        on_event: also receives every event (see the module docstring).

    Returns:
        :class:`BatchSummary` (``interrupted`` True after Ctrl-C: finished clips are kept, the clip being
        converted left no partial file, and a second run picks up where this one stopped).

    Raises:
        InputError (one line, before any input is hashed or model loaded): BatchError (Ray missing or the
        cluster unusable), OptionError, OutputPathError, WeightsError / WeightsMissingError.
    """
    if engine not in ("local", "ray"):
        raise BatchError(f"engine must be 'local' or 'ray', got {engine!r}")
    start = time.perf_counter()
    out_dir = Path(settings.out_dir)
    display = ConsoleProgress(enabled=progress)

    def emit(event: Event) -> None:
        display(event)
        if on_event is not None:
            on_event(event)

    if engine == "ray":  # fail fast on a missing Ray, before reading any input
        from .ray_engine import import_ray

        import_ray()
    checked_weights = check_batch(clips, settings)
    jobs, rows = plan_batch(clips, settings)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"cannot create the output folder {out_dir}: {one_line(exc)}") from None
    report = ReportWriter(out_dir, [clip.name for clip in clips])
    for row in rows.values():
        report.add(row)
    report.flush()
    emit({"event": "planned", "total": len(clips), "to_run": len(jobs), "rows": list(rows.values())})

    def record(row: Dict[str, Any]) -> None:
        report.add(row)
        emit({"event": "finish", "row": row})

    interrupted = False
    try:
        if engine == "local":
            interrupted = _run_local(jobs, settings, emit, record, checked_weights)
        else:
            from .ray_engine import run_ray

            interrupted = run_ray(jobs, settings, ray_options or RayOptions(), emit, record, checked_weights)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        report.flush()
        emit({"event": "end"})
    return BatchSummary(rows=list(report.rows.values()), interrupted=interrupted,
                        seconds=time.perf_counter() - start, report=report.path)
