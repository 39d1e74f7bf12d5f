"""DINOv2 image encoder (through ``transformers``) with the ActionMesh preprocessing.

REFERENCE §4: resize the shortest edge to 256 (bicubic), center-crop 224,
ImageNet mean/std; the context is ``last_hidden_state`` (T, 257, 1024) for
DINOv2-L/14.

Shape legend: T images, H/W pixels, S tokens (1 + (224/14)^2 = 257), Dc width.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DinoV2Encoder", "preprocess_images", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_images(images: torch.Tensor, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """DINOv2 preprocessing of RGB images.

    Args:
        images: (T, H, W, 3) float in [0, 1] (channels last, as ComfyUI IMAGE).
        resize: shortest-edge size after bicubic resize (256).
        crop: center-crop size (224).

    Returns:
        (T, 3, crop, crop) float32, ImageNet-normalised.

    Raises:
        ValueError: not (T, H, W, 3), or values outside [0, 1].
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (T, H, W, 3) RGB in [0, 1], got {tuple(images.shape)}; "
                         "composite RGBA frames on white first (frames.prepare_frames)")
    x = images.float()
    if x.numel() and (x.min() < -1e-3 or x.max() > 1.0 + 1e-3):
        raise ValueError("images must hold values in [0, 1]")
    x = x.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    scale = resize / min(h, w)
    size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
    x = x[:, :, top:top + crop, left:left + crop]
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


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
