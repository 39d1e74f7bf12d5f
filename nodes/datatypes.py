"""Values passed between ActionMesh nodes (ComfyUI socket types).

Socket type names (``RETURN_TYPES`` strings) and the Python objects that
travel on them:

=======================  ===================================================
ACTIONMESH_DENOISER      stage I temporal 3D denoiser (``torch.nn.Module``)
ACTIONMESH_AUTOENCODER   stage II temporal 3D autoencoder (``torch.nn.Module``)
TRIPOSG_VAE              TripoSG shape VAE (``encode``/``decode``/``field_fn``)
TRIPOSG_DIT              ``actionmesh_core.stages.ImageTo3DModel`` (TripoSG transformer + its image encoder)
DINOV2                   DINOv2-L image encoder (``images -> (T, 257, 1024)``)
ACTIONMESH_FRAMES        ``actionmesh_core.frames.PreparedFrames``
ACTIONMESH_CONTEXT       ``actionmesh_core.stages.FrameContext`` (per-frame image features)
ACTIONMESH_LATENT        ``actionmesh_core.stages.SourceLatents`` (known latents + their frames)
ACTIONMESH_LATENTS       ``actionmesh_core.stages.LatentSequence`` (one latent per frame)
ACTIONMESH_REFERENCE     ``actionmesh_core.geometry.reference.ReferenceMesh``
ACTIONMESH_ANIMATION     ``actionmesh_core.io.animated_mesh.AnimatedMesh``
=======================  ===================================================

Shape legend: T frames, S image tokens per frame (257), Dc feature width
(1024), N latent tokens per frame (2048), C latent channels (64).
"""
from __future__ import annotations

from actionmesh_core.stages import FrameContext, ImageTo3DModel, LatentSequence, SourceLatents  # noqa: F401

from .host_io import io

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

# the V3 socket types (``io.Custom``) of the names above
Denoiser = io.Custom(DENOISER)
Autoencoder = io.Custom(AUTOENCODER)
TripoSGVAE = io.Custom(TRIPOSG_VAE)
TripoSGDiT = io.Custom(TRIPOSG_DIT)
DinoV2 = io.Custom(DINOV2)
Frames = io.Custom(FRAMES)
Context = io.Custom(CONTEXT)
Latent = io.Custom(LATENT)
Latents = io.Custom(LATENTS)
Reference = io.Custom(REFERENCE)
Animation = io.Custom(ANIMATION)

__all__ = [
    "DENOISER", "AUTOENCODER", "TRIPOSG_VAE", "TRIPOSG_DIT", "DINOV2", "FRAMES", "CONTEXT",
    "LATENT", "LATENTS", "REFERENCE", "ANIMATION", "FrameContext", "SourceLatents", "LatentSequence",
    "ImageTo3DModel", "Denoiser", "Autoencoder", "TripoSGVAE", "TripoSGDiT", "DinoV2", "Frames", "Context", "Latent",
    "Latents", "Reference", "Animation",
]
