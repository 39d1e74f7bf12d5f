"""Host paths: model folders (``folder_paths``), model entries, the input and output folders.

Outside ComfyUI: models folder ``$ACTIONMESH_MODELS_DIR`` or ``./models`` (sub-folders ``actionmesh/``,
``triposg/``, ``dinov2/``), output ``$ACTIONMESH_OUTPUT_DIR`` or ``./output``, input
``$ACTIONMESH_INPUT_DIR`` or ``./input``.  Output file names (``filename_prefix`` checks) live here too.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .host_base import folder_paths_module


MODEL_FOLDERS = {
    "actionmesh": "ActionMesh denoiser/autoencoder weights (folders with config.json + model.safetensors)",
    "triposg": "TripoSG VAE and image-to-3D transformer (folders with config.json + diffusion_pytorch_model.safetensors)",
    "dinov2": "DINOv2-large image encoder (transformers folder with config.json + model.safetensors)",
}
WEIGHT_EXTENSIONS = (".safetensors", ".sft", ".bin", ".pt", ".pth", ".ckpt")
MESH_EXTENSIONS = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off")



def _env_dir(name: str, default: str) -> Path:
    return Path(os.environ.get(name) or default).expanduser().resolve()


def models_dir() -> Path:
    """Root models folder: ComfyUI's ``models/``, else ``$ACTIONMESH_MODELS_DIR`` or ``./models``."""
    fp = folder_paths_module()
    if fp is not None and getattr(fp, "models_dir", None):
        return Path(fp.models_dir)
    return _env_dir("ACTIONMESH_MODELS_DIR", "models")


def register_model_folders() -> None:
    """Register ``actionmesh``, ``triposg``, ``dinov2`` model folders with ComfyUI (idempotent).

    Each gets ``<ComfyUI>/models/<name>`` (and ``$ACTIONMESH_MODELS_DIR/<name>``
    when that variable is set); paths a user configured in
    ``extra_model_paths.yaml`` under the same names are kept.  No-op outside ComfyUI.
    """
    fp = folder_paths_module()
    if fp is None or not hasattr(fp, "add_model_folder_path"):
        return
    extra = os.environ.get("ACTIONMESH_MODELS_DIR")
    for name in MODEL_FOLDERS:
        fp.add_model_folder_path(name, os.path.join(fp.models_dir, name))
        if extra:
            fp.add_model_folder_path(name, os.path.join(extra, name))


def model_roots(folder: str) -> List[Path]:
    """Folders searched for models of one kind (``actionmesh``, ``triposg`` or ``dinov2``)."""
    if folder not in MODEL_FOLDERS:
        raise ValueError(f"unknown model folder {folder!r}; expected one of {sorted(MODEL_FOLDERS)}")
    fp = folder_paths_module()
    if fp is not None and hasattr(fp, "get_folder_paths"):
        register_model_folders()
        try:
            return [Path(p) for p in fp.get_folder_paths(folder)]
        except KeyError:
            pass
    return [models_dir() / folder]


def _is_model_dir(path: Path) -> bool:
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return "config.json" in names and any(n.lower().endswith(WEIGHT_EXTENSIONS) for n in names)


def _folder_weights(path: Path) -> Optional[str]:
    """Name of the weights file a loader reads from model folder ``path``: the one
    ``actionmesh_core.checkpoints`` picks (``FOLDER_WEIGHT_FILES``), else transformers' sharded index;
    None when there is none of them."""
    from actionmesh_core.checkpoints import FOLDER_WEIGHT_FILES

    names = FOLDER_WEIGHT_FILES + ("model.safetensors.index.json",)
    return next((name for name in names if (path / name).is_file()), None)


def _entry(root: Path, folder: Path) -> str:
    """List entry of a model folder: its weights file (``ActionMesh/denoiser/model.safetensors``), like core
    loaders list files, so the frontend's missing-models check matches the value against the list; the folder
    itself when it holds no file a loader reads (the loader then says what is wrong)."""
    weights = _folder_weights(folder)
    rel = folder.relative_to(root).as_posix()
    if weights is None:
        return rel
    return weights if rel == "." else f"{rel}/{weights}"


def list_models(folder: str, prefer: Sequence[str] = ()) -> List[str]:
    """Model entries under a model folder, as ``/``-separated relative paths.

    An entry is either the weights file of a model *folder* (a folder with
    ``config.json`` and weights; the released weights are folders such as
    ``ActionMesh/denoiser``, listed as ``ActionMesh/denoiser/model.safetensors``,
    which :func:`resolve_model` maps back to the folder) or a single weights
    file (``.safetensors`` ...) that is not inside a model folder.  Listing
    files, as core loaders do, lets the frontend's missing-models panel check
    a workflow's value against this list.  Entries whose path contains one of
    ``prefer`` (case-insensitive) come first, so the default choice of a
    loader is sensible.

    Args:
        folder: ``actionmesh``, ``triposg`` or ``dinov2``.
        prefer: substrings that rank entries first (e.g. ``("denoiser",)``).

    Returns:
        sorted list of relative paths (empty if nothing is installed).
    """
    found = set()
    for root in model_roots(folder):
        if not root.is_dir():
            continue
        if _is_model_dir(root):
            found.add(_entry(root, root))
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            here = Path(dirpath)
            depth = len(here.relative_to(root).parts)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            keep = []
            for d in dirnames:
                if _is_model_dir(here / d):
                    found.add(_entry(root, here / d))
                elif depth < 4:
                    keep.append(d)
            dirnames[:] = keep
            for name in filenames:
                if name.lower().endswith(WEIGHT_EXTENSIONS) and not _is_model_dir(here):
                    found.add((here / name).relative_to(root).as_posix())
    prefer = [p.lower() for p in prefer]

    def rank(entry: str):
        return (0 if any(p in entry.lower() for p in prefer) else 1, entry.lower())

    return sorted(found, key=rank)


def entry_config(folder: str, name: str) -> Optional[dict]:
    """Parsed ``config.json`` of a model entry listed by ``list_models`` (None when absent or unreadable).

    A model folder's own ``config.json``; for a single weights file ``<stem>.json`` beside it, else the
    ``config.json`` of its folder (the same lookup as ``actionmesh_core.checkpoints.load_model``).
    """
    for root in model_roots(folder):
        path = root / name
        if path.is_dir():
            candidates = [path / "config.json"]
        elif path.is_file():
            candidates = [path.with_suffix(".json"), path.parent / "config.json"]
        else:
            continue
        for config in candidates:
            if config.is_file():
                try:
                    data = json.loads(config.read_text())
                except (OSError, ValueError):
                    return None
                return data if isinstance(data, dict) else None
        return None
    return None


def _inside(root: Path, target: Path, follow_symlinks: bool = True) -> bool:
    """True when ``target`` lies inside ``root``.

    ``follow_symlinks=True`` resolves symlinks first: for paths we write to.
    ``follow_symlinks=False`` only collapses ``..``: for paths we read (models,
    input files), so a folder the user symlinked into ``models/`` or ``input/``
    (weights on another drive) is allowed while names that climb out with
    ``..`` are not.
    """
    norm = os.path.realpath if follow_symlinks else os.path.abspath
    try:
        root_n, target_n = norm(root), norm(target)
        return os.path.commonpath([root_n, target_n]) == root_n
    except ValueError:  # different drives on Windows
        return False


def resolve_model(folder: str, name: str) -> Path:
    """Path a loader reads for a model entry listed by ``list_models``.

    The weights file of a model folder (``ActionMesh/denoiser/model.safetensors``)
    resolves to the folder (config.json + weights, what the loaders read); a
    folder name (``ActionMesh/denoiser``, as workflows saved before files were
    listed) or a single weights file resolves to itself.  Model folders
    symlinked into the model folder (weights kept on another drive) resolve like
    real ones; only the name itself may not leave the folder.

    Raises:
        ValueError: empty name or a name that points outside the model folders.
        FileNotFoundError: no such entry (the message says where to put it).
    """
    if not name or not str(name).strip():
        raise ValueError(f"no {folder} model selected; put the weights under models/{folder}/ (see README)")
    name = str(name).replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/"):
        raise ValueError(f"model name {name!r} must be a path relative to models/{folder}/")
    roots = model_roots(folder)
    for root in roots:
        candidate = root / name
        if candidate.exists() and _inside(root, candidate, follow_symlinks=False):
            parent = candidate.parent
            if (candidate.is_file() and _is_model_dir(parent) and _folder_weights(parent) == candidate.name
                    and _inside(root, parent, follow_symlinks=False)):
                return parent
            return candidate
    where = ", ".join(str(r) for r in roots)
    raise FileNotFoundError(f"{folder} model {name!r} not found in {where}; download it there (see README, 'Models')")


def output_directory() -> Path:
    """ComfyUI's output folder, else ``$ACTIONMESH_OUTPUT_DIR`` or ``./output``."""
    fp = folder_paths_module()
    if fp is not None and hasattr(fp, "get_output_directory"):
        return Path(fp.get_output_directory())
    return _env_dir("ACTIONMESH_OUTPUT_DIR", "output")


def input_directory() -> Path:
    """ComfyUI's input folder, else ``$ACTIONMESH_INPUT_DIR`` or ``./input``."""
    fp = folder_paths_module()
    if fp is not None and hasattr(fp, "get_input_directory"):
        return Path(fp.get_input_directory())
    return _env_dir("ACTIONMESH_INPUT_DIR", "input")


def list_input_meshes() -> List[str]:
    """Mesh files (GLB, OBJ, PLY, ...) in the input folder and its ``3d/`` sub-folder, relative paths."""
    root = input_directory()
    found = []
    for sub in (root, root / "3d"):
        if sub.is_dir():
            for dirpath, dirnames, filenames in os.walk(sub):
                if Path(dirpath) == root:
                    dirnames[:] = []  # only top-level files of the input folder itself
                for name in filenames:
                    if name.lower().endswith(MESH_EXTENSIONS):
                        found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(set(found), key=str.lower)


def list_input_frame_sources(image_extensions: Sequence[str], video_extensions: Sequence[str]) -> List[str]:
    """Frame inputs in the input folder: video files (top level and ``video/``) and folders holding
    at least two image files (up to two levels deep, e.g. ``frames/camel``), as relative paths."""
    root = input_directory()
    videos, folders = [], []
    if not root.is_dir():
        return []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        relative = here.relative_to(root)
        depth = len(relative.parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < 2 else []
        if depth == 0 or relative.parts[0] == "video":
            videos += [(relative / n).as_posix() for n in filenames if n.lower().endswith(tuple(video_extensions))]
        if depth and sum(n.lower().endswith(tuple(image_extensions)) for n in filenames) >= 2:
            folders.append(relative.as_posix())
    return sorted(folders, key=str.lower) + sorted(videos, key=str.lower)


def resolve_input_file(name: str, allow_dir: bool = False) -> Path:
    """Full path of a file (or, with ``allow_dir``, a folder) in the input folder (rejects paths that leave it).

    Raises:
        ValueError: absolute path or ``..`` components.
        FileNotFoundError: the file does not exist.
    """
    name = str(name).replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/"):
        raise ValueError(f"input file {name!r} must be a path relative to the input folder")
    root = input_directory()
    path = root / name
    if not _inside(root, path, follow_symlinks=False):
        raise ValueError(f"input file {name!r} resolves outside the input folder")
    if not (path.is_file() or (allow_dir and path.is_dir())):
        raise FileNotFoundError(f"input file {name!r} not found in {root}")
    return path


_UNSAFE_CHARS = set('<>:"|?*')  # not allowed in Windows file names; become '_'


def _safe_part(raw: str, prefix: str) -> str:
    """One path component of a prefix: Unicode letters/digits/marks and ``. _ - space`` kept, others -> ``_``."""
    import unicodedata

    out = []
    replacing = False  # a run of replaced characters becomes one '_'
    for ch in unicodedata.normalize("NFC", raw):
        cat = unicodedata.category(ch)
        if cat[0] == "C":  # control, format, surrogate, private use, unassigned
            raise ValueError(f"filename_prefix {prefix!r} contains a control character ({ch!r}); remove it")
        if ch in "._- " or (cat[0] in "LNM" and ch not in _UNSAFE_CHARS):
            out.append(ch)
            replacing = False
        elif not replacing:
            out.append("_")
            replacing = True
    return "".join(out)


def sanitize_prefix(prefix: str, default: str = "ActionMesh") -> Tuple[str, str]:
    """Split a user ``filename_prefix`` into a safe (subfolder, basename).

    ``/`` (or ``\\``) separates sub-folders, as in ComfyUI's save nodes.
    Absolute paths, ``~``, drive letters, ``..`` components and control
    characters are refused; letters and digits of every script (``Привет``,
    ``日本``, ``é``) are kept; other characters (punctuation, symbols, the
    Windows-reserved ``<>:"|?*``) become ``_``; leading dots are stripped (no
    hidden files); empty parts are dropped.

    Returns:
        (subfolder as a ``/``-separated relative path, possibly "", basename).

    Raises:
        ValueError: absolute path, drive letter, ``..`` or a control character in the prefix.
    """
    text = str(prefix or "").replace("\\", "/").strip()
    if text.startswith("/") or text.startswith("~") or re.match(r"^[A-Za-z]:", text):
        raise ValueError(f"filename_prefix {prefix!r} must be relative to the output folder, not an absolute path")
    parts = []
    for raw in text.split("/"):
        raw = raw.strip()
        if raw == "..":
            raise ValueError(f"filename_prefix {prefix!r} must not contain '..'")
        part = _safe_part(raw, prefix).strip().lstrip(".").strip()
        if part:
            parts.append(part[:120])
    if not parts:
        parts = [default]
    return "/".join(parts[:-1]), parts[-1]


def next_output_path(prefix: str, extension: str) -> Tuple[Path, str, str]:
    """A fresh file path under the output folder for ``prefix``.

    Files are named ``<basename>_<counter:05>_.<ext>`` like ComfyUI's save
    nodes, with the counter one past the largest existing one.

    Returns:
        (full path, filename, subfolder) — subfolder ``/``-separated, relative
        to the output folder (what the UI needs to show the file).

    Raises:
        ValueError: unsafe prefix (see ``sanitize_prefix``) or a path that
            would resolve outside the output folder (e.g. through a symlink).
    """
    subfolder, base = sanitize_prefix(prefix)
    extension = extension.lstrip(".")
    root = output_directory()
    folder = root / subfolder if subfolder else root
    # check BEFORE creating anything: realpath resolves the symlinks of the existing part of the path
    # (a symlinked sub-folder pointing elsewhere is refused without a folder being made through it)
    if not _inside(root, folder):
        raise ValueError(f"filename_prefix {prefix!r} resolves outside the output folder (through a symlink)")
    folder.mkdir(parents=True, exist_ok=True)
    if not _inside(root, folder):  # a symlink swapped in meanwhile
        raise ValueError(f"filename_prefix {prefix!r} resolves outside the output folder (through a symlink)")
    pattern = re.compile(re.escape(base) + r"_(\d+)_\.")
    counter = 1
    for existing in os.listdir(folder):
        match = pattern.match(existing)
        if match:
            counter = max(counter, int(match.group(1)) + 1)
    filename = f"{base}_{counter:05}_.{extension}"
    path = folder / filename
    if not _inside(root, path):
        raise ValueError(f"filename_prefix {prefix!r} resolves outside the output folder")
    return path, filename, subfolder
