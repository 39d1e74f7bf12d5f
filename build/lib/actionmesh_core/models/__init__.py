"""ActionMesh and TripoSG model definitions (plain torch; keys equal the released checkpoints')."""
from .autoencoder import TemporalAutoencoder
from .denoiser import TemporalDenoiser
from .dit import TripoSGDiT
from .vae import TripoSGVAE

MODEL_CLASSES = {
    TemporalDenoiser.family: TemporalDenoiser,
    TemporalAutoencoder.family: TemporalAutoencoder,
    TripoSGVAE.family: TripoSGVAE,
    TripoSGDiT.family: TripoSGDiT,
}

__all__ = ["TemporalDenoiser", "TemporalAutoencoder", "TripoSGVAE", "TripoSGDiT", "MODEL_CLASSES"]
