"""The only module of the pack that touches ComfyUI.

Everything host-specific goes through here: model folders (``folder_paths``),
the output and input folders, the torch device and cache
(``comfy.model_management``), progress bars (``comfy.utils.ProgressBar``),
interruption, and the core ``MESH`` type.  When ComfyUI is not importable
(tests, scripts) every function falls back to a plain equivalent:

* models folder: ``$ACTIONMESH_MODELS_DIR`` or ``./models`` (with the
  sub-folders ``actionmesh/``, ``triposg/``, ``dinov2/``);
* output folder: ``$ACTIONMESH_OUTPUT_DIR`` or ``./output``; input folder:
  ``$ACTIONMESH_INPUT_DIR`` or ``./input``;
* device: CUDA if available, else MPS, else CPU; progress: tqdm;
* ``MESH``: a minimal class with the same attributes as ComfyUI's.

Verified against ComfyUI 0.27.0 (and the 0.3.x ``comfy_extras.nodes_hunyuan3d.MESH``).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

# --------------------------------------------------------------------------- host detection

MODEL_FOLDERS = {
    "actionmesh": "ActionMesh denoiser/autoencoder weights (folders with config.json + model.safetensors)",
    "triposg": "TripoSG VAE and image-to-3D transformer (folders with config.json + diffusion_pytorch_model.safetensors)",
    "dinov2": "DINOv2-large image encoder (transformers folder with config.json + model.safetensors)",
}
WEIGHT_EXTENSIONS = (".safetensors", ".sft", ".bin", ".pt", ".pth", ".ckpt")
MESH_EXTENSIONS = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off")


@functools.lru_cache(maxsize=None)
def _import(name: str):
    """Import a host module once; None when it is missing (plain fallbacks are used)."""
    try:
        return importlib.import_module(name)
    except Exception:  # ComfyUI missing or broken
        return None


def folder_paths_module():
    """ComfyUI's ``folder_paths`` module, or None outside ComfyUI."""
    return _import("folder_paths")


def model_management():
    """ComfyUI's ``comfy.model_management`` module, or None outside ComfyUI."""
    return _import("comfy.model_management")


def has_comfy() -> bool:
    """True when running inside ComfyUI (``folder_paths`` and ``comfy`` importable)."""
    return folder_paths_module() is not None and model_management() is not None


class Interrupted(Exception):
    """Raised by ``check_interrupted`` outside ComfyUI when an interrupt was requested."""


_interrupt_requested = False


def request_interrupt(value: bool = True) -> None:
    """Fallback interrupt flag (outside ComfyUI): the next ``check_interrupted`` raises."""
    global _interrupt_requested
    _interrupt_requested = bool(value)


def processing_interrupted() -> bool:
    """True when the user pressed Cancel in ComfyUI (or ``request_interrupt`` was called)."""
    mm = model_management()
    if mm is not None and hasattr(mm, "processing_interrupted"):
        return bool(mm.processing_interrupted())
    return _interrupt_requested


def check_interrupted() -> None:
    """Raise the host's interrupt exception if processing was cancelled.

    Inside ComfyUI this is ``comfy.model_management.throw_exception_if_processing_interrupted``
    (raises ``InterruptProcessingException``); outside it raises ``Interrupted``.
    """
    mm = model_management()
    if mm is not None and hasattr(mm, "throw_exception_if_processing_interrupted"):
        mm.throw_exception_if_processing_interrupted()
        return
    global _interrupt_requested
    if _interrupt_requested:
        _interrupt_requested = False
        raise Interrupted("processing interrupted")


# --------------------------------------------------------------------------- folders


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


def list_models(folder: str, prefer: Sequence[str] = ()) -> List[str]:
    """Model entries under a model folder, as ``/``-separated relative paths.

    An entry is either a model *folder* (contains ``config.json`` and a
    weights file; the released weights are folders such as
    ``ActionMesh/denoiser``) or a single weights file (``.safetensors`` ...)
    that is not inside a model folder.  Entries whose path contains one of
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
            found.add(".")
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            here = Path(dirpath)
            depth = len(here.relative_to(root).parts)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            keep = []
            for d in dirnames:
                if _is_model_dir(here / d):
                    found.add((here / d).relative_to(root).as_posix())
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


def is_transformers_model(folder: str, name: str) -> bool:
    """True when the entry ``name`` of ``folder`` is a transformers model folder (its config has
    ``model_type``), e.g. TripoSG's bundled ``image_encoder_dinov2``: not a diffusers/ActionMesh checkpoint."""
    for root in model_roots(folder):
        config = root / name / "config.json"
        if config.is_file():
            try:
                return "model_type" in json.loads(config.read_text())
            except (OSError, ValueError):
                return False
    return False


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
    """Full path of a model entry listed by ``list_models``.

    Model folders symlinked into the model folder (weights kept on another
    drive) resolve like real ones; only the name itself may not leave the folder.

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


def resolve_input_file(name: str) -> Path:
    """Full path of a file in the input folder (rejects paths that leave it).

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
    if not path.is_file():
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


# --------------------------------------------------------------------------- device


def torch_device() -> torch.device:
    """ComfyUI's compute device, else CUDA, then MPS, then CPU."""
    mm = model_management()
    if mm is not None and hasattr(mm, "get_torch_device"):
        return torch.device(mm.get_torch_device())
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def offload_device() -> torch.device:
    """Where models rest between node runs (ComfyUI's offload device, else CPU)."""
    mm = model_management()
    if mm is not None and hasattr(mm, "unet_offload_device"):
        try:
            return torch.device(mm.unet_offload_device())
        except Exception:
            pass
    return torch.device("cpu")


def soft_empty_cache() -> None:
    """Free cached accelerator memory (ComfyUI's ``soft_empty_cache`` or torch's)."""
    mm = model_management()
    if mm is not None and hasattr(mm, "soft_empty_cache"):
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_dtype(choice: str, device: Optional[torch.device] = None) -> str:
    """Weight dtype name (``fp32``/``fp16``/``bf16``) for a loader's ``dtype`` choice.

    ``auto`` = bf16 on CUDA when supported, else fp16 on CUDA, fp32 elsewhere.

    Raises:
        ValueError: unknown choice.
    """
    if choice in ("fp32", "fp16", "bf16"):
        return choice
    if choice != "auto":
        raise ValueError(f"unknown dtype {choice!r}; choose auto, fp32, fp16 or bf16")
    device = device or torch_device()
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def module_dtype(module, default: torch.dtype = torch.float32) -> torch.dtype:
    """Floating dtype of a module's first floating parameter (``default`` if none)."""
    params = getattr(module, "parameters", None)
    if callable(params):
        for p in params():
            if p.is_floating_point():
                return p.dtype
    return default


@contextlib.contextmanager
def on_device(module) -> Iterator[torch.device]:
    """Move ``module`` to the compute device for a block, then back to the offload device.

    Keeps at most one ActionMesh model on the accelerator at a time (models
    rest on the offload device between node runs) and frees the cache after.
    Objects without ``.to`` are left where they are.

    Yields:
        the compute device.
    """
    device = torch_device()
    movable = callable(getattr(module, "to", None))
    if movable:
        module.to(device)
    try:
        yield device
    finally:
        if movable:
            module.to(offload_device())
        if device.type != "cpu":
            soft_empty_cache()


# --------------------------------------------------------------------------- progress


class _TqdmBar:
    def __init__(self, total: int, desc: str):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, leave=False)
        self.total = total
        self.current = 0

    def update_absolute(self, value: int, total: Optional[int] = None) -> None:
        if total is not None and total != self.total:
            self.total = self._bar.total = total
        value = min(value, self.total)
        self._bar.update(value - self.current)
        self.current = value

    def update(self, amount: int = 1) -> None:
        self.update_absolute(self.current + amount)

    def close(self) -> None:
        self._bar.close()


class Progress:
    """Progress bar + interrupt check for a node's long loop.

    Uses ``comfy.utils.ProgressBar`` inside ComfyUI (the node's green bar)
    and tqdm outside.  ``step``/``set`` also call ``check_interrupted`` so a
    Cancel in the UI stops the loop at the next step.
    """

    def __init__(self, total: int, desc: str = "ActionMesh"):
        self.total = max(int(total), 1)
        self.current = 0
        utils = _import("comfy.utils")
        if utils is not None and hasattr(utils, "ProgressBar"):
            self._bar = utils.ProgressBar(self.total)
        else:
            self._bar = _TqdmBar(self.total, desc)

    def set(self, value: int, total: Optional[int] = None) -> None:
        """Set absolute progress ``value`` of ``total`` (and check for interruption)."""
        if total is not None:
            self.total = max(int(total), 1)
        self.current = min(int(value), self.total)
        self._bar.update_absolute(self.current, self.total)
        check_interrupted()

    def step(self, amount: int = 1) -> None:
        """Advance by ``amount`` (and check for interruption)."""
        self.set(self.current + amount)

    def close(self) -> None:
        """Close the bar (tqdm outside ComfyUI; a no-op inside)."""
        close = getattr(self._bar, "close", None)
        if callable(close):
            close()

    def callback(self, *args, **kwargs):
        """A callback for library loops: accepts ``(info_dict)``, ``(done, total)`` or ``(step,)``.

        Understands the sampler info dict ``{stage, step, total, window,
        num_windows}`` (``step`` and ``window`` 1-based, as the samplers report them).  Always returns
        None (never cancels by return value; interruption raises instead).
        """
        info = args[0] if args and isinstance(args[0], dict) else kwargs
        if isinstance(info, dict) and "step" in info:
            total = int(info.get("total") or 1)
            windows = int(info.get("num_windows") or 1)
            window = max(int(info.get("window") or 1), 1)
            self.set((window - 1) * total + int(info["step"]), total * windows)
        elif len(args) >= 2 and all(isinstance(a, (int, np.integer)) for a in args[:2]):
            self.set(int(args[0]), int(args[1]))
        elif len(args) == 1 and isinstance(args[0], (int, np.integer)):
            self.set(int(args[0]))
        else:
            check_interrupted()
        return None


# --------------------------------------------------------------------------- MESH


class FallbackMesh:
    """Stand-in for ComfyUI's core ``MESH`` (same attributes) outside ComfyUI.

    Attributes:
        vertices: (B, N, 3) float tensor; faces: (B, M, 3) int64 tensor;
        uvs: optional (B, N, 2); vertex_colors: optional (B, N, 3|4);
        texture: optional (B, H, W, 3); vertex_counts / face_counts: optional
        (B,) int64 real lengths when the batch is zero-padded.
    """

    def __init__(self, vertices, faces, uvs=None, vertex_colors=None, texture=None,
                 vertex_counts=None, face_counts=None):
        self.vertices = vertices
        self.faces = faces
        self.uvs = uvs
        self.vertex_colors = vertex_colors
        self.texture = texture
        self.vertex_counts = vertex_counts
        self.face_counts = face_counts


def mesh_class():
    """ComfyUI's core MESH class for this version, or ``FallbackMesh``."""
    for module_name in ("comfy_api.latest._util", "comfy_extras.nodes_hunyuan3d"):
        module = _import(module_name) if has_comfy() else None
        cls = getattr(module, "MESH", None) if module is not None else None
        if cls is not None:
            return cls
    return FallbackMesh


def make_mesh(vertices: Sequence, faces: Sequence, uvs: Optional[Sequence] = None):
    """Build a core ``MESH`` batch from per-item arrays.

    Items of equal sizes are stacked; otherwise they are zero-padded to the
    largest and ``vertex_counts`` / ``face_counts`` hold the real lengths
    (ComfyUI >= 0.2x convention for variable-size batches, also understood by
    ``SaveGLB``).

    Args:
        vertices: list of B (N_i, 3) float arrays/tensors.
        faces: list of B (M_i, 3) int arrays/tensors.
        uvs: optional list of B (N_i, 2) arrays.

    Returns:
        MESH with ``vertices`` (B, N, 3) float32 and ``faces`` (B, M, 3) int64.

    Raises:
        ValueError: empty batch or mismatched list lengths / shapes.
    """
    if len(vertices) == 0 or len(vertices) != len(faces):
        raise ValueError(f"make_mesh needs the same non-zero number of vertex and face arrays, got {len(vertices)} and {len(faces)}")
    verts = [torch.as_tensor(np.asarray(v, dtype=np.float32)).reshape(-1, 3) for v in vertices]
    tris = [torch.as_tensor(np.asarray(f, dtype=np.int64)).reshape(-1, 3) for f in faces]
    uv_list = None if uvs is None else [torch.as_tensor(np.asarray(u, dtype=np.float32)).reshape(-1, 2) for u in uvs]
    uniform = len({v.shape[0] for v in verts}) == 1 and len({f.shape[0] for f in tris}) == 1
    if uniform:
        packed_v, packed_f = torch.stack(verts), torch.stack(tris)
        packed_uv = torch.stack(uv_list) if uv_list is not None else None
        counts = (None, None)
    else:
        nv, nf = max(v.shape[0] for v in verts), max(f.shape[0] for f in tris)
        packed_v = torch.zeros((len(verts), nv, 3), dtype=torch.float32)
        packed_f = torch.zeros((len(tris), nf, 3), dtype=torch.int64)
        packed_uv = torch.zeros((len(verts), nv, 2), dtype=torch.float32) if uv_list is not None else None
        for i, (v, f) in enumerate(zip(verts, tris)):
            packed_v[i, :v.shape[0]] = v
            packed_f[i, :f.shape[0]] = f
            if packed_uv is not None:
                packed_uv[i, :uv_list[i].shape[0]] = uv_list[i]
        counts = (torch.tensor([v.shape[0] for v in verts]), torch.tensor([f.shape[0] for f in tris]))
    cls = mesh_class()
    try:
        mesh = cls(packed_v, packed_f, uvs=packed_uv, vertex_counts=counts[0], face_counts=counts[1])
    except TypeError:  # ComfyUI 0.3.x: MESH(vertices, faces) only
        mesh = cls(packed_v, packed_f)
        mesh.uvs = packed_uv
        mesh.vertex_counts, mesh.face_counts = counts
    return mesh


def mesh_batch_size(mesh) -> int:
    """Number of items B in a core ``MESH`` batch."""
    return int(mesh.vertices.shape[0]) if getattr(mesh, "vertices", None) is not None and mesh.vertices.ndim == 3 else 1


def mesh_item(mesh, index: int = 0):
    """One item of a core ``MESH`` batch as a ``trimesh.Trimesh`` (not re-processed).

    Handles zero-padded variable-size batches (``vertex_counts``/``face_counts``)
    and carries UVs as ``visual.uv`` when present.

    Raises:
        TypeError: ``mesh`` has no ``vertices``/``faces``.
        ValueError: index outside the batch or an empty item.
    """
    import trimesh

    if not hasattr(mesh, "vertices") or not hasattr(mesh, "faces"):
        raise TypeError(f"expected a MESH with vertices and faces, got {type(mesh).__name__}")
    vertices, faces = torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces)
    if vertices.ndim == 2:
        vertices, faces = vertices[None], faces[None]
    batch = vertices.shape[0]
    if not -batch <= index < batch:
        raise ValueError(f"mesh index {index} outside the batch of {batch} meshes")
    index %= batch
    v, f = vertices[index], faces[index]
    uvs = getattr(mesh, "uvs", None)
    uv = uvs[index] if uvs is not None else None
    vc, fc = getattr(mesh, "vertex_counts", None), getattr(mesh, "face_counts", None)
    if vc is not None and fc is not None:
        v, f = v[: int(vc[index])], f[: int(fc[index])]
        uv = uv[: int(vc[index])] if uv is not None else None
    v = v.detach().float().cpu().numpy()
    f = f.detach().cpu().numpy().astype(np.int64)
    if v.shape[0] == 0 or f.shape[0] == 0:
        raise ValueError(f"mesh {index} of the batch is empty (no vertices or faces)")
    visual = None
    if uv is not None:
        visual = trimesh.visual.TextureVisuals(uv=uv.detach().float().cpu().numpy())
    return trimesh.Trimesh(vertices=v, faces=f, visual=visual, process=False)


# --------------------------------------------------------------------------- FILE_3D


class FallbackFile3D:
    """Stand-in for ComfyUI's core ``File3D`` (``comfy_api.latest.Types.File3D``) outside ComfyUI.

    Same surface the core 3D nodes use: ``format`` (suffix without dot),
    ``is_disk_backed``, ``get_source()``, ``get_bytes()``, ``save_to(path)``.
    """

    def __init__(self, source: str, file_format: str = ""):
        self._source = str(source)
        self.format = (file_format or Path(self._source).suffix).lstrip(".").lower()

    @property
    def is_disk_backed(self) -> bool:
        return True

    def get_source(self) -> str:
        return self._source

    def get_bytes(self) -> bytes:
        return Path(self._source).read_bytes()

    def save_to(self, path: str) -> str:
        import shutil

        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if Path(self._source).resolve() != dest.resolve():
            shutil.copy2(self._source, dest)
        return str(dest)


def file_3d(path, file_format: str = ""):
    """A core ``File3D`` for a file on disk (what ``FILE_3D*`` sockets carry; Preview 3D takes it).

    Uses ComfyUI's own class when available (``comfy_api.latest._util.File3D``),
    else :class:`FallbackFile3D`.
    """
    module = _import("comfy_api.latest._util") if has_comfy() else None
    cls = getattr(module, "File3D", None) if module is not None else None
    if cls is None:
        cls = FallbackFile3D
    return cls(str(path), file_format)
