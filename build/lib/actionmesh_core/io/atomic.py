"""Atomic, crash-safe file writes: a temporary file in the target's folder, fsync, rename.

Every file the project writes goes through this module, so that no run ever
leaves a partial file or destroys a previous good one: the data is written to a
hidden temporary file *in the same folder* (same file system, so the final
``os.replace`` is atomic), flushed and fsynced, then renamed over the target.
On any failure (``OSError`` such as a full disk, an exception from a library,
``KeyboardInterrupt``) the temporary file is removed and the previous file, if
any, is untouched.

Three entry points:

* :func:`atomic_write` — a context manager yielding an open binary/text handle;
* :func:`atomic_write_bytes` — write a bytes object in one call;
* :func:`atomic_path` — a context manager yielding a temporary *path*, for
  libraries that insist on writing by file name (trimesh, pxr, bpy, PIL).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_path"]

PathLike = Union[str, os.PathLike]


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: not every OS/file system allows opening a folder)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_name(target: Path) -> Path:
    """A fresh hidden temporary file beside ``target`` (same folder, same suffix)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f"{target.suffix}.tmp", dir=str(target.parent))
    os.close(fd)
    return Path(name)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    The caller (or the library it calls) writes the whole file to the yielded
    path. The temporary name keeps the target's suffix at its end
    (``.name.XXXX.glb.tmp`` has suffix ``.tmp``; libraries that pick a format by
    suffix must be told the format explicitly).

    Args:
        path: final file path; its folder must exist.

    Raises:
        FileNotFoundError: the folder of ``path`` does not exist.
        OSError: writing, syncing or renaming failed (the previous file is intact).
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {target.parent} does not exist")
    tmp = _temp_name(target)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if target.exists():
            # keep the permission bits of the file being replaced
            with contextlib.suppress(OSError):
                os.chmod(tmp, target.stat().st_mode & 0o7777)
        else:
            with contextlib.suppress(OSError):
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` when the block succeeds.

    Args:
        path: final file path; its folder must exist.
        mode: ``"wb"`` (default) or ``"w"`` (text; ``encoding`` defaults to UTF-8).
        encoding: text encoding for ``mode="w"``.

    Raises:
        ValueError: ``mode`` is not a write mode.
        FileNotFoundError: the folder of ``path`` does not exist.
        OSError: writing failed (the previous file is intact, no partial file remains).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path.

    Raises:
        FileNotFoundError: the folder of ``path`` does not exist.
        OSError: writing failed (the previous file is intact, no partial file remains).
    """
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return Path(path)
