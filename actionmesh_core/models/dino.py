"""DINOv2 image encoder (through ``transformers``) with the ActionMesh preprocessing.

The release's preprocessing (release: actionmesh/model/image_encoder.py, ``ImageEncoder.encode_images``):
resize the shortest edge to 256 (PIL bicubic on 8-bit images,
as the release's transformers image processor), center-crop 224, ImageNet
mean/std; the context is ``last_hidden_state`` (T, 257, 1024) for DINOv2-L/14.

Shape legend: T images, H/W pixels, S tokens (1 + (224/14)^2 = 257), Dc width.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import nn

__all__ = ["DinoV2Encoder", "check_dinov2_folder", "preprocess_images", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_images(images: torch.Tensor, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """DINOv2 preprocessing of RGB images, as the release does it.

    release: actionmesh/model/image_encoder.py, ``ImageEncoder.encode_images``.

    The release feeds 8-bit images to the transformers ``BitImageProcessor``
    of ``facebook/dinov2-large``: PIL bicubic resize (``resample=3``, PIL's
    own antialiasing filter, result rounded to 8 bits) so the shortest edge is
    ``resize`` and the other ``int(resize * long / short)``; centre crop
    ``crop`` (top/left ``(size - crop) // 2``); ``/ 255``; ImageNet mean/std.
    Frames from :func:`~actionmesh_core.frames.prepare_frames` hold 8-bit
    values already, so ``round(x * 255)`` gives the release's input exactly.

    Args:
        images: (T, H, W, 3) float in [0, 1] (channels last, as ComfyUI IMAGE).
        resize: shortest-edge size after the bicubic resize (256).
        crop: centre-crop size (224), <= ``resize``.

    Returns:
        (T, 3, crop, crop) float32 on the device of ``images``, ImageNet-normalised.

    Raises:
        ValueError: not (T, H, W, 3), values outside [0, 1], or ``crop > resize``.
    """
    from PIL import Image

    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (T, H, W, 3) RGB in [0, 1], got {tuple(images.shape)}; "
                         "composite RGBA frames on white first (frames.prepare_frames)")
    if crop > resize:
        raise ValueError(f"DINOv2 crop {crop} must not exceed the resize {resize}")
    x = images.detach().float()
    if x.numel() and (x.min() < -1e-3 or x.max() > 1.0 + 1e-3):
        raise ValueError("images must hold values in [0, 1]")
    pixels = (x.clamp(0, 1) * 255.0).round().to("cpu", torch.uint8).numpy()
    h, w = pixels.shape[1:3]
    short, long = min(h, w), max(h, w)
    other = int(resize * long / short)
    size_wh = (resize, other) if w <= h else (other, resize)
    out = []
    for frame in pixels:
        resized = np.asarray(Image.fromarray(frame).resize(size_wh, resample=Image.BICUBIC))
        top, left = (resized.shape[0] - crop) // 2, (resized.shape[1] - crop) // 2
        out.append(resized[top:top + crop, left:left + crop])
    batch = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((batch - mean) / std).to(images.device)


def dinov2_expected_shapes(cfg: dict):
    """Shapes of the named DINOv2 tensors and the total number of values, from a ``config.json`` dict.

    Computed from the config alone (no ``transformers`` import, which takes seconds):
    the layout of ``transformers.Dinov2Model`` (embeddings with CLS/mask tokens and
    learned positions, ``num_hidden_layers`` pre-norm blocks with layer scale and an
    MLP or SwiGLU FFN, final LayerNorm). ``tests/unit/test_validation.py`` checks the total
    against ``Dinov2Model`` built on the meta device.

    Returns:
        (dict key -> shape for the embeddings and the final norm, total values).

    Raises:
        WeightsError: a size in the config is missing or not a positive integer.
    """
    from ..errors import WeightsError

    def size(key, default):
        value = cfg.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise WeightsError(f"DINOv2 config.json: {key} must be a positive number, got {value!r}")
        return value

    h = int(size("hidden_size", 768))
    layers = int(size("num_hidden_layers", 12))
    patch = int(size("patch_size", 14))
    image = int(size("image_size", 224))
    channels = int(size("num_channels", 3))
    ratio = size("mlp_ratio", 4)
    tokens = (image // patch) ** 2 + 1
    named = {"embeddings.cls_token": (1, 1, h), "embeddings.position_embeddings": (1, tokens, h),
             "embeddings.patch_embeddings.projection.weight": (h, channels, patch, patch),
             "layernorm.weight": (h,), "layernorm.bias": (h,)}
    qkv_bias = 1 if cfg.get("qkv_bias", True) else 0
    attention = 3 * (h * h + qkv_bias * h) + h * h + h
    if cfg.get("use_swiglu_ffn", False):
        hidden = (int(int(h * ratio) * 2 / 3) + 7) // 8 * 8
        ffn = h * 2 * hidden + 2 * hidden + hidden * h + h
    else:
        hidden = int(h * ratio)
        ffn = h * hidden + hidden + hidden * h + h
    per_layer = 2 * h + attention + h + 2 * h + ffn + h
    embeddings = h + h + tokens * h + h * channels * patch * patch + h
    return named, embeddings + layers * per_layer + 2 * h


def check_dinov2_folder(folder: Union[str, os.PathLike], repo: str = "facebook/dinov2-large") -> dict:
    """Check a transformers DINOv2 folder from its config and safetensors header(s) only (no tensor is read).

    Parses ``config.json`` (``model_type`` must be ``dinov2``), finds
    ``model.safetensors`` (or a sharded ``model.safetensors.index.json``),
    refuses pickle-only folders (``pytorch_model.bin``), builds the model on the
    ``meta`` device and compares every key and shape (a missing
    ``embeddings.mask_token``, unused at inference, is tolerated).

    Args:
        folder: the model folder.
        repo: the repository to name in messages.

    Returns:
        the parsed config (``hidden_size`` = feature width Dc).

    Raises:
        WeightsMissingError: no ``config.json`` (says what to download).
        WeightsError: invalid JSON, another model type, pickle-only weights,
            unreadable/truncated safetensors, or keys/shapes that do not fit.
    """
    import json

    from ..checkpoints import read_safetensors_header
    from ..errors import WeightsError
    from ..weights import WeightsMissingError

    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise WeightsMissingError(f"no DINOv2 model at {folder}: download {repo} (config.json + model.safetensors) "
                                  f"into that folder (hf download {repo} --local-dir {folder})")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{cfg_path} is not valid JSON ({exc}); re-download it from {repo}") from None
    if not isinstance(cfg, dict) or cfg.get("model_type") != "dinov2":
        kind = cfg.get("model_type") or cfg.get("_class_name") if isinstance(cfg, dict) else None
        raise WeightsError(f"{folder} holds {'a ' + repr(kind) + ' model' if kind else 'no transformers model'}, not "
                           f"DINOv2 (config.json model_type must be 'dinov2'); put {repo} there")
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        shapes = read_safetensors_header(folder / "model.safetensors")
    elif index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise WeightsError(f"{index} is not a valid safetensors index ({exc}); re-download it from {repo}") from None
        shapes = {}
        for shard in shards:
            if not (folder / shard).is_file():
                raise WeightsError(f"{folder / shard} (listed in {index.name}) is missing; re-download {repo}")
            shapes.update(read_safetensors_header(folder / shard))
    else:
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        found = f"only pickle weights {pickles}" if pickles else "no model.safetensors"
        raise WeightsError(f"{folder} has {found}: only .safetensors is supported (never pickle); download "
                           f"model.safetensors of {repo} into it")
    expected, want = dinov2_expected_shapes(cfg)
    # transformers renames attention keys between versions (q_proj vs attention.attention.query), so the check
    # is naming-independent where it must be: layer indices, embedding/norm shapes and the total size
    prefix = "dinov2."
    shapes = {(k[len(prefix):] if k.startswith(prefix) else k): tuple(v) for k, v in shapes.items()}
    problems = [f"{key}: file {shapes.get(key, 'missing')} vs model {shape}"
                for key, shape in expected.items() if shapes.get(key) != shape]
    layers = {int(m.group(1)) for m in (re.match(r"encoder\.layer\.(\d+)\.", k) for k in shapes) if m}
    if layers != set(range(int(cfg.get("num_hidden_layers", 12)))):
        problems.append(f"{len(layers)} layers in the file vs num_hidden_layers={cfg.get('num_hidden_layers', 12)}")
    numel = sum(math.prod(v) for v in shapes.values())
    hidden = expected["layernorm.weight"][0]
    if not problems and numel not in (want, want - hidden):  # mask_token (unused at inference) may be absent
        problems.append(f"{numel} values in the file vs {want} in the model its config builds")
    if problems:
        raise WeightsError(f"the weights in {folder} do not match the DINOv2 model its config.json builds "
                           f"({'; '.join(problems[:4])}); re-download {repo}")
    return cfg


class DinoV2Encoder(nn.Module):
    """Frozen DINOv2 feature extractor (``facebook/dinov2-large`` or TripoSG's ``image_encoder_dinov2``).

    Call with (T, H, W, 3) images in [0, 1]; returns (T, S, Dc) ``last_hidden_state``.
    """

    def __init__(self, model: nn.Module, batch_size: int = 16):
        super().__init__()
        self.model = model
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, folder: Union[str, os.PathLike], device="cpu", dtype="fp32") -> "DinoV2Encoder":
        """Load a local transformers DINOv2 folder (``config.json`` + weights); never downloads.

        Raises:
            WeightsMissingError (a FileNotFoundError): the folder or its config is missing (says what to download).
            WeightsError (a ValueError): not a DINOv2 model, pickle-only, or keys/shapes that do not fit
                (checked from headers first, see :func:`check_dinov2_folder`).
        """
        from transformers import Dinov2Model

        from ..checkpoints import resolve_device, resolve_dtype

        folder = Path(folder)
        check_dinov2_folder(folder)
        try:
            model = Dinov2Model.from_pretrained(str(folder), local_files_only=True, torch_dtype=resolve_dtype(dtype),
                                                use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder} is not a loadable DINOv2 model: {exc}") from None
        enc = cls(model.to(resolve_device(device)).eval().requires_grad_(False))
        enc.checkpoint_path = str(folder)
        return enc

    @property
    def hidden_size(self) -> int:
        """Dc, the feature width (1024 for DINOv2-L)."""
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:  # noqa: D102
        param = next(self.model.parameters())
        outs = []
        for start in range(0, images.shape[0], self.batch_size):
            x = preprocess_images(images[start:start + self.batch_size].to(param.device))
            outs.append(self.model(pixel_values=x.to(param.dtype)).last_hidden_state.float())
        return torch.cat(outs)
