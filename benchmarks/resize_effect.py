"""What the old 512 px resize of Prepare Frames did to stage I's inputs and outputs (issue #19).

Before the stage layer, the Prepare Frames node resized every crop to 512 px
(bilinear, antialiased) before DINOv2; the release and the command line do
not resize (DINOv2's own preprocessing resizes the crop to 256 px bicubic and
centre-crops 224). This script prepares the same clips both ways and prints,
side by side:

* the 224 px DINOv2 input: mean / max absolute difference in 8-bit levels and
  the share of pixels that differ;
* the DINOv2 features and the stage I latents with tiny random weights
  (``make-tiny-weights``; same seed): relative L2 difference
  ``|resized - unresized| / |unresized|``.

Usage: ``python3 benchmarks/resize_effect.py [--fixtures DIR] [--frames 16] [--steps 4]``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    from actionmesh_core import stages
    from actionmesh_core.frames import load_frames
    from actionmesh_core.models.dino import preprocess_images
    from actionmesh_core.options import FrameOptions
    from actionmesh_core.pipeline import ActionMeshPipeline, PipelineConfig
    from actionmesh_core.weights import make_tiny_weights

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default=str(ROOT / "tests" / "data" / "fixtures"))
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="stage I steps (tiny weights)")
    args = parser.parse_args()
    weights = make_tiny_weights(Path(tempfile.mkdtemp()) / "weights")
    pipe = ActionMeshPipeline(weights, PipelineConfig(device="cpu", dtype="fp32"))
    print("| clip | crop px | DINOv2 input: mean / max abs diff (8-bit) | pixels changed | features rel. diff "
          "| stage I latents rel. diff |")
    print("|---|---|---|---|---|---|")
    for clip in ("davis_camel", "spring"):
        rgba = load_frames(Path(args.fixtures) / clip)[:args.frames]
        runs = {}
        for size in (None, 512):
            prepared, _ = stages.prepare_clip(rgba, options=FrameOptions(size=size))
            context = stages.encode_frames(pipe, prepared)
            # the anchor latent of frame 0: the stage I source both runs share, so only the features differ
            channels = pipe.model("denoiser").config["in_channels"]
            anchor = stages.SourceLatents({0: torch.randn(pipe.num_tokens(), channels,
                                                          generator=torch.Generator().manual_seed(0))})
            latents = stages.temporal_denoise(pipe, context, anchor, steps=args.steps, guidance=7.5, shift=3.0,
                                              seed=0, noise_correlation=0.0, window=16, slide=15)
            runs[size] = (prepared, preprocess_images(prepared.rgb), context.features, latents.latents)
        (plain, x0, f0, l0), (resized, x1, f1, l1) = runs[None], runs[512]
        # ImageNet-normalised inputs back to 8-bit levels
        std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1) * 255.0
        levels = ((x1 - x0) * std).abs()
        print(f"| {clip} | {plain.rgb.shape[1]}x{plain.rgb.shape[2]} -> 512 | {float(levels.mean()):.2f} / "
              f"{float(levels.max()):.0f} | {100 * float((levels > 0.5).float().mean()):.1f} % | "
              f"{_relative(f1, f0):.3%} | {_relative(l1, l0):.3%} |")


if __name__ == "__main__":
    main()
