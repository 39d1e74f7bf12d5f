"""Atomic, crash-safe file writes: a temporary file in the target's folder, fsync, rename.

Every file the project writes goes through this module, so that no run ever
leaves a partial file or destroys a previous good one: the data is written to a
hidden temporary file *in the same folder* (same file system, so the final
``os.replace`` is atomic), flushed and fsynced, then renamed over the target.
On any failure (``OSError`` such as a full disk, an exception from a library,
``KeyboardInterrupt``) the temporary file is removed and the previous file, if
any, is untouched.

Four entry points:

* :func:`atomic_write` — a context manager yielding an open binary/text handle;
* :func:`atomic_write_bytes` — write a bytes object in one call;
* :func:`atomic_path` — a context manager yielding a temporary *path*, for
  libraries that insist on writing by file name (trimesh, pxr, bpy, PIL);
* :func:`atomic_files` — a set of files (a sequence, a texture beside its file,
  per-frame files) written into hidden staging folders and moved onto their
  names together at the end, with termination signals held back during the
  move (:mod:`actionmesh_core.interrupts`): an interrupted export changes none
  of the previous files.

An ``OSError`` raised while writing without a file name (a full disk:
``write()`` reports ENOSPC without one) is raised again naming the target.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Dict, Iterator, List, Union

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_path", "atomic_files", "FileSet", "check_free_space",
           "STAGING_MARK"]

PathLike = Union[str, os.PathLike]
#: the staging folders of :class:`FileSet` are named ``.<label>.actionmesh-staging-XXXXXXXX``
STAGING_MARK = "actionmesh-staging-"


def check_free_space(folder: PathLike, needed: int, what: str = "output") -> None:
    """Refuse early when ``needed`` bytes clearly cannot fit on the disk of ``folder`` (or its nearest existing parent).

    Args:
        folder: where the files will be written (need not exist yet).
        needed: a lower bound of the bytes to write (a format's size estimate).
        what: what is written, for the message.

    Raises:
        OSError: (ENOSPC, naming the folder) the disk has fewer than ``needed`` bytes free.
    """
    import errno

    probe = Path(os.path.abspath(folder))
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        free = shutil.disk_usage(str(probe)).free
    except OSError:
        return  # cannot tell: the write itself will say
    if free < int(needed):
        raise OSError(errno.ENOSPC, f"not enough free space for {what}: it needs about {_size(needed)} but the "
                                    f"disk has {_size(free)} free; free some space or choose another location",
                      str(probe))


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} GB"


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
    except OSError as exc:
        _unlink_quietly(tmp)
        # a full disk: write() names no file, or the temporary one; name the target instead
        if exc.errno is not None and (exc.filename is None or os.path.abspath(exc.filename) == os.path.abspath(tmp)):
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from None
        raise
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


class FileSet:
    """Files staged in hidden folders beside their targets, moved onto their names together by :meth:`commit`.

    :meth:`folder` gives the staging folder of a target folder (created on first use, with any missing
    folder above it); anything written there lands in the target folder under the same name at
    :meth:`commit`. Use it through :func:`atomic_files`.

    Args:
        label: names the staging folders ``.<label>.actionmesh-staging-XXXXXXXX`` (the output's stem, so
            that a batch can tell a killed clip's leftovers from another clip's work in progress).
    """

    def __init__(self, label: str = "") -> None:
        self._stages: Dict[Path, Path] = {}
        self._created: List[Path] = []
        self._prefix = f".{label}.{STAGING_MARK}" if label else f".{STAGING_MARK}"

    def folder(self, target_folder: Union[str, os.PathLike]) -> Path:
        """The staging folder whose files go to ``target_folder`` (both created when missing)."""
        target = Path(target_folder)
        key = Path(os.path.abspath(target))
        if key not in self._stages:
            missing = []
            probe = key
            while not os.path.lexists(probe) and probe.parent != probe:
                missing.append(probe)
                probe = probe.parent
            for folder in reversed(missing):
                try:
                    folder.mkdir()
                except FileExistsError:
                    continue
                self._created.append(folder)
            self._stages[key] = Path(tempfile.mkdtemp(prefix=self._prefix, dir=str(key)))
        return self._stages[key]

    def path(self, target: Union[str, os.PathLike]) -> Path:
        """Where to write ``target``: its name in the staging folder of its folder."""
        target = Path(target)
        return self.folder(target.parent) / target.name

    def final(self, staged: Union[str, os.PathLike]) -> Path:
        """The target path of a staged file (a path inside one of the staging folders).

        Raises:
            ValueError: ``staged`` is not in a staging folder of this set.
        """
        staged = Path(os.path.abspath(staged))
        for folder, stage in self._stages.items():
            if staged.parent == stage:
                return folder / staged.name
            if stage in staged.parents:  # deeper (a writer's own temporary folder): name the target folder
                return folder
        raise ValueError(f"{staged} is not in a staging folder of this file set")

    def commit(self) -> List[Path]:
        """Move every staged file onto its target (signals held back meanwhile); returns the targets.

        Raises:
            OSError: a move failed (the files already moved stay; the rest are removed with the staging folders).
        """
        from ..interrupts import deferred

        moved: List[Path] = []
        with deferred():
            for folder, stage in self._stages.items():
                for item in sorted(stage.iterdir()):
                    os.replace(item, folder / item.name)
                    moved.append(folder / item.name)
                _fsync_dir(folder)
            self.discard()
        return moved

    def discard(self) -> None:
        """Remove the staging folders and the folders this set created (when left empty)."""
        for stage in self._stages.values():
            shutil.rmtree(stage, ignore_errors=True)
        self._stages.clear()
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created.clear()


@contextlib.contextmanager
def atomic_files(label: str = "") -> Iterator[FileSet]:
    """Write several files as one: staged while the block runs, moved onto their names when it succeeds.

    On any failure (an error, ``KeyboardInterrupt``, SIGTERM/SIGHUP through
    :mod:`actionmesh_core.interrupts`) the staging folders and the folders created for
    them are removed and no previous file is touched. A signal during the final move
    is held back until every file is in place.

    Example::

        with atomic_files() as files:
            export_obj_sequence(anim, files.path(out / "a.obj"))  # a_0000.obj ..., a.mtl, a_texture.png

    Args:
        label: names the staging folders (see :class:`FileSet`); the output's stem.
    """
    files = FileSet(label)
    try:
        yield files
        files.commit()
    except OSError as exc:
        final = None
        if exc.filename is not None:
            try:
                final = files.final(exc.filename)
            except ValueError:
                pass
        files.discard()
        if final is not None and exc.errno is not None:  # name the file the user asked for, not a staged one
            raise OSError(exc.errno, exc.strerror or str(exc), str(final)) from None
        raise
    except BaseException:
        files.discard()
        raise
