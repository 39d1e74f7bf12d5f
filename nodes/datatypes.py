"""Values passed between ActionMesh nodes (ComfyUI socket types).

Socket type names (``RETURN_TYPES`` strings) and the Python objects that
travel on them:

=======================  ===================================================
ACTIONMESH_DENOISER      stage I temporal 3D denoiser (``torch.nn.Module``)
ACTIONMESH_AUTOENCODER   stage II temporal 3D autoencoder (``torch.nn.Module``)
TRIPOSG_VAE              TripoSG shape VAE (``encode``/``decode``/``field_fn``)
TRIPOSG_DIT              TripoSG image-to-3D transformer
DINOV2                   DINOv2-L image encoder (``images -> (T, 257, 1024)``)
ACTIONMESH_FRAMES        ``actionmesh_core.frames.PreparedFrames``
ACTIONMESH_CONTEXT       ``FrameContext`` (per-frame image features)
ACTIONMESH_LATENT        ``SourceLatents`` (known latents + their frames)
ACTIONMESH_LATENTS       ``LatentSequence`` (one latent per frame)
ACTIONMESH_REFERENCE     ``actionmesh_core.geometry.reference.ReferenceMesh``
ACTIONMESH_ANIMATION     ``actionmesh_core.io.animated_mesh.AnimatedMesh``
=======================  ===================================================

Shape legend: T frames, S image tokens per frame (257), Dc feature width
(1024), N latent tokens per frame (2048), C latent channels (64).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

DENOISER = "ACTIONMESH_DENOISER"
AUTOENCODER = "ACTIONMESH_AUTOENCODER"
TRIPOSG_VAE = "TRIPOSG_VAE"
TRIPOSG_DIT = "TRIPOSG_DIT"
DINOV2 = "DINOV2"
FRAMES = "ACTIONMESH_FRAMES"
CONTEXT = "ACTIONMESH_CONTEXT"
LATENT = "ACTIONMESH_LATENT"
LATENTS = "ACTIONMESH_LATENTS"
REFERENCE = "ACTIONMESH_REFERENCE"
ANIMATION = "ACTIONMESH_ANIMATION"

__all__ = [
    "DENOISER", "AUTOENCODER", "TRIPOSG_VAE", "TRIPOSG_DIT", "DINOV2", "FRAMES", "CONTEXT",
    "LATENT", "LATENTS", "REFERENCE", "ANIMATION", "FrameContext", "SourceLatents", "LatentSequence",
]


@dataclass
class FrameContext:
    """Per-frame image features (DINOv2 ``last_hidden_state``, REFERENCE §4).

    Attributes:
        features: (T, S, Dc) float32 CPU tensor.
        fps: frame rate of the sequence, if known.
        frame_indices: indices of the frames in the source video.
    """

    features: torch.Tensor
    fps: Optional[float] = None
    frame_indices: List[int] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.features.shape[0])


@dataclass
class SourceLatents:
    """Known (clean) 3D latents and the frames they belong to (paper §3.2, masked generation).

    Attributes:
        latents: {frame index: (N, C) float32 CPU tensor}.
        anchor_frame: the frame whose mesh becomes the reference mesh of stage II.
    """

    latents: Dict[int, torch.Tensor]
    anchor_frame: int = 0

    def __post_init__(self) -> None:
        if not self.latents:
            raise ValueError("SourceLatents needs at least one latent")
        shapes = {tuple(v.shape) for v in self.latents.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"source latents must all be (N, C) of one shape, got {sorted(shapes)}")
        if self.anchor_frame not in self.latents:
            raise ValueError(f"anchor frame {self.anchor_frame} has no latent (frames: {sorted(self.latents)})")

    @property
    def frames(self) -> List[int]:
        """Sorted frame indices that carry a source latent."""
        return sorted(self.latents)

    def merged(self, other: Optional["SourceLatents"]) -> "SourceLatents":
        """Union with ``other`` (this object's latents and anchor win on conflicts)."""
        if other is None:
            return self
        latents = dict(other.latents)
        latents.update(self.latents)
        return SourceLatents(latents=latents, anchor_frame=self.anchor_frame)


@dataclass
class LatentSequence:
    """One 3D latent per frame: the output of stage I (paper §3.2).

    Attributes:
        latents: (T, N, C) float32 CPU tensor.
        anchor_frame: frame of the reference mesh (for stage II).
        source_frames: frames whose latents were given (not generated).
        fps: frame rate, if known.
    """

    latents: torch.Tensor
    anchor_frame: int = 0
    source_frames: List[int] = field(default_factory=list)
    fps: Optional[float] = None

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.latents.shape[0])
