"""Error types for bad input: one class per kind of problem, all ``ValueError`` subclasses.

Every message is ONE line that names the offending value or path and says what
to do. The command line prints it and exits with status 2; the ComfyUI nodes
show it in the UI. Anything that is not an :class:`InputError` (nor an
``OSError``) is a bug and keeps its traceback.

Hierarchy::

    ValueError
    └── InputError                      bad input found before any model loads
        ├── OptionError                 a run option (steps, fps, depths, anchor frame, window/slide, ...)
        ├── FramesError                 the frame input (missing, unreadable or odd file, masks, ...)
        │   └── FramesNotFoundError     (also a FileNotFoundError)
        ├── WeightsError                a weights folder/file (config, safetensors header, keys/shapes, kind)
        │   ├── CheckpointError         (actionmesh_core.checkpoints) one checkpoint does not fit its model
        │   ├── WeightsMissingError     (actionmesh_core.weights; also a FileNotFoundError) folders missing
        │   └── BackgroundModelError    the background-removal model is missing or unusable
        ├── MeshInputError              the user's anchor mesh
        └── OutputPathError             the output path cannot be written
"""
from __future__ import annotations

__all__ = ["InputError", "OptionError", "FramesError", "FramesNotFoundError", "WeightsError",
           "BackgroundModelError", "MeshInputError", "OutputPathError", "one_line"]


def one_line(text: str, limit: int = 1200) -> str:
    """Collapse ``text`` to one line (newlines -> '; ', runs of spaces -> one) of at most ``limit`` characters."""
    parts = [" ".join(p.split()) for p in str(text).splitlines()]
    line = "; ".join(p for p in parts if p)
    return line if len(line) <= limit else line[:limit - 3] + "..."


class InputError(ValueError):
    """Bad user input, found before any model loads; the message is one line saying what to do."""

    def __init__(self, message: str = "", *args):
        super().__init__(one_line(message), *args)


class OptionError(InputError):
    """A run option is out of range (steps, fps, meshing depths, anchor frame, window/slide, ...)."""


class FramesError(InputError):
    """The frame input cannot be used (no frames, an unreadable file named by path, bad masks, ...)."""


class FramesNotFoundError(FramesError, FileNotFoundError):
    """The frame input (or its mask folder) does not exist."""


class WeightsError(InputError):
    """A weights folder or file cannot be used (config, safetensors header, keys/shapes, model kind)."""


class BackgroundModelError(WeightsError):
    """The background-removal model is missing or cannot be used."""


class MeshInputError(InputError):
    """The user's anchor mesh cannot be read or holds no triangles."""


class OutputPathError(InputError):
    """The output path cannot be written (bad suffix, read-only or missing parent, a folder in the way)."""
