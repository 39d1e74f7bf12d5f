"""Frame nodes: load frames (folder or video), prepare them, encode them with DINOv2 (V3 schema).

Prepare Frames and Encode Frames call the stage layer (``actionmesh_core.stages``), as the command line does.
"""
from __future__ import annotations

import hashlib

from actionmesh_core.options import DEFAULT_FPS, FrameOptions, PipelineConfig

from . import datatypes as T
from . import host
from .host_io import io

CATEGORY = "ActionMesh/frames"
FRAMES = FrameOptions()
RUN = PipelineConfig()
MAX_FRAMES_TOOLTIP = ("at most this many frames (0 = all, as the release). The model was trained on 16-frame "
                      "windows; longer clips run window by window.")


def _frame_sources():
    from actionmesh_core.frames import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    return host.list_input_frame_sources(IMAGE_EXTENSIONS, VIDEO_EXTENSIONS)


class ActionMeshLoadFrames(io.ComfyNode):
    """A folder of PNG/JPG frames or a video file from the input folder -> IMAGE batch + object MASK + fps."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ActionMeshLoadFrames", display_name="ActionMesh Load Frames (folder or video)",
            category=CATEGORY, search_aliases=["load video", "image sequence", "frames folder"],
            description=("Loads a folder of PNG/JPG frames (natural order: 2.png before 10.png; RGBA alpha becomes "
                         "the object mask) or a video file from ComfyUI's input folder, keeping frames start, "
                         "start+stride, ... up to max_frames. Put frame folders in input/ (e.g. input/frames/camel/)."),
            inputs=[
                io.Combo.Input("source", options=_frame_sources() or ["none"], tooltip=(
                    "A folder of frames in ComfyUI's input folder (e.g. input/frames/camel/, at least 2 "
                    "images) or a video file in input/ or input/video/. Refresh the page after adding one.")),
                io.Int.Input("start", default=FRAMES.start, min=0, max=1000000,
                             tooltip="First frame to load (0-based)."),
                io.Int.Input("stride", default=FRAMES.stride, min=1, max=1000,
                             tooltip="Load every n-th frame from start on (2 halves the frame rate)."),
                io.Int.Input("max_frames", default=FRAMES.max_frames, min=0, max=10000,
                             tooltip="Load " + MAX_FRAMES_TOOLTIP),
                io.Float.Input("fps", default=DEFAULT_FPS, min=0.01, max=1000.0, step=0.01,
                               tooltip="Frame rate of a frame folder (a video uses the rate it declares; this "
                                       "value only if it declares none)."),
            ],
            outputs=[
                io.Image.Output("images", tooltip="The selected frames as an RGB IMAGE batch."),
                io.Mask.Output("mask", tooltip=(
                    "Object mask per frame from the frames' alpha (1 = object). Frames without alpha (JPG, video) "
                    "give an all-ones mask, which Prepare Frames ignores (it then finds the object by the "
                    "background colour).")),
                io.Float.Output("fps", tooltip=("Frame rate of the loaded sequence: the video's own fps (or the fps "
                                                "input for a folder) divided by stride.")),
            ])

    @classmethod
    def fingerprint_inputs(cls, source, **_):
        """Fingerprint of the source (names, sizes, modification times) so edited frames are reloaded."""
        try:
            path = host.resolve_input_file(source, allow_dir=True)
        except (OSError, ValueError):
            return source
        entries = [path] + (sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [])
        digest = hashlib.sha256()
        for entry in entries:
            stat = entry.stat()
            digest.update(f"{entry.name}|{stat.st_size}|{stat.st_mtime_ns};".encode())
        return digest.hexdigest()

    @classmethod
    def execute(cls, source, start, stride, max_frames, fps):
        """Load the frames with ``actionmesh_core.frames.read_frame_sequence`` (the CLI's reader).

        Returns (IMAGE (T, H, W, 3), MASK (T, H, W) = alpha or the ``*_mask.png`` pair masks, fps of the
        loaded sequence: the video's own rate, else ``fps``, divided by the stride).
        Raises FileNotFoundError / ValueError (one line) for a missing source, a start past the end, a single
        image, unreadable video or frames of mixed sizes.
        """
        from actionmesh_core.frames import read_frame_sequence

        if source in (None, "", "none"):
            raise ValueError("no frames found in ComfyUI's input folder: put a folder of PNG/JPG frames "
                             "(e.g. input/frames/camel/) or a video file there and refresh the page")
        path = host.resolve_input_file(source, allow_dir=True)
        seq = read_frame_sequence(path, start=start, stride=stride, max_frames=max_frames)
        mask = seq.masks if seq.masks is not None else seq.rgba[..., 3]
        rate = seq.source_fps or float(fps)
        return io.NodeOutput(seq.rgba[..., :3].contiguous(), mask.contiguous(), rate / stride)


class ActionMeshPrepareFrames(io.ComfyNode):
    """IMAGE batch (+ optional MASK) -> object-centred square frames on white (ActionMesh paper supp. C)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ActionMeshPrepareFrames", display_name="ActionMesh Prepare Frames", category=CATEGORY,
            search_aliases=["crop frames", "object crop", "preprocess video"],
            description=("Selects frames, finds the object (mask input, alpha, or plain-background colour), crops "
                         "all frames with the union bounding box of the object and pads them to a white square, "
                         "as the release and the command line do."),
            inputs=[
                io.Image.Input("images", tooltip=("Video frames as an IMAGE batch (from Load Frames or Get Video "
                                                  "Components). RGBA alpha is used as the object mask.")),
                io.Int.Input("size", default=FRAMES.size or 0, min=0, max=2048, step=8, tooltip=(
                    "Side of the square output frames in pixels; 0 = the crop's own size, as the release and the "
                    "command line (DINOv2 resizes to 224 px itself).")),
                io.Float.Input("margin", default=FRAMES.margin, min=0.0, max=1.0, step=0.01,
                               tooltip="White margin on each side, as a fraction of the object box's longer side."),
                io.Float.Input("bg_threshold", default=FRAMES.bg_threshold, min=0.01, max=1.0, step=0.01, tooltip=(
                    "Without mask or alpha: colour distance from the border colour above which a pixel counts as "
                    "object. Raise it for noisy backgrounds.")),
                io.Int.Input("frame_start", default=FRAMES.start, min=0, max=1000000,
                             tooltip="First frame of the input batch to use."),
                io.Int.Input("frame_stride", default=FRAMES.stride, min=1, max=1000,
                             tooltip="Use every n-th frame (2 halves the frame rate)."),
                io.Int.Input("max_frames", default=FRAMES.max_frames, min=0, max=10000,
                             tooltip="Use " + MAX_FRAMES_TOOLTIP),
                io.Float.Input("fps", default=DEFAULT_FPS, min=0.01, max=1000.0, step=0.01, tooltip=(
                    "Frame rate of the input (link Get Video Components' fps). Divided by frame_stride; sets the "
                    "playback speed of the exported animation.")),
                io.Boolean.Input("invert_mask", default=FRAMES.invert_mask, tooltip=(
                    "Invert the mask input. Turn on for Load Image's MASK, which is 1 where the image is "
                    "transparent; segmentation masks are 1 on the object.")),
                io.Mask.Input("mask", optional=True, tooltip=(
                    "Optional object mask per frame (1 = object), e.g. from Load Frames or Remove Background, used "
                    "as the frames' alpha (as the release uses its mask files). Overrides alpha and the "
                    "background-colour estimate; a mask that is 1 everywhere (frames without alpha) is ignored.")),
            ],
            outputs=[
                T.Frames.Output("frames", tooltip="Model-ready frames for Encode Frames."),
                io.Image.Output("preview", tooltip=("The prepared frames as images (composited on white, cropped, "
                                                    "square) to check the crop.")),
                io.Mask.Output("masks", tooltip="The object masks of the prepared frames."),
            ])

    @classmethod
    def execute(cls, images, size, margin, bg_threshold, frame_start, frame_stride, max_frames, fps, invert_mask,
                mask=None):
        """Select frames, find the object, crop and pad (``actionmesh_core.stages.prepare_clip``).

        ``images``: (B, H, W, 3|4) IMAGE in [0, 1]; ``mask``: optional (B|1, H, W) MASK.
        Returns (PreparedFrames, preview (T, H', W', 3) IMAGE, masks (T, H', W') MASK).
        Raises ValueError for too few frames, empty masks or a mask batch that does not match.
        """
        import warnings

        from actionmesh_core.stages import prepare_clip

        options = FrameOptions(start=frame_start, stride=frame_stride, max_frames=max_frames, fps=float(fps),
                               invert_mask=bool(invert_mask), bg_threshold=bg_threshold, margin=margin,
                               size=int(size) or None)
        prepared, notes = prepare_clip(images, mask, options)
        for line in notes:  # e.g. a tiny object kept inside a crop of at least 64 input pixels
            warnings.warn(line, UserWarning, stacklevel=2)
        host.Progress(1, "prepare frames").set(1, preview=prepared.rgb[0])
        return io.NodeOutput(prepared, prepared.rgb.clone(), prepared.masks.clone())


class ActionMeshEncodeFrames(io.ComfyNode):
    """Prepared frames -> DINOv2 features (224 px, ``last_hidden_state``; ActionMesh §3.2)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ActionMeshEncodeFrames", display_name="ActionMesh Encode Frames (DINOv2)", category=CATEGORY,
            search_aliases=["dinov2 features", "image features"],
            description="Encodes every prepared frame with DINOv2-large; the features condition the 3D generators.",
            inputs=[
                T.DinoV2.Input("dinov2", tooltip="DINOv2 image encoder from Load DINOv2 Image Encoder."),
                T.Frames.Input("frames", tooltip="Prepared frames from Prepare Frames."),
                io.Int.Input("batch_size", default=RUN.encode_batch_size, min=1, max=256, advanced=True,
                             tooltip="Frames encoded at once; lower it if the GPU runs out of memory."),
            ],
            outputs=[T.Context.Output("context", tooltip=(
                "Per-frame image features (257 tokens x 1024) that condition stage 0 and stage I."))])

    @classmethod
    def execute(cls, dinov2, frames, batch_size):
        """DINOv2 features of every prepared frame (``actionmesh_core.stages.encode_frames``).

        Returns a FrameContext with features (T, 257, 1024) float32 on the CPU.
        Raises ValueError when the encoder returns an unexpected shape.
        """
        from actionmesh_core.stages import encode_frames

        progress = host.Progress(int(frames.rgb.shape[0]), "DINOv2")
        context = encode_frames(host.NodeModels(dinov2=dinov2), frames, batch_size=batch_size,
                                callback=progress.callback)
        return io.NodeOutput(context)


NODES = [ActionMeshLoadFrames, ActionMeshPrepareFrames, ActionMeshEncodeFrames]
