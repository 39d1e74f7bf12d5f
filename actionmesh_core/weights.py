"""The released weights layout, its checks, and tiny random weights for smoke tests.

Layout of the ``--weights`` folder (one folder per Hugging Face repository)::

    DIR/ActionMesh/denoiser/            config.json + model.safetensors   (facebook/ActionMesh)
    DIR/ActionMesh/autoencoder/         config.json + model.safetensors
    DIR/TripoSG/vae/                    config.json + diffusion_pytorch_model.safetensors  (VAST-AI/TripoSG)
    DIR/TripoSG/transformer/            config.json + diffusion_pytorch_model.safetensors
    DIR/TripoSG/scheduler/              scheduler_config.json
    DIR/TripoSG/image_encoder_dinov2/   transformers DINOv2 (stage 0 image features)
    DIR/TripoSG/feature_extractor_dinov2/  preprocessor_config.json
    DIR/dinov2-large/                   transformers DINOv2 (facebook/dinov2-large, stage I features)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Union

import torch

from .errors import WeightsError

__all__ = ["WeightLayout", "WeightsMissingError", "make_tiny_weights", "COMPONENTS"]

# component -> (relative folder, repository, what it is)
COMPONENTS: Dict[str, tuple] = {
    "denoiser": ("ActionMesh/denoiser", "facebook/ActionMesh", "stage I temporal 3D denoiser"),
    "autoencoder": ("ActionMesh/autoencoder", "facebook/ActionMesh", "stage II temporal 3D autoencoder"),
    "vae": ("TripoSG/vae", "VAST-AI/TripoSG", "TripoSG shape VAE"),
    "transformer": ("TripoSG/transformer", "VAST-AI/TripoSG", "TripoSG image-to-3D transformer"),
    "scheduler": ("TripoSG/scheduler", "VAST-AI/TripoSG", "TripoSG scheduler config"),
    "triposg_dinov2": ("TripoSG/image_encoder_dinov2", "VAST-AI/TripoSG", "TripoSG DINOv2 image encoder"),
    "dinov2": ("dinov2-large", "facebook/dinov2-large", "DINOv2-L image encoder for stage I"),
}
# components needed by each pipeline mode
NEEDS = {
    "video": ("denoiser", "autoencoder", "vae", "transformer", "triposg_dinov2", "dinov2"),
    "video+mesh": ("denoiser", "autoencoder", "vae", "dinov2"),
}


class WeightsMissingError(WeightsError, FileNotFoundError):
    """Some model folders are missing; the one-line message lists what to download and where."""


@dataclass
class WeightLayout:
    """Paths of every component inside a weights root folder."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def path(self, component: str) -> Path:
        """Folder of ``component`` (a key of :data:`COMPONENTS`)."""
        return self.root / COMPONENTS[component][0]

    def missing(self, components: Iterable[str]) -> list:
        """Components whose folder has no ``config.json`` (``scheduler``: no scheduler config)."""
        out = []
        for comp in components:
            marker = "scheduler_config.json" if comp == "scheduler" else "config.json"
            if not (self.path(comp) / marker).exists():
                out.append(comp)
        return out

    def check(self, mode: str = "video") -> None:
        """Raise :class:`WeightsMissingError` naming each missing folder and its repository.

        Args:
            mode: ``"video"`` (TripoSG makes the anchor) or ``"video+mesh"``.
        """
        self.check_components(NEEDS[mode])

    def check_components(self, components: Iterable[str]) -> None:
        """Raise :class:`WeightsMissingError` (one line: folders, repositories, download commands) if any is missing."""
        missing = self.missing(components)
        if not missing:
            return
        what = ", ".join(f"{COMPONENTS[c][0]} ({COMPONENTS[c][2]})" for c in missing)
        repos = sorted({COMPONENTS[c][1] for c in missing})
        hint = " and ".join(f"`hf download {r} --local-dir {self.root / _repo_dir(r)}`" for r in repos)
        raise WeightsMissingError(
            f"weights missing under {self.root}: {what}. Download them with {hint} "
            "(or `python -m actionmesh_core make-tiny-weights DIR` for meaningless test weights)")


def _repo_dir(repo: str) -> str:
    return {"facebook/ActionMesh": "ActionMesh", "VAST-AI/TripoSG": "TripoSG",
            "facebook/dinov2-large": "dinov2-large"}[repo]


def make_tiny_weights(root: Union[str, os.PathLike], seed: int = 0, num_tokens: int = 64) -> Path:
    """Write small random-weight checkpoints in the released layout.

    The shapes they produce are **meaningless**: this exists for smoke tests,
    demos of the graph, and CI. The VAE output bias is calibrated so that its
    field crosses zero (SDF meshing then finds a surface).

    Args:
        root: output folder (created).
        seed: torch seed for the random weights.
        num_tokens: latent tokens per shape (recorded as the denoiser's
            ``num_tokens_nominal``; 2048 in the release).

    Returns:
        ``root`` as a Path.
    """
    from transformers import Dinov2Config, Dinov2Model

    from .checkpoints import save_model
    from .models import TemporalAutoencoder, TemporalDenoiser, TripoSGDiT, TripoSGVAE

    root = Path(root)
    layout = WeightLayout(root)
    torch.manual_seed(seed)
    latent, feat = 8, 32
    dino_cfg = dict(hidden_size=feat, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                    patch_size=14, image_size=224)
    from .io.atomic import atomic_write_bytes

    for comp in ("dinov2", "triposg_dinov2"):
        _save_pretrained_atomic(Dinov2Model(Dinov2Config(**dino_cfg)), layout.path(comp))
    fe = layout.root / "TripoSG/feature_extractor_dinov2"
    fe.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(fe / "preprocessor_config.json", json.dumps(
        {"crop_size": {"height": 224, "width": 224}, "size": {"shortest_edge": 256}, "do_center_crop": True,
         "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
         "image_processor_type": "BitImageProcessor", "resample": 3}, indent=2).encode())
    sched = layout.path("scheduler")
    sched.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(sched / "scheduler_config.json", json.dumps(
        {"_class_name": "RectifiedFlowScheduler", "num_train_timesteps": 1000, "shift": 1.0}).encode())
    save_model(TemporalDenoiser(in_channels=latent, width=32, num_layers=3, num_attention_heads=2,
                                cross_attention_dim=feat, num_tokens_nominal=num_tokens), layout.path("denoiser"))
    save_model(TemporalAutoencoder(latent_channels=latent, width=32, num_layers=2, num_attention_heads=2,
                                   embed_frequency=4), layout.path("autoencoder"))
    save_model(TripoSGDiT(in_channels=latent, width=32, num_layers=3, num_attention_heads=2,
                          cross_attention_dim=feat), layout.path("transformer"))
    vae = TripoSGVAE(latent_channels=latent, num_attention_heads=2, width_encoder=32, width_decoder=32,
                     num_layers_encoder=1, num_layers_decoder=1, embed_frequency=4).eval()
    _calibrate_vae(vae, num_tokens, latent)
    save_model(vae, layout.path("vae"))
    return root


def _save_pretrained_atomic(model, folder: Path) -> None:
    """``save_pretrained`` into a temporary folder beside ``folder``, then each file renamed into ``folder``."""
    import shutil
    import tempfile

    from .progress import quiet_library_bars

    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=str(folder.parent)))
    try:
        with quiet_library_bars():  # no "Writing model shards" bar in a log
            model.save_pretrained(str(tmp))
        for item in sorted(tmp.iterdir(), key=lambda p: p.name == "config.json"):  # config.json last
            with open(item, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(item, folder / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@torch.no_grad()
def _calibrate_vae(vae, num_tokens: int, latent_channels: int) -> None:
    """Shift the decoder output so the field of random latents has a zero crossing near the centre."""
    gen = torch.Generator().manual_seed(1)
    grid = torch.linspace(-0.9, 0.9, 17)
    pts = torch.stack(torch.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    values = []
    for _ in range(4):
        lat = torch.randn(1, num_tokens, latent_channels, generator=gen)
        values.append(vae.decode(lat, pts[None])[0, :, 0])
    vals = torch.cat(values)
    # the field is the negated decoder output: subtracting its median from -bias centres it on 0
    vae.decoder.proj_out.bias += vals.median()
