"""Shared pieces of the exporters: frame rate, atomic writes by file name, optional dependencies.

Shape legend: T frames, V vertices, F faces.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from ..io.animated_mesh import AnimatedMesh, check_animation  # noqa: F401  (re-exported for the writers)
from ..io.atomic import atomic_path

__all__ = ["MissingDependency", "animation_fps", "frame_codes", "named_atomic_path", "require", "rest_frame",
           "texture_name", "check_animation"]

#: pip spec of each optional exporter dependency (module name -> install command)
INSTALL = {
    "pxr": "pip install usd-core",
    "py_dem_bones": "pip install py-dem-bones",
}


class MissingDependency(ImportError):
    """An optional exporter dependency is not installed; the message is one line naming the install command."""


def require(module: str, what: str):
    """Import an optional dependency or raise :class:`MissingDependency` with the install command.

    Args:
        module: importable module name (``"pxr"``, ``"py_dem_bones"``).
        what: what needs it, for the message (e.g. ``"USD export"``).

    Raises:
        MissingDependency: the module is not importable.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"{what} needs the '{module}' module: {INSTALL.get(module, 'pip install ' + module)}") \
            from None


def animation_fps(anim, fps: Optional[float] = None) -> float:
    """Playback rate in frames per second.

    ``fps`` when given; else 1 / median frame interval of ``anim.times`` (snapped to
    an integer within 1e-4 relative: float32 times); else
    ``anim.metadata["fps"]``; else 24.

    Raises:
        ValueError: ``fps`` given but not > 0.
    """
    if fps is not None:
        if not float(fps) > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        return float(fps)
    times = getattr(anim, "times", None)
    if times is not None and len(times) >= 2:
        step = float(np.median(np.diff(np.asarray(times, dtype=np.float64))))
        if step > 0:
            rate = 1.0 / step
            # float32 frame times: 1/12 s steps give 11.9999996 fps; snap to the integer rate
            return float(round(rate)) if abs(rate - round(rate)) < 1e-4 * rate else rate
    return float((getattr(anim, "metadata", None) or {}).get("fps", 24.0))


def frame_codes(anim: AnimatedMesh, fps: Optional[float] = None) -> np.ndarray:
    """(T,) float64 time of each frame in frames (``times * fps``; ``arange(T)`` when ``fps`` is given).

    Raises:
        ValueError: times not strictly increasing, or ``fps <= 0``.
    """
    if fps is not None:
        animation_fps(anim, fps)
        return np.arange(anim.num_frames, dtype=np.float64)
    rate = animation_fps(anim)
    codes = np.asarray(anim.times, np.float64) * rate
    codes = np.where(np.abs(codes - np.round(codes)) < 1e-4, np.round(codes), codes)
    if anim.num_frames > 1 and not (np.diff(codes) > 0).all():
        raise ValueError("frame times must be strictly increasing (pass fps= to regenerate them)")
    return codes - codes[0]


def rest_frame(anim: AnimatedMesh, frame: Optional[int] = None) -> int:
    """The frame holding the reference (anchor) mesh: ``frame``, else ``metadata["anchor_frame"]``, else 0.

    Raises:
        ValueError: the frame is outside ``[0, T)``.
    """
    k = frame if frame is not None else int((anim.metadata or {}).get("anchor_frame", 0) or 0)
    if not 0 <= int(k) < anim.num_frames:
        raise ValueError(f"rest/reference frame {k} outside the {anim.num_frames} frames")
    return int(k)


def texture_name(path: Path) -> str:
    """The file name of the texture written beside an export: ``<stem>_texture.png``.

    Named after the export so that two exports in one folder never share or
    overwrite each other's texture.
    """
    return f"{Path(path).stem}_texture.png"


@contextlib.contextmanager
def named_atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Like :func:`actionmesh_core.io.atomic.atomic_path`, but the yielded path has the target's own name.

    For libraries that choose the file format by the file name (pxr, Blender,
    trimesh): the file is written as ``<hidden temp folder beside path>/<name>``,
    then moved onto ``path`` atomically (fsync + rename); on failure nothing is
    left behind and a previous file is untouched.

    Raises:
        FileNotFoundError: the folder of ``path`` does not exist.
        OSError: the library wrote nothing at the yielded path, or renaming failed.
    """
    target = Path(path)
    with atomic_path(target) as tmp:
        with tempfile.TemporaryDirectory(prefix=f".{target.stem}.", dir=str(target.parent)) as folder:
            named = Path(folder) / target.name
            yield named
            if not named.is_file():
                raise OSError(f"the writer produced no file for {target}")
            os.replace(named, tmp)
