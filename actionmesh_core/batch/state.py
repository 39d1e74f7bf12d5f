"""Resumability and reporting of a batch: content hashes, the record beside each output, report.jsonl, summary.

A clip's **content hash** (SHA-256, hex) covers everything that decides its
output: the bytes of every frame file (or of the video), the bytes of the
anchor mesh file, the settings that change the result (steps, seed, anchor
frame, mode, meshing depths, fps, format, interpolation, dtype, ...), a
fingerprint of the weights (per file: relative path, size and the SHA-256 of
its first and last MiB) and the record-format version. Device and memory
options (``--device``, ``--low-memory``, worker counts) are not part of it.

After a clip's outputs are written (atomically), its **record**
``<out>/<name>.actionmesh.json`` is written (atomically) last: it holds the
hash, the settings, the output files with their sizes and the seconds per
stage. A clip is *done* when its record exists, its hash equals the hash of
the current inputs and settings, and every output it lists exists with the
recorded size; a run then skips it (``--force`` redoes it). An output without
a record (a run stopped between the two writes) is simply redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from ..frames import VIDEO_EXTENSIONS, list_frame_files
from ..io.atomic import atomic_write
from ..weights import COMPONENTS, WeightLayout

__all__ = ["RECORD_SUFFIX", "REPORT_NAME", "RECORD_VERSION", "file_digest", "frames_digest", "weights_fingerprint",
           "content_hash", "record_path", "read_record", "write_record", "done_record", "remove_stale_temps",
           "ReportWriter", "summary_table"]

PathLike = Union[str, os.PathLike]
RECORD_SUFFIX = ".actionmesh.json"
REPORT_NAME = "report.jsonl"
RECORD_VERSION = 1
_CHUNK = 1 << 20


def file_digest(path: PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def frames_digest(path: PathLike) -> str:
    """SHA-256 over a clip's frames: a video's bytes, or every image file of a folder (name + bytes, natural order).

    The files taken are the ones :func:`actionmesh_core.frames.load_frames` reads
    (:func:`actionmesh_core.frames.list_frame_files`: symbolic links followed, OS metadata files skipped).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is neither a folder nor a video file.
        OSError: a file cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"frame input {path} does not exist")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise ValueError(f"frame input {path} is neither a folder of frames nor a video "
                             f"({', '.join(VIDEO_EXTENSIONS)})")
        return file_digest(path)
    digest = hashlib.sha256()
    for file in list_frame_files(path)[0]:
        if not file.exists():
            raise FileNotFoundError(f"frame {file} is a broken symbolic link (to {os.readlink(file)})")
        digest.update(file.name.encode("utf-8") + b"\0" + file_digest(file).encode("ascii") + b"\n")
    return digest.hexdigest()


def weights_fingerprint(root: PathLike) -> str:
    """SHA-256 fingerprint of a weights folder in the released layout (every component folder).

    Per file: relative path, size, and the SHA-256 of its first and last MiB (a full hash of
    multi-GB checkpoints would cost minutes per batch; any re-download or different checkpoint
    changes the header or the size). Missing folders contribute nothing (they are reported by the
    weights check).
    """
    layout = WeightLayout(root)
    digest = hashlib.sha256()
    folders = sorted({layout.path(c) for c in COMPONENTS} | {layout.root / "TripoSG/feature_extractor_dinov2"})
    for folder in folders:
        if not folder.is_dir():
            continue
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            size = file.stat().st_size
            part = hashlib.sha256()
            with open(file, "rb") as handle:
                part.update(handle.read(_CHUNK))
                if size > 2 * _CHUNK:
                    handle.seek(size - _CHUNK)
                part.update(handle.read(_CHUNK))
            digest.update(f"{file.relative_to(layout.root).as_posix()}\0{size}\0{part.hexdigest()}\n".encode())
    return digest.hexdigest()


def content_hash(frames: str, mesh: Optional[str], settings: Dict[str, Any], weights: str) -> str:
    """SHA-256 (hex) of a clip's inputs and settings.

    Args:
        frames: :func:`frames_digest` of the clip.
        mesh: :func:`file_digest` of the anchor mesh, or None.
        settings: the result-changing settings (JSON-serialisable).
        weights: :func:`weights_fingerprint`.
    """
    payload = json.dumps({"version": RECORD_VERSION, "frames": frames, "mesh": mesh, "settings": settings,
                          "weights": weights}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- the record beside each output


def record_path(out_dir: PathLike, name: str) -> Path:
    """``<out_dir>/<name>.actionmesh.json``."""
    return Path(out_dir) / f"{name}{RECORD_SUFFIX}"


def read_record(out_dir: PathLike, name: str) -> Optional[Dict[str, Any]]:
    """The record of clip ``name``, or None when it is missing or unreadable."""
    try:
        record = json.loads(record_path(out_dir, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(out_dir: PathLike, name: str, record: Dict[str, Any]) -> Path:
    """Write the record of clip ``name`` atomically (after its outputs); returns its path."""
    path = record_path(out_dir, name)
    with atomic_write(path, "w") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return path


def done_record(out_dir: PathLike, name: str, digest: str) -> Optional[Dict[str, Any]]:
    """The record of clip ``name`` if the clip is done with content hash ``digest``, else None.

    Done = record readable, same hash, every listed output present with its recorded size.
    """
    record = read_record(out_dir, name)
    if record is None or record.get("hash") != digest or not record.get("outputs"):
        return None
    for entry in record["outputs"]:
        try:
            path = Path(out_dir) / entry["path"]
            if not path.is_file() or path.stat().st_size != int(entry["bytes"]):
                return None
        except (KeyError, TypeError, ValueError, OSError):
            return None
    return record


def remove_stale_temps(targets: Iterable[PathLike]) -> List[Path]:
    """Remove what a killed writer left beside ``targets``: temporary files and staging folders.

    Only the exact names of these targets are matched: temporary files ``.<stem>.<8 chars><suffix>.tmp``
    (:mod:`actionmesh_core.io.atomic`) and staging folders ``.<stem>.actionmesh-staging-<8 chars>``
    (:func:`actionmesh_core.io.atomic.atomic_files`), so the work in progress of other clips is never touched.

    Returns:
        The removed paths.
    """
    import shutil

    from ..io.atomic import STAGING_MARK

    removed = []
    for target in targets:
        target = Path(target)
        if not target.parent.is_dir():
            continue
        temp = re.compile(r"\." + re.escape(target.stem) + r"\.[A-Za-z0-9_]{8}" + re.escape(target.suffix) + r"\.tmp")
        staging = re.compile(r"\." + re.escape(target.stem) + r"\." + re.escape(STAGING_MARK) + r"[A-Za-z0-9_]{8}")
        for entry in target.parent.iterdir():
            try:
                if temp.fullmatch(entry.name) and entry.is_file():
                    entry.unlink()
                elif staging.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    continue
                removed.append(entry)
            except OSError:
                pass
    return removed


# --------------------------------------------------------------------------- report.jsonl and the summary


class ReportWriter:
    """``<out>/report.jsonl``: one JSON object per clip (in clip order), rewritten atomically as results arrive.

    Each line: ``clip``, ``status`` (done | skipped | failed | interrupted | pending), ``error_kind``
    (input | oom | worker-died | io | error), ``error`` (one line), ``seconds`` (per stage), ``total_seconds``,
    ``outputs`` (paths), ``attempts``, ``worker``, ``hash``, ``frames``, ``mesh``.

    Args:
        out_dir: the batch output folder (exists).
        names: every clip name, in order (clips without a result yet are written as ``pending``).
        min_interval: rewrite at most this often (seconds) until :meth:`flush`.
    """

    def __init__(self, out_dir: PathLike, names: Sequence[str], min_interval: float = 1.0):
        self.path = Path(out_dir) / REPORT_NAME
        self.rows: Dict[str, Dict[str, Any]] = {name: {"clip": name, "status": "pending"} for name in names}
        self.min_interval = min_interval
        self._last = 0.0
        self._dirty = False

    def add(self, row: Dict[str, Any]) -> None:
        """Record (or replace) the row of ``row["clip"]``; rewrites the file if ``min_interval`` passed."""
        self.rows[row["clip"]] = row
        self._dirty = True
        if time.monotonic() - self._last >= self.min_interval:
            self.flush()

    def flush(self) -> Path:
        """Rewrite the file now (atomically)."""
        with atomic_write(self.path, "w") as handle:
            for row in self.rows.values():
                handle.write(json.dumps(row, sort_keys=True) + "\n")
        self._last = time.monotonic()
        self._dirty = False
        return self.path


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def summary_table(rows: Sequence[Dict[str, Any]], max_rows: int = 50) -> str:
    """A plain-text table of report rows: clip, status, worker, attempts, seconds per stage, output or error.

    With more than ``max_rows`` rows only the rows that are not done/skipped are listed (the counts line
    always covers every row).
    """
    rows = list(rows)
    order = ["checks", "frames", "stage0", "dinov2", "stage1", "stage1+chain", "stage2", "export"]
    stages: List[str] = []
    for row in rows:
        for key in (row.get("seconds") or {}):
            if key not in stages:
                stages.append(key)
    stages.sort(key=lambda s: (order.index(s) if s in order else len(order), s))
    shown = rows if len(rows) <= max_rows else [r for r in rows if r.get("status") not in ("done", "skipped")]
    header = ["clip", "status", "worker", "tries"] + stages + ["total s", "output / error"]
    table = [header]
    for row in shown:
        seconds = row.get("seconds") or {}
        detail = row.get("error") or ", ".join(Path(p).name for p in row.get("outputs") or [])
        if row.get("error_kind") and row.get("error"):
            detail = f"[{row['error_kind']}] {detail}"
        total = row.get("total_seconds")
        table.append([row["clip"], row.get("status", ""), _cell(row.get("worker")), _cell(row.get("attempts") or "")]
                     + [f"{seconds[s]:.1f}" if s in seconds else "" for s in stages]
                     + [f"{total:.1f}" if isinstance(total, (int, float)) else "", detail[:120]])
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths)) + "  " + line[-1] for line in table]
    lines.insert(1, "-" * min(120, len(lines[0])))
    counts: Dict[str, int] = {}
    for row in rows:
        counts[row.get("status", "pending")] = counts.get(row.get("status", "pending"), 0) + 1
    if len(shown) < len(rows):
        lines.append(f"({len(rows) - len(shown)} done/skipped clips not listed: see {REPORT_NAME})")
    lines.append(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + f" ({len(rows)} clips)")
    return "\n".join(lines)
