"""Background removal for frames without alpha, as the official release does it.

The release segments RGB frames with RMBG-1.4 (a salient-object network), then
binarises the soft map with an Otsu threshold and removes small connected
components. Here the network runs through ``onnxruntime`` from a LOCAL ONNX
file (nothing is downloaded): huggingface.co/briaai/RMBG-1.4, file
``onnx/model.onnx`` (any single-input / single-map-output segmentation model
in the same layout works, e.g. a BiRefNet or U2-Net export).

Pre-processing (RMBG-1.4): resize to the model's input size (1024 x 1024 when
the ONNX input has dynamic sizes), RGB in [0, 1] minus 0.5 (std 1). The output
map is resized back to the frame, min-max normalised per frame, thresholded
with Otsu's method (scikit-image), and connected components smaller than 5 %
of the largest one are dropped (holes of the same size are filled).

Shape legend: T frames, H x W pixels.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch

from .errors import BackgroundModelError

__all__ = ["BackgroundRemover", "find_onnx_model", "clean_mask", "RMBG_REPO"]

RMBG_REPO = "briaai/RMBG-1.4"
PathLike = Union[str, os.PathLike]


def _download_hint(where: Path) -> str:
    return (f"download onnx/model.onnx of huggingface.co/{RMBG_REPO} (`hf download {RMBG_REPO} "
            f"onnx/model.onnx --local-dir {where}`) and pass that file or folder")


def find_onnx_model(path: PathLike) -> Path:
    """The ``.onnx`` file of a local model: the file itself, or ``model.onnx`` / ``onnx/model.onnx`` in a folder.

    Only existence and the file's first bytes are checked (no model is loaded).

    Raises:
        BackgroundModelError: nothing there (the message says what to download
            and where), an empty file, or a file that is not ONNX (e.g. a
            pickle/safetensors checkpoint).
    """
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "model.onnx", path / "onnx" / "model.onnx"):
            if candidate.is_file():
                path = candidate
                break
        else:
            others = sorted(p.name for p in path.glob("*.onnx"))
            if len(others) == 1:
                path = path / others[0]
            else:
                raise BackgroundModelError(f"no background-removal model in {path} (no model.onnx or onnx/model.onnx"
                                           f"{'; several .onnx files: ' + ', '.join(others) if others else ''}): "
                                           + _download_hint(path))
    elif not path.exists():
        raise BackgroundModelError(f"background-removal model {path} not found: "
                                   + _download_hint(path.parent if path.suffix else path))
    if path.suffix.lower() != ".onnx":
        raise BackgroundModelError(f"background-removal model {path} must be an .onnx file (got {path.suffix or 'no '}"
                                   f" suffix): " + _download_hint(path.parent))
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise BackgroundModelError(f"cannot read background-removal model {path}: {exc.strerror or exc}") from None
    if len(head) < 4 or head[:1] != b"\x08":  # an ONNX ModelProto starts with field 1 (ir_version), varint
        raise BackgroundModelError(f"{path} is not an ONNX model (empty or another format): " + _download_hint(path.parent))
    return path


def clean_mask(prob: np.ndarray, min_fraction: float = 0.05) -> np.ndarray:
    """Binarise a soft foreground map with Otsu's threshold and drop small components and holes.

    Args:
        prob: (H, W) float map, higher = foreground.
        min_fraction: components (and holes) smaller than this fraction of the
            largest foreground component are removed (filled).

    Returns:
        (H, W) float32 mask of 0/1 (all zero when the map is constant).
    """
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    prob = np.asarray(prob, dtype=np.float32)
    if float(prob.max()) - float(prob.min()) < 1e-6:
        return np.zeros(prob.shape, np.float32)
    mask = prob > threshold_otsu(prob)
    labels = label(mask, connectivity=2)
    if labels.max() == 0:
        return mask.astype(np.float32)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= max(1.0, min_fraction * sizes.max())
    mask = keep[labels]
    holes = label(~mask, connectivity=1)
    hole_sizes = np.bincount(holes.ravel())
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    small = hole_sizes < min_fraction * sizes.max()
    small[border] = False
    small[0] = False
    mask = mask | small[holes]
    return mask.astype(np.float32)


class BackgroundRemover:
    """A local ONNX salient-object model (RMBG-1.4 layout) turning RGB frames into object masks.

    Args:
        path: ``.onnx`` file or a folder holding ``model.onnx`` / ``onnx/model.onnx``.
        providers: onnxruntime execution providers (default: CUDA when available, else CPU).

    Raises:
        BackgroundModelError: missing model (what to download and where), not
            ONNX, onnxruntime not installed, or a model onnxruntime cannot load.
    """

    def __init__(self, path: PathLike, providers=None):
        self.path = find_onnx_model(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackgroundModelError("background removal needs onnxruntime: pip install onnxruntime "
                                       "(or onnxruntime-gpu)") from None
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackgroundModelError(f"onnxruntime cannot load {self.path}: {str(exc).splitlines()[0]}; "
                                       + _download_hint(self.path.parent)) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise BackgroundModelError(f"{self.path} is not an image segmentation model (expects one (1, 3, H, W) "
                                       f"input, has {[(i.name, i.shape) for i in inputs]})")
        self.input_name = inputs[0].name
        dims = inputs[0].shape[2:]
        self.input_size = tuple(int(d) if isinstance(d, int) and d > 0 else 1024 for d in dims)

    def soft_masks(self, rgb: torch.Tensor) -> np.ndarray:
        """(T, H, W, 3) RGB in [0, 1] -> (T, H, W) float32 maps in [0, 1] (min-max normalised per frame)."""
        import torch.nn.functional as F

        frames = torch.as_tensor(rgb, dtype=torch.float32)[..., :3]
        height, width = frames.shape[1:3]
        maps = []
        for frame in frames:
            x = F.interpolate(frame.permute(2, 0, 1)[None], size=self.input_size, mode="bilinear",
                              align_corners=False) - 0.5
            out = self.session.run(None, {self.input_name: x.numpy().astype(np.float32)})[0]
            out = torch.from_numpy(np.asarray(out, dtype=np.float32))
            while out.ndim < 4:
                out = out[None]
            out = F.interpolate(out[:, :1], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
            lo, hi = float(out.min()), float(out.max())
            maps.append(((out - lo) / (hi - lo)).numpy() if hi > lo else np.zeros((height, width), np.float32))
        return np.stack(maps).astype(np.float32)

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) RGB in [0, 1] -> (T, H, W) float32 object masks of 0/1 (Otsu + small-component clean-up)."""
        return torch.from_numpy(np.stack([clean_mask(m) for m in self.soft_masks(rgb)]))
