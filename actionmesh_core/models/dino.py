"""DINOv2 image encoder (through ``transformers``) with the ActionMesh preprocessing.

REFERENCE §4: resize the shortest edge to 256 (PIL bicubic on 8-bit images,
as the release's transformers image processor), center-crop 224, ImageNet
mean/std; the context is ``last_hidden_state`` (T, 257, 1024) for DINOv2-L/14.

Shape legend: T images, H/W pixels, S tokens (1 + (224/14)^2 = 257), Dc width.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import nn

__all__ = ["DinoV2Encoder", "preprocess_images", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_images(images: torch.Tensor, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """DINOv2 preprocessing of RGB images, as the release does it (REFERENCE §4).

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
            FileNotFoundError: the folder or its config is missing (says what to download).
            ValueError: the folder is not a DINOv2 model.
        """
        from transformers import Dinov2Model

        from ..checkpoints import resolve_device, resolve_dtype

        folder = Path(folder)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"no DINOv2 model at {folder}: download facebook/dinov2-large (config.json + "
                                    "model.safetensors) into that folder")
        try:
            model = Dinov2Model.from_pretrained(str(folder), local_files_only=True, torch_dtype=resolve_dtype(dtype))
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
