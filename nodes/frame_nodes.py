"""Frame nodes: prepare video frames, encode them with DINOv2."""
from __future__ import annotations

import torch

from . import datatypes as T
from . import host

CATEGORY = "ActionMesh/frames"


class ActionMeshPrepareFrames:
    """IMAGE batch (+ optional MASK) -> object-centred square frames on white (REFERENCE §4)."""

    CATEGORY = CATEGORY
    FUNCTION = "prepare"
    RETURN_TYPES = (T.FRAMES, "IMAGE", "MASK")
    RETURN_NAMES = ("frames", "preview", "masks")
    OUTPUT_TOOLTIPS = (
        "Model-ready frames for Encode Frames.",
        "The prepared frames as images (composited on white, cropped, square) to check the crop.",
        "The object masks of the prepared frames.",
    )
    DESCRIPTION = ("Selects frames, finds the object (mask input, alpha, or plain-background colour), crops all "
                   "frames with the union bounding box of the object and pads them to a white square.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Video frames as an IMAGE batch (e.g. from Get Video Components). "
                                                "RGBA alpha is used as the object mask."}),
                "size": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8,
                                 "tooltip": "Side of the square output frames in pixels (DINOv2 sees 224 px)."}),
                "margin": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 1.0, "step": 0.01,
                                     "tooltip": "White margin on each side, as a fraction of the object box's longer side."}),
                "bg_threshold": ("FLOAT", {"default": 0.1, "min": 0.01, "max": 1.0, "step": 0.01,
                                           "tooltip": "Without mask or alpha: colour distance from the border colour "
                                                      "above which a pixel counts as object. Raise it for noisy backgrounds."}),
                "frame_start": ("INT", {"default": 0, "min": 0, "max": 1000000,
                                        "tooltip": "First frame of the input batch to use."}),
                "frame_stride": ("INT", {"default": 1, "min": 1, "max": 1000,
                                         "tooltip": "Use every n-th frame (2 halves the frame rate)."}),
                "max_frames": ("INT", {"default": 16, "min": 0, "max": 10000,
                                       "tooltip": "Use at most this many frames (0 = all). The model was trained on "
                                                  "16-frame windows; longer clips run window by window."}),
                "fps": ("FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                                  "tooltip": "Frame rate of the input (link Get Video Components' fps). Divided by "
                                             "frame_stride; sets the playback speed of the exported animation."}),
                "invert_mask": ("BOOLEAN", {"default": False,
                                            "tooltip": "Invert the mask input. Turn on for Load Image's MASK, which is 1 "
                                                       "where the image is transparent; segmentation masks are 1 on the object."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Optional object mask per frame (1 = object), e.g. from Remove Background. "
                                             "Overrides alpha and the background-colour estimate."}),
            },
        }

    def prepare(self, images, size, margin, bg_threshold, frame_start, frame_stride, max_frames, fps,
                invert_mask, mask=None):
        """Select frames, find the object, crop and pad (``actionmesh_core.frames.prepare_frames``).

        ``images``: (B, H, W, 3|4) IMAGE in [0, 1]; ``mask``: optional (B|1, H, W) MASK.
        Returns (PreparedFrames, preview (T, S, S, 3) IMAGE, masks (T, S, S) MASK).
        Raises ValueError for too few frames, empty masks or a mask batch that does not match.
        """
        from actionmesh_core.frames import prepare_frames_min_crop, select_frames

        images = torch.as_tensor(images)
        if images.ndim == 3:
            images = images[None]
        total = int(images.shape[0])
        indices = select_frames(total, frame_start, frame_stride, max_frames)
        selected = images[indices]
        masks = None
        if mask is not None:
            masks = torch.as_tensor(mask).float()
            if masks.ndim == 2:
                masks = masks[None]
            if masks.shape[0] == total and total != 1:
                masks = masks[indices]
            elif masks.shape[0] == 1:
                masks = masks.expand(len(indices), -1, -1)
            elif masks.shape[0] != len(indices):
                raise ValueError(f"the mask batch has {masks.shape[0]} masks but the image batch has {total} frames; "
                                 "give one mask per frame (or one mask for all)")
            if invert_mask:
                masks = 1.0 - masks
        # a tiny object is kept inside a crop of at least 64 input pixels (warning in the log), not blown up
        prepared = prepare_frames_min_crop(selected, masks, bg_threshold=bg_threshold, margin=margin, size=size,
                                           fps=float(fps) / frame_stride, frame_indices=indices)
        return (prepared, prepared.rgb.clone(), prepared.masks.clone())


class ActionMeshEncodeFrames:
    """Prepared frames -> DINOv2 features (REFERENCE §4: 224 px, ``last_hidden_state``)."""

    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = (T.CONTEXT,)
    RETURN_NAMES = ("context",)
    OUTPUT_TOOLTIPS = ("Per-frame image features (257 tokens x 1024) that condition stage 0 and stage I.",)
    DESCRIPTION = "Encodes every prepared frame with DINOv2-large; the features condition the 3D generators."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "dinov2": (T.DINOV2, {"tooltip": "DINOv2 image encoder from Load DINOv2 Image Encoder."}),
                "frames": (T.FRAMES, {"tooltip": "Prepared frames from Prepare Frames."}),
                "batch_size": ("INT", {"default": 8, "min": 1, "max": 256,
                                       "tooltip": "Frames encoded at once; lower it if the GPU runs out of memory."}),
            }
        }

    def encode(self, dinov2, frames, batch_size):
        """DINOv2 features of every prepared frame, ``batch_size`` frames at a time.

        Returns a FrameContext with features (T, 257, 1024) float32 on the CPU.
        Raises ValueError when the encoder returns an unexpected shape.
        """
        images = frames.rgb
        count = int(images.shape[0])
        progress = host.Progress(count, "DINOv2")
        chunks = []
        with torch.inference_mode(), host.on_device(dinov2) as device:
            for start in range(0, count, batch_size):
                batch = images[start:start + batch_size].to(device)
                chunks.append(torch.as_tensor(dinov2(batch)).float().cpu())
                progress.set(min(start + batch_size, count))
        features = torch.cat(chunks, dim=0)
        if features.ndim != 3 or features.shape[0] != count:
            raise ValueError(f"the image encoder returned {tuple(features.shape)}, expected ({count}, tokens, width)")
        return (T.FrameContext(features=features, fps=frames.fps, frame_indices=list(frames.frame_indices)),)


NODE_CLASS_MAPPINGS = {
    "ActionMeshPrepareFrames": ActionMeshPrepareFrames,
    "ActionMeshEncodeFrames": ActionMeshEncodeFrames,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ActionMeshPrepareFrames": "ActionMesh Prepare Frames",
    "ActionMeshEncodeFrames": "ActionMesh Encode Frames (DINOv2)",
}
