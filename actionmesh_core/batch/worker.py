"""One batch worker: a resident :class:`ActionMeshPipeline` that turns clip jobs into outputs + a record.

The same :class:`ClipRunner` runs in the driver process (``--engine local``) and
inside each Ray actor (``--engine ray``): models are loaded on the first clip
and kept for every later clip (unless ``low_memory``). Per clip it

1. removes temporary files a killed earlier attempt left beside this clip's outputs;
2. checks the clip with :func:`actionmesh_core.validation.validate_run`, the check of the
   single-clip command (options, anchor mesh, every frame file read once, anchor frame
   inside the clip), before the models are used for it; the weights were checked once
   for the whole batch;
3. runs the pipeline (ActionMesh §3: stage 0 -> stage I -> stage II, :mod:`actionmesh_core.stages`);
4. writes the outputs through the export stage (:func:`actionmesh_core.stages.export_files`,
   atomic files), then the record (its content hash).

Any failure of one clip (bad frames, bad mesh, out of memory, a bug) becomes a
failed :class:`ClipResult` with a one-line message; the runner stays usable for
the next clip. ``KeyboardInterrupt`` is not caught (the engine stops the batch).
"""
from __future__ import annotations

import gc
import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from ..errors import InputError
from ..pipeline import ActionMeshPipeline, PipelineConfig
from ..sampling.common import SamplingCancelled
from .formats import output_path
from .state import remove_stale_temps, write_record

__all__ = ["ClipJob", "ClipResult", "ClipRunner", "one_line", "is_out_of_memory", "PIPELINE_OPTIONS", "FRAME_OPTIONS"]

# PipelineConfig fields that a manifest row may override
PIPELINE_OPTIONS = ("anchor_frame", "seed", "steps", "mode", "chain_reinforce", "fps")
# manifest column -> FrameOptions field
FRAME_OPTIONS = {"frame_start": "start", "frame_stride": "stride", "max_frames": "max_frames", "mask_dir": "mask_dir",
                 "margin": "margin"}


def one_line(text: Any, limit: int = 400) -> str:
    """Collapse an error message to one line of at most ``limit`` characters."""
    line = "; ".join(" ".join(part.split()) for part in str(text).splitlines() if part.strip())
    return line if len(line) <= limit else line[:limit - 3] + "..."


@dataclass
class ClipJob:
    """Everything a worker needs for one clip (picklable; paths must be readable on the worker's node).

    Attributes:
        name: output name. frames: frame folder or video. mesh: optional anchor mesh file.
        config: the clip's PipelineConfig fields (dict). frame_options: its FrameOptions fields (dict).
        format: output format (a key of ``actionmesh_core.export.FORMATS``). interpolation: STEP | LINEAR.
        export_options: more ``export_animation`` keywords (bones, influences).
        out_dir: the batch output folder. hash: the clip's content hash (written into its record).
        settings: the hashed settings (written into its record).
    """

    name: str
    frames: str
    mesh: Optional[str]
    config: Dict[str, Any]
    format: str
    interpolation: str
    out_dir: str
    frame_options: Dict[str, Any] = field(default_factory=dict)
    export_options: Dict[str, Any] = field(default_factory=dict)
    hash: str = ""
    settings: Dict[str, Any] = field(default_factory=dict)

    def targets(self) -> List[Path]:
        """The main output file and the record of this clip (for the clean-up of stale temporary files)."""
        return [output_path(Path(self.out_dir), self.name, self.format),
                Path(self.out_dir) / f"{self.name}.actionmesh.json"]


@dataclass
class ClipResult:
    """The outcome of one clip (one line of ``report.jsonl``).

    Attributes:
        clip: name. status: done | skipped | failed | interrupted | pending.
        error_kind: input | oom | worker-died | io | error (None when done).
        error: one-line message. traceback: for unexpected errors (bugs) only.
        seconds: seconds per stage (frames, stage0, dinov2, stage1, stage2, export, ...).
        total_seconds: wall seconds of the last attempt. outputs: written paths.
        attempts: attempts made. worker: which worker ran it. hash: content hash.
    """

    clip: str
    status: str
    error_kind: Optional[str] = None
    error: Optional[str] = None
    traceback: Optional[str] = None
    seconds: Dict[str, float] = field(default_factory=dict)
    total_seconds: Optional[float] = None
    outputs: List[str] = field(default_factory=list)
    attempts: int = 0
    worker: Optional[str] = None
    hash: Optional[str] = None
    frames: Optional[str] = None
    mesh: Optional[str] = None

    def row(self) -> Dict[str, Any]:
        """The report line (a JSON-serialisable dict, no ``traceback`` key when None)."""
        row = asdict(self)
        if row["traceback"] is None:
            row.pop("traceback")
        return row


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocation failures (``torch.OutOfMemoryError`` or an allocator RuntimeError)."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class _ResidentPipeline(ActionMeshPipeline):
    """An :class:`ActionMeshPipeline` that keeps its models loaded after a run (for the next clip).

    ``run`` ends with ``free()``; here that drops nothing unless ``low_memory`` is set (then each stage
    loads and frees its model as in a single run).
    """

    def free(self, component: Optional[str] = None) -> None:
        if component is None and not self.config.low_memory:
            return
        super().free(component)

    def release(self) -> None:
        """Drop every model (end of the batch)."""
        ActionMeshPipeline.free(self)


class ClipRunner:
    """Runs clip jobs on one resident pipeline (one per process / Ray actor).

    Args:
        weights: weights root folder (released layout).
        config: the batch's :class:`PipelineConfig` (device, dtype and low_memory are fixed for the runner;
            the other fields are replaced per clip from ``ClipJob.config``).
        worker: a label for reports ("local", "w0", ...).
        on_status: ``on_status(status_dict)`` after each pipeline step (progress display).
        checked_weights: ``{"video" | "video+mesh": validate_weights(...)}`` from the batch's one weights
            check (missing modes are checked here on first use).

    Attributes:
        status: ``{"worker", "pid", "host", "clip", "stage", "step", "total", "since"}`` of the current clip.
    """

    def __init__(self, weights, config: PipelineConfig, worker: str = "local",
                 on_status: Optional[Callable[[Dict[str, Any]], None]] = None,
                 checked_weights: Optional[Dict[str, Any]] = None):
        self.pipeline = _ResidentPipeline(weights, config, progress=self._progress)
        self.checked_weights: Dict[str, Any] = dict(checked_weights or {})
        self.base_config = config
        self.worker = worker
        self.on_status = on_status
        self._cancel = False
        self.status: Dict[str, Any] = {"worker": worker, "pid": os.getpid(), "host": socket.gethostname(),
                                       "device": str(self.pipeline.device), "clip": None, "stage": "idle",
                                       "step": 0, "total": 0, "since": time.time()}

    # ------------------------------------------------------------------ status / cancel

    def _set_status(self, **values) -> None:
        self.status.update(values)
        if self.on_status is not None:
            self.on_status(dict(self.status))

    def _progress(self, info: dict):
        stage = info.get("stage", "")
        if info.get("num_windows", 1) > 1:
            stage = f"{stage} w{info['window']}/{info['num_windows']}"
        self._set_status(stage=stage, step=int(info.get("step", 0)), total=int(info.get("total", 0)))
        return False if self._cancel else None

    def cancel(self) -> None:
        """Ask the current clip to stop at the next sampler step (it is then recorded as interrupted)."""
        self._cancel = True

    # ------------------------------------------------------------------ one clip

    def _config_for(self, job: ClipJob) -> PipelineConfig:
        names = {f.name for f in fields(PipelineConfig)}
        values = {k: v for k, v in job.config.items() if k in names and k not in ("device", "dtype", "low_memory")}
        return replace(self.base_config, **values)

    def _plan(self, job: ClipJob, config: PipelineConfig):
        """The single-clip command's checks (:func:`validate_run`), before the models are used for this clip."""
        from ..validation import FrameOptions, validate_run, validate_weights

        mode = "video+mesh" if job.mesh is not None else "video"
        if mode not in self.checked_weights:
            self.checked_weights[mode] = validate_weights(self.pipeline.layout.root, mode)
        out = output_path(Path(job.out_dir), job.name, job.format)
        from ..export import FORMATS

        return validate_run(job.frames, self.pipeline.layout.root, config, mesh=job.mesh, out=out,
                            out_suffixes=FORMATS[job.format].suffixes, export_format=job.format,
                            frame_options=FrameOptions(**job.frame_options),
                            checked_weights=self.checked_weights[mode])

    def _export(self, job: ClipJob, animation, fps: float) -> List[Path]:
        from ..stages import export_files

        result = export_files(animation, output_path(Path(job.out_dir), job.name, job.format), job.format, fps=fps,
                              interpolation=job.interpolation, **job.export_options)
        return [Path(f) for f in result.files]

    def run(self, job: ClipJob) -> ClipResult:
        """Process one clip; never raises except ``KeyboardInterrupt`` (failures are returned).

        Returns:
            :class:`ClipResult` with status ``done``, ``failed`` or ``interrupted`` (cancelled).
        """
        self._cancel = False
        start = time.perf_counter()
        result = ClipResult(clip=job.name, status="failed", worker=self.worker, hash=job.hash, frames=job.frames,
                            mesh=job.mesh)
        self._set_status(clip=job.name, stage="checking", step=0, total=0, since=time.time())
        stage = "input"
        try:
            remove_stale_temps(job.targets())
            config = self._config_for(job)
            self.pipeline.config = config
            plan = self._plan(job, config)
            stage = "run"
            run = self.pipeline.run(plan)
            result.seconds.update(run.timings)
            stage = "io"
            self._set_status(stage="export", step=0, total=0)
            t0 = time.perf_counter()
            outputs = self._export(job, run.animation, plan.fps)
            result.seconds["export"] = time.perf_counter() - t0
            result.total_seconds = time.perf_counter() - start
            out_dir = Path(job.out_dir)
            write_record(out_dir, job.name, {
                "hash": job.hash, "clip": job.name, "frames": job.frames, "mesh": job.mesh,
                "settings": job.settings, "outputs": [{"path": os.path.relpath(p, out_dir), "bytes": p.stat().st_size}
                                                      for p in map(Path, outputs)],
                "seconds": result.seconds, "total_seconds": result.total_seconds, "worker": self.worker,
                "frames_count": int(run.animation.num_frames), "vertices": int(run.animation.num_vertices),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            result.status = "done"
            result.outputs = [str(p) for p in outputs]
        except SamplingCancelled:
            result.status, result.error_kind, result.error = "interrupted", None, "stopped before it finished"
        except Exception as exc:  # one clip's failure must not stop the batch
            result.error = one_line(exc) or type(exc).__name__
            if is_out_of_memory(exc):
                result.error_kind = "oom"
                result.error = (f"out of memory on {self.pipeline.device}: {result.error} (try --low-memory, "
                                "fewer frames, or lower meshing depths)")
            elif isinstance(exc, InputError) or (stage == "input" and isinstance(exc, (ValueError, OSError))):
                result.error_kind = "input"
            elif stage == "io" and isinstance(exc, (OSError, ImportError, ValueError)):
                result.error_kind = "io"  # disk full, read-only folder, missing exporter module
            else:
                result.error_kind = "error"
                result.traceback = traceback.format_exc()
        finally:
            if result.status != "done":
                self._release_memory()
            self._set_status(clip=None, stage="idle", step=0, total=0, since=time.time())
        if result.total_seconds is None:
            result.total_seconds = time.perf_counter() - start
        return result

    def _release_memory(self) -> None:
        gc.collect()
        if self.pipeline.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the loaded models."""
        self.pipeline.release()
