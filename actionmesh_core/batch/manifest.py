"""Batch inputs: frame folders, videos, folders of clips, and CSV / JSONL manifests -> a list of clips.

Every positional input of ``python -m actionmesh_core batch`` is one of:

* a **frame folder** (holds image files): one clip;
* a **video file** (``.mp4``, ``.mov``, ...): one clip;
* a **folder of clips** (holds no image file, but sub-folders of frames and/or
  videos): one clip per entry, in natural name order;
* a **manifest**, ``.csv`` (header row) or ``.jsonl`` (one JSON object per
  line), one clip per row, with the columns / keys below. Relative paths in a
  manifest are relative to the manifest's own folder.

Manifest columns (only ``clip`` is required; an empty cell = the batch-wide
value given on the command line):

==================  =====================================================
``clip``            frame folder or video file
``name``            output name (default: the clip's file/folder name)
``mesh``            anchor mesh (GLB/GLTF/OBJ/PLY) -> {video + mesh} -> 4D
``anchor_frame``    frame the anchor mesh corresponds to (int >= 0)
``seed``            noise seed (int)
``steps``           stage I denoising steps (int >= 1)
``mode``            ``stage2`` | ``attention-chain``
``chain_reinforce`` attention-chain reinforcement (true/false)
``fps``             animation frames per second (> 0)
``interpolation``   ``STEP`` | ``LINEAR``
``format``          output format: any of :data:`actionmesh_core.export.FORMATS`
                    (``glb``, ``glb-skinned``, ``usdz``, ``npy``, ...)
``mask_dir``        folder of object masks, one per frame
``frame_start``     first frame used (int >= 0)
``frame_stride``    use every n-th frame (int >= 1)
``max_frames``      use at most this many frames (int >= 0, 0 = all)
``margin``          white margin around the object (fraction of its box, >= 0)
==================  =====================================================

Unknown columns, bad values and duplicate output names are errors of the whole
manifest (:class:`ManifestError`, one line naming the file, line and column),
found before anything runs. A clip whose frames or mesh are missing or broken
is *not* a manifest error: it is recorded as a failed clip and the batch goes on.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from ..errors import InputError
from ..frames import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = ["ClipSpec", "ManifestError", "read_inputs", "read_manifest", "CLIP_OPTIONS", "MANIFEST_EXTENSIONS"]

PathLike = Union[str, os.PathLike]
MANIFEST_EXTENSIONS = (".csv", ".jsonl")
MODES = ("stage2", "attention-chain")
INTERPOLATIONS = ("STEP", "LINEAR")


class ManifestError(InputError):
    """The batch inputs cannot be used as given (bad manifest row, unknown column, duplicate name, missing input).

    The message is one line naming the file, line and column, and what to do.
    """


def _parse_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _parse_int(text: Any) -> int:
    if isinstance(text, bool):
        raise ValueError(f"expected an integer, got {text!r}")
    if isinstance(text, int):
        return text
    if isinstance(text, float) and text.is_integer():
        return int(text)
    value = str(text).strip()
    if not re.fullmatch(r"[+-]?\d+", value):
        raise ValueError(f"expected an integer, got {text!r}")
    return int(value)


def _check(predicate, what: str):
    def parse(value):
        if not predicate(value):
            raise ValueError(what)
        return value
    return parse


def _int_at_least(low: int):
    def parse(text):
        value = _parse_int(text)
        if value < low:
            raise ValueError(f"must be >= {low}, got {value}")
        return value
    return parse


def _float_from(low: float, include_low: bool):
    """Parser of a finite number > ``low`` (>= ``low`` with ``include_low``)."""
    def parse(text: Any) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {text!r}") from None
        if not (value >= low if include_low else value > low) or value == float("inf"):
            raise ValueError(f"must be a finite number {'>=' if include_low else '>'} {low:g}, got {text!r}")
        return value
    return parse


def _choice(choices: Sequence[str], upper: bool = False):
    def parse(text):
        value = str(text).strip()
        value = value.upper() if upper else value
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return value
    return parse


def _format(text: Any) -> str:
    from .formats import supported_formats

    value = str(text).strip().lower().lstrip(".")
    formats = supported_formats()
    if value not in formats:
        raise ValueError(f"must be one of {', '.join(formats)}, got {text!r}")
    return value


# option name -> parser of a manifest cell (the value is then checked again by the pipeline's validation)
CLIP_OPTIONS: Dict[str, Any] = {
    "anchor_frame": _int_at_least(0),
    "seed": _parse_int,
    "steps": _int_at_least(1),
    "mode": _choice(MODES),
    "chain_reinforce": _parse_bool,
    "fps": _float_from(0.0, False),
    "interpolation": _choice(INTERPOLATIONS, upper=True),
    "format": _format,
    "frame_start": _int_at_least(0),
    "frame_stride": _int_at_least(1),
    "max_frames": _int_at_least(0),
    "margin": _float_from(0.0, True),
}
_PATH_KEYS = ("clip", "mesh", "mask_dir")
_KNOWN = ("clip", "name", "mesh", "mask_dir") + tuple(CLIP_OPTIONS)


@dataclass
class ClipSpec:
    """One clip of a batch.

    Attributes:
        name: output name (file stem of every output of this clip); unique in a batch.
        frames: frame folder or video file (absolute path).
        mesh: optional anchor mesh file (absolute path) -> {video + mesh} -> 4D.
        options: per-clip overrides of the batch settings (keys of :data:`CLIP_OPTIONS`).
        source: where the clip was defined (``"clips.csv line 3"``, or the input path), for messages.
    """

    name: str
    frames: Path
    mesh: Optional[Path] = None
    options: Dict[str, Any] = field(default_factory=dict)
    source: str = ""


def _normalise_key(key: str) -> str:
    return str(key).strip().lower().replace("-", "_").replace(" ", "_")


def _check_name(name: str, where: str) -> str:
    name = str(name).strip()
    bad = (not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name
           or any(ord(c) < 32 for c in name))
    if bad:
        raise ManifestError(f"{where}: output name {name!r} is not a plain file name (no folders, no leading "
                            "dot, no control characters); set the 'name' column")
    return name


def _row_to_clip(row: Dict[str, Any], base: Path, where: str) -> ClipSpec:
    keys = {_normalise_key(k): v for k, v in row.items() if k is not None}
    unknown = [k for k in keys if k not in _KNOWN]
    if unknown:
        raise ManifestError(f"{where}: unknown column {unknown[0]!r} (known: {', '.join(_KNOWN)})")
    values = {k: v for k, v in keys.items() if v is not None and str(v).strip() != ""}
    if "clip" not in values:
        raise ManifestError(f"{where}: the 'clip' column (frame folder or video) is empty")
    paths = {}
    for key in _PATH_KEYS:
        if key in values:
            path = Path(os.path.expanduser(str(values[key]).strip()))
            paths[key] = Path(os.path.abspath(path if path.is_absolute() else base / path))
    options = {}
    for key, parse in CLIP_OPTIONS.items():
        if key in values:
            try:
                options[key] = parse(values[key])
            except ValueError as exc:
                raise ManifestError(f"{where}: column {key!r} {exc}") from None
    frames = paths["clip"]
    if "mask_dir" in paths:
        options["mask_dir"] = str(paths["mask_dir"])
    name = values.get("name") or _default_name(frames)
    return ClipSpec(name=_check_name(name, where), frames=frames, mesh=paths.get("mesh"), options=options,
                    source=where)


def _default_name(path: Path) -> str:
    return path.stem if path.suffix.lower() in VIDEO_EXTENSIONS else path.name


def read_manifest(path: PathLike) -> List[ClipSpec]:
    """Read a ``.csv`` (header row) or ``.jsonl`` manifest.

    Args:
        path: the manifest file.

    Returns:
        The clips, in file order.

    Raises:
        ManifestError: unreadable file, unknown column, bad value, empty ``clip`` (one line: file, line, column).
    """
    path = Path(path)
    base = path.resolve().parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from None
    clips: List[ClipSpec] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise ManifestError(f"manifest {path} is empty: it needs a header row with at least a 'clip' column")
        if "clip" not in [_normalise_key(k) for k in reader.fieldnames]:
            raise ManifestError(f"manifest {path}: the header row {','.join(reader.fieldnames)!r} has no 'clip' "
                                "column (frame folder or video of each clip)")
        for row in reader:
            where = f"{path.name} line {reader.line_num}"
            if None in row:
                raise ManifestError(f"{where}: more cells than header columns")
            if all((v or "").strip() == "" for v in row.values()):
                continue
            clips.append(_row_to_clip(row, base, where))
    elif path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{where}: expected a JSON object like {{\"clip\": \"frames/dog\"}}")
            clips.append(_row_to_clip(row, base, where))
    else:
        raise ManifestError(f"manifest {path} must end in {' or '.join(MANIFEST_EXTENSIONS)}")
    if not clips:
        raise ManifestError(f"manifest {path} lists no clips")
    return clips


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _is_frame_folder(path: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def read_inputs(inputs: Iterable[PathLike]) -> List[ClipSpec]:
    """Expand the positional inputs of a batch into clips (see the module docstring).

    Args:
        inputs: frame folders, video files, folders of clips, ``.csv`` / ``.jsonl`` manifests.

    Returns:
        The clips, in input order (a folder of clips in natural name order).

    Raises:
        ManifestError: an input does not exist or is of an unknown kind, a manifest is bad, or two clips
            would write the same output name.
    """
    clips: List[ClipSpec] = []
    for item in inputs:
        path = Path(os.path.expanduser(str(item)))
        if not path.exists():
            raise ManifestError(f"batch input {path} does not exist (expected a frame folder, a video, a folder of "
                                "clips, or a .csv/.jsonl manifest)")
        suffix = path.suffix.lower()
        if path.is_file() and suffix in MANIFEST_EXTENSIONS:
            clips.extend(read_manifest(path))
        elif path.is_file() and suffix in VIDEO_EXTENSIONS:
            clips.append(ClipSpec(name=_check_name(_default_name(path), str(path)), frames=path.resolve(),
                                  source=str(path)))
        elif path.is_dir() and _is_frame_folder(path):
            clips.append(ClipSpec(name=_check_name(path.resolve().name, str(path)), frames=path.resolve(),
                                  source=str(path)))
        elif path.is_dir():
            entries = sorted((p for p in path.iterdir() if not p.name.startswith(".")
                              and ((p.is_dir() and _is_frame_folder(p))
                                   or (p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS))),
                             key=lambda p: _natural_key(p.name))
            if not entries:
                raise ManifestError(f"folder {path} holds neither image frames nor clips (sub-folders of frames or "
                                    "videos)")
            clips.extend(ClipSpec(name=_check_name(_default_name(p), str(p)), frames=p.resolve(), source=str(p))
                         for p in entries)
        else:
            raise ManifestError(f"batch input {path} is not a frame folder, a video ({', '.join(VIDEO_EXTENSIONS)}), "
                                "a folder of clips, nor a .csv/.jsonl manifest")
    if not clips:
        raise ManifestError("no clips given: pass frame folders, videos, folders of clips or a manifest")
    seen: Dict[str, ClipSpec] = {}
    for clip in clips:
        key = clip.name.lower()  # case-insensitive file systems would merge these outputs
        if key in seen:
            raise ManifestError(f"two clips have the output name {clip.name!r} ({seen[key].source} and "
                                f"{clip.source}); give them distinct names with a manifest 'name' column")
        seen[key] = clip
    return clips
