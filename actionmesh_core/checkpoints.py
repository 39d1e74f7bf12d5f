"""Loading and saving checkpoints in the released on-disk layouts.

Layouts as the release loads them: release: actionmesh/pipeline.py, ``ActionMeshPipeline._load_temporal_denoiser``,
``ActionMeshPipeline._load_temporal_vae``, ``ActionMeshPipeline._load_image_to_3d`` (Hugging Face
``from_pretrained`` folders ``denoiser/``, ``autoencoder/`` and TripoSG's diffusers pipeline); module names
as the modules define them: release: actionmesh/model/temporal_denoiser.py, ``ActionMeshDenoiser.__post_init__``;
release: actionmesh/model/temporal_autoencoder.py, ``ActionMeshAutoencoder.__post_init__``; release:
third_party/TripoSG/triposg/models/autoencoders/autoencoder_kl_triposg.py, ``TripoSGVAEModel.__init__``; release:
third_party/TripoSG/triposg/models/transformers/triposg_transformer.py, ``TripoSGDiTModel.__init__``.

Accepted inputs:

- an official folder: ``config.json`` + ``model.safetensors`` (ActionMesh
  ``denoiser/``, ``autoencoder/``) or ``diffusion_pytorch_model.safetensors``
  (TripoSG ``vae/``, ``transformer/``);
- a single ``.safetensors`` file plus a config (a path to a JSON file, a dict,
  or ``<file>.json`` / ``config.json`` next to it).

Loading is strict: any missing, unexpected or mis-shaped key raises
:class:`CheckpointError` naming the keys and which model kind the checkpoint
looks like. Only safetensors is read (never pickle).
"""
from __future__ import annotations

import json
import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from .errors import WeightsError
from .models import MODEL_CLASSES
from .models.config import split_config

__all__ = ["CheckpointError", "CheckpointInfo", "inspect_checkpoint", "read_safetensors_header", "load_model", "save_model", "detect_kind", "resolve_dtype", "resolve_device",
           "check_tensor_values", "KIND_DESCRIPTIONS", "WEIGHT_FILES", "FOLDER_WEIGHT_FILES"]

PathLike = Union[str, os.PathLike]

KIND_DESCRIPTIONS = {
    "actionmesh_denoiser": "ActionMesh stage I temporal 3D denoiser (facebook/ActionMesh denoiser/)",
    "actionmesh_autoencoder": "ActionMesh stage II temporal 3D autoencoder (facebook/ActionMesh autoencoder/)",
    "triposg_vae": "TripoSG shape VAE (VAST-AI/TripoSG vae/)",
    "triposg_dit": "TripoSG image-to-3D transformer (VAST-AI/TripoSG transformer/)",
}
WEIGHT_FILES = {
    "actionmesh_denoiser": "model.safetensors",
    "actionmesh_autoencoder": "model.safetensors",
    "triposg_vae": "diffusion_pytorch_model.safetensors",
    "triposg_dit": "diffusion_pytorch_model.safetensors",
}
FOLDER_WEIGHT_FILES = ("model.safetensors", "diffusion_pytorch_model.safetensors")
"""The weights file read from a model folder, first found wins (the released names of ``WEIGHT_FILES``)."""
_CLASS_NAMES = {"TripoSGVAEModel": "triposg_vae", "TripoSGDiTModel": "triposg_dit"}
_TOLERATED = {"triposg_dit": {"use_cross_attention_2": (False, None), "cross_attention_2_dim": None}}
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16, "half": torch.float16}


class CheckpointError(WeightsError):
    """A checkpoint cannot be found, read, or does not match its model (a ``ValueError``, one-line message)."""


def resolve_dtype(dtype: Union[str, torch.dtype, None]) -> torch.dtype:
    """Map ``"fp32" | "bf16" | "fp16"`` (or a torch dtype, or None = fp32) to a torch dtype.

    Raises:
        ValueError: unknown name.
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: use one of fp32, bf16, fp16") from None


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else mps if available, else cpu.

    Raises:
        ValueError: a CUDA/MPS device was asked for but is not available.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} requested but MPS is not available; use --device cpu or auto")
    return dev


def _read_header(path: Path) -> Dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read safetensors file {path}: {exc}. Re-download it; only .safetensors "
                              "checkpoints are supported (no pickle .bin/.ckpt).") from None


#: safetensors dtype -> torch dtype; the float ones are the ones a model weight may have
_ST_FLOAT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_ST_INTEGER = ("BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64")
_SCAN_CHUNK = 16 << 20


def check_tensor_values(path: PathLike, expected: Optional[Dict[str, torch.dtype]] = None,
                        chunk_bytes: int = _SCAN_CHUNK) -> int:
    """Check every tensor's dtype and values in a ``.safetensors`` file, streaming it (memory stays flat).

    Each float tensor (F32, F16, BF16, F64) is read in pieces of at most ``chunk_bytes`` into one
    reused buffer and its minimum and maximum taken (NaN propagates, inf shows): any NaN or infinite
    value is an error. A tensor of another dtype (integers, bool, 8-bit floats) is an error unless
    ``expected`` says the model holds an integer/bool tensor under that name.

    Args:
        path: the ``.safetensors`` file (its header already checked, e.g. by :func:`inspect_checkpoint`).
        expected: tensor name -> the dtype the model gives it (e.g. a ``meta`` model's state dict);
            None: every tensor must be float.
        chunk_bytes: read size (16 MiB).

    Returns:
        The number of tensor bytes scanned.

    Raises:
        CheckpointError: (one line naming the file and the tensor) an unsupported dtype, NaN or
            infinite values, or a file shorter than its header says.
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    scanned = 0
    with handle:
        try:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        except (ValueError, TypeError, struct.error) as exc:
            raise CheckpointError(f"cannot read the safetensors header of {path}: {exc}; re-download it") from None
        base = 8 + size
        entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                         key=lambda kv: kv[1]["data_offsets"][0])
        buffer = bytearray(max(int(chunk_bytes), 64))
        view = memoryview(buffer)
        for name, entry in entries:
            dtype = str(entry.get("dtype"))
            if dtype not in _ST_FLOAT:
                want = (expected or {}).get(name)
                if dtype in _ST_INTEGER and want is not None and not want.is_floating_point:
                    continue
                raise CheckpointError(f"{path}: tensor {name} is {dtype}, not a float tensor (F32, F16 or BF16); "
                                      "the file was not saved from the released model: re-download it")
            torch_dtype = _ST_FLOAT[dtype]
            item = torch.tensor([], dtype=torch_dtype).element_size()
            begin, end = (int(v) for v in entry["data_offsets"])
            handle.seek(base + begin)
            remaining = end - begin
            step = len(buffer) - len(buffer) % item
            while remaining > 0:
                n = min(remaining, step)
                got = handle.readinto(view[:n])
                if got != n:
                    raise CheckpointError(f"{path} ends inside tensor {name}: the file is truncated; re-download it")
                lo, hi = torch.aminmax(torch.frombuffer(buffer, dtype=torch_dtype, count=n // item))
                if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
                    raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values; the file is corrupt "
                                          "or was saved from a diverged model: re-download it")
                remaining -= n
                scanned += n
    return scanned


def detect_kind(keys, config: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """Guess the model kind from a config and/or state-dict keys.

    Args:
        keys: iterable of state-dict key names.
        config: parsed ``config.json`` (optional).

    Returns:
        one of :data:`KIND_DESCRIPTIONS`' keys, or None when nothing matches.
    """
    config = config or {}
    if config.get("_class_name") in _CLASS_NAMES:
        return _CLASS_NAMES[config["_class_name"]]
    keys = set(keys)
    if any(k.startswith("encoder.proj_in") for k in keys) or {"quant.weight", "post_quant.weight"} <= keys:
        return "triposg_vae"
    if "proj_query.weight" in keys and "post_quant.weight" in keys:
        return "actionmesh_autoencoder"
    if any(".s_attn." in k for k in keys) and "time_proj.linear_1.weight" in keys:
        return "actionmesh_denoiser"
    if any(".attn1." in k for k in keys) and "time_proj.linear_1.weight" in keys:
        return "triposg_dit"
    if "prediction_mode" in config:
        return "actionmesh_autoencoder"
    if "inflated_layers" in config:
        return "actionmesh_denoiser"
    if "width_encoder" in config:
        return "triposg_vae"
    return None


def _locate(path: Path, config: Union[None, PathLike, Dict[str, Any]]) -> Tuple[Path, Dict[str, Any]]:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        candidates = [path / name for name in FOLDER_WEIGHT_FILES]
        weights = [c for c in candidates if c.exists()]
        if not weights:
            pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.ckpt"))
            hint = f" (found pickle files {pickles}: only safetensors is supported)" if pickles else ""
            raise CheckpointError(f"{path} holds no model.safetensors or diffusion_pytorch_model.safetensors{hint}. "
                                  "Point to a released model folder such as ActionMesh/denoiser or TripoSG/vae.")
        weight_file = weights[0]
        cfg_path = path / "config.json"
    else:
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path}: only .safetensors checkpoints are supported (no pickle)")
        weight_file = path
        cfg_path = path.with_suffix(".json")
        if not cfg_path.exists():
            cfg_path = path.parent / "config.json"
    if isinstance(config, dict):
        return weight_file, dict(config)
    if config is not None:
        cfg_path = Path(config)
    if not cfg_path.exists():
        raise CheckpointError(f"no config for {weight_file}: expected {cfg_path}. Keep the config.json that ships "
                              "with the weights next to them, or pass config=...")
    try:
        return weight_file, json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({exc}); re-download the config.json that ships "
                              "with the weights") from None


@dataclass
class CheckpointInfo:
    """What :func:`inspect_checkpoint` found, without reading any tensor data.

    Attributes:
        path: the folder or file given.
        weight_file: the ``.safetensors`` file.
        config: the parsed config.
        kind: model kind (a key of :data:`KIND_DESCRIPTIONS`).
        shapes: tensor name -> shape, from the safetensors header.
        model: the model built from the config on the ``meta`` device (no memory).
    """

    path: Path
    weight_file: Path
    config: Dict[str, Any]
    kind: str
    shapes: Dict[str, Tuple[int, ...]]
    model: nn.Module


def read_safetensors_header(path: PathLike) -> Dict[str, Tuple[int, ...]]:
    """Tensor name -> shape of a ``.safetensors`` file, from its header only (no tensor is read).

    Raises:
        CheckpointError: the file cannot be read, is truncated or is not safetensors.
    """
    return _read_header(Path(path))


def inspect_checkpoint(
    path: PathLike,
    kind: Optional[str] = None,
    *,
    config: Union[None, PathLike, Dict[str, Any]] = None,
) -> CheckpointInfo:
    """Check a checkpoint against the model its config builds, reading headers only (seconds, no RAM).

    Parses the config, reads the safetensors header (names, shapes), builds the
    model on the ``meta`` device and compares every key and shape.

    Args:
        path: official folder (``config.json`` + ``*.safetensors``) or one ``.safetensors`` file.
        kind: expected kind; None = auto-detect.
        config: config dict or JSON path overriding the one found next to the weights.

    Returns:
        :class:`CheckpointInfo`.

    Raises:
        CheckpointError: file/config missing or unreadable, pickle-only folder,
            kind mismatch, config that does not build the model, or any missing /
            unexpected / mis-shaped tensor (all named).
    """
    path = Path(path)
    weight_file, cfg = _locate(path, config)
    if not isinstance(cfg, dict):
        raise CheckpointError(f"the config of {path} must be a JSON object, got {type(cfg).__name__}")
    shapes = _read_header(weight_file)
    detected = detect_kind(shapes, cfg)
    if kind is not None and kind not in MODEL_CLASSES:
        raise CheckpointError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_CLASSES)}")
    if kind is not None and detected is not None and detected != kind:
        raise CheckpointError(f"{path} looks like a {KIND_DESCRIPTIONS[detected]}, not a {KIND_DESCRIPTIONS[kind]}. "
                              "Check which folder you selected.")
    kind = kind or detected
    if kind is None:
        raise CheckpointError(f"cannot tell which model {path} holds (keys start with "
                              f"{sorted({k.split('.')[0] for k in shapes})}); pass kind=...")
    cls = MODEL_CLASSES[kind]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.device("meta"):
                model = cls(**split_config(cls, cfg, _TOLERATED.get(kind)))
    except (TypeError, ValueError, AssertionError, ZeroDivisionError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: config does not fit a {KIND_DESCRIPTIONS[kind]}: {exc}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    mismatched = sorted(f"{k}: checkpoint {shapes[k]} vs model {expected[k]}"
                        for k in set(expected) & set(shapes) if shapes[k] != expected[k])
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", mismatched)):
            if items:
                shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
                parts.append(f"{label}: {shown}")
        raise CheckpointError(f"{weight_file} does not match the {KIND_DESCRIPTIONS[kind]} built from its config "
                              f"({'; '.join(parts)}). The file is corrupt, truncated, or belongs to another model "
                              "or config.")
    return CheckpointInfo(path=path, weight_file=weight_file, config=cfg, kind=kind, shapes=shapes, model=model)


def load_model(
    path: PathLike,
    kind: Optional[str] = None,
    *,
    device: Union[str, torch.device, None] = "cpu",
    dtype: Union[str, torch.dtype, None] = "fp32",
    config: Union[None, PathLike, Dict[str, Any]] = None,
) -> nn.Module:
    """Build a model from its config and load its safetensors weights, strictly.

    Everything is checked first from headers only (:func:`inspect_checkpoint`);
    the tensors are read afterwards.

    Args:
        path: official folder (``config.json`` + ``*.safetensors``) or one
            ``.safetensors`` file.
        kind: expected kind (``actionmesh_denoiser``, ``actionmesh_autoencoder``,
            ``triposg_vae``, ``triposg_dit``); None = auto-detect.
        device: ``"cpu"``, ``"cuda"``, ``"mps"``, ``"auto"`` or a torch device.
        dtype: ``"fp32"``, ``"bf16"``, ``"fp16"`` or a torch dtype. The stage II
            query path stays float32 (release: actionmesh/model/temporal_autoencoder.py,
            ``ActionMeshAutoencoder.forward``).
        config: config dict or JSON path overriding the one found next to the weights.

    Returns:
        the model in eval mode, on ``device``, with ``.config`` and
        ``.checkpoint_path`` set.

    Raises:
        CheckpointError: file/config missing or unreadable, kind mismatch, or
            any missing / unexpected / mis-shaped tensor (all named).
    """
    info = inspect_checkpoint(path, kind, config=config)
    path, weight_file, kind, model = info.path, info.weight_file, info.kind, info.model
    from safetensors.torch import load_file

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    try:
        state = load_file(str(weight_file), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"cannot read tensors from {weight_file}: {exc}") from None
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device=dev, dtype=torch_dtype)
    if hasattr(model, "keep_query_path_fp32"):
        model.keep_query_path_fp32()
    model.eval().requires_grad_(False)
    model.checkpoint_path = str(path)
    model.kind = kind
    return model


def save_model(model: nn.Module, folder: PathLike) -> Path:
    """Write ``model`` in its released folder layout (``config.json`` + safetensors).

    Args:
        model: one of the package's models (has ``.family`` and ``.config``).
        folder: output folder (created).

    Returns:
        the folder path.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kind = model.family
    cfg = dict(model.config)
    if kind == "triposg_vae":
        cfg = {"_class_name": "TripoSGVAEModel", **cfg}
    elif kind == "triposg_dit":
        cfg = {"_class_name": "TripoSGDiTModel", **cfg}
    from .io.atomic import atomic_path, atomic_write_bytes

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHT_FILES[kind]) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    atomic_write_bytes(folder / "config.json", json.dumps(cfg, indent=2, sort_keys=True).encode("utf-8"))
    return folder
