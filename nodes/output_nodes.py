"""Output nodes: animation export (GLB for the UI 3D preview + USD / rig / caches), MESH batch, render preview."""
from __future__ import annotations

from pathlib import Path

import torch

from actionmesh_core.options import INTERPOLATIONS, ExportOptions

from . import datatypes as T
from . import host
from .host_io import io

CATEGORY = "ActionMesh/output"
EXPORT = ExportOptions()


def _export_formats() -> list:
    """The export formats of the registry (``actionmesh_core.export.formats.FORMATS``), ``glb`` first."""
    from actionmesh_core.export import FORMATS

    return list(FORMATS)


def _format_tooltip() -> str:
    from actionmesh_core.export import FORMATS

    return ("Also write this format beside the GLB: "
            + "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values() if f.name != "glb") + ".")


class ActionMeshExportGLB(io.ComfyNode):
    """Animated mesh -> animated GLB in the output folder (UI 3D preview) + optionally another format beside it."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ActionMeshExportGLB", display_name="ActionMesh Export Animation", category=CATEGORY,
            is_output_node=True, search_aliases=["save glb", "export usd", "export fbx", "save animation"],
            description=("Saves the animation as one GLB (morph-target animation, plays in Blender, three.js and "
                         "the ComfyUI 3D viewer) under the output folder, and, with 'format', the same animation as "
                         "USD, a skinned rig (GLB/FBX), Alembic, FBX, OBJ/PLY sequences or the release's .npy beside "
                         "it."),
            inputs=[
                T.Animation.Input("animation", tooltip="Animated mesh from Decode Deformation."),
                io.String.Input("filename_prefix", default="actionmesh/ActionMesh", tooltip=(
                    "File name prefix inside the output folder; '/' makes sub-folders. '..' and absolute paths "
                    "are refused.")),
                io.Combo.Input("interpolation", options=list(INTERPOLATIONS), default=EXPORT.interpolation, tooltip=(
                    "STEP shows each frame as predicted; LINEAR blends between frames for smoother playback.")),
                io.Boolean.Input("per_frame_glbs", default=EXPORT.per_frame,
                                 tooltip="Also save one static GLB per frame in a sub-folder."),
                io.Combo.Input("format", options=_export_formats(), default=EXPORT.format,
                               tooltip=_format_tooltip()),
                io.Int.Input("bones", default=EXPORT.bones, min=1, max=256,
                             tooltip="Skinned formats: number of bones fitted to the motion."),
                io.Int.Input("influences", default=EXPORT.influences, min=1, max=8,
                             tooltip="Skinned formats: bones per vertex (4 suits every engine)."),
            ],
            outputs=[
                io.String.Output("glb_path", tooltip=("Path of the GLB relative to the output folder (e.g. for core "
                                                      "Preview 3D's model_file).")),
                io.Custom("FILE_3D_GLB").Output("model_3d", tooltip=(
                    "The GLB as a core 3D file (connect to Preview 3D & Animation, or other core 3D nodes).")),
                io.String.Output("files", tooltip=("Every file written (GLB first, then the chosen format's files), "
                                                   "relative to the output folder, one per line.")),
            ])

    @classmethod
    def execute(cls, animation, filename_prefix, interpolation, per_frame_glbs, format=EXPORT.format,
                bones=EXPORT.bones, influences=EXPORT.influences):
        """Write ``<prefix>_<counter>_.glb`` (+ ``<prefix>_<counter>.<ext>`` of ``format``) under the output folder
        with the export stage (``actionmesh_core.stages.export_files``).

        Returns the GLB's relative path, a core File3D of it and the newline-joined relative paths of every file
        written, with the UI payload ``{"3d": [{filename, subfolder, type: "output"}]}``.
        Raises ValueError for an absolute prefix or one containing '..', and a one-line ``MissingDependency``
        (an ImportError naming the pip command) before writing anything when the format's optional module is
        not installed.
        """
        import logging

        from actionmesh_core.export import FORMATS, animation_fps, check_format_available
        from actionmesh_core.stages import export_files

        if format not in FORMATS:
            raise ValueError(f"unknown export format {format!r}; choose one of {list(FORMATS)}")
        check_format_available(format)
        path, filename, subfolder = host.next_output_path(filename_prefix, "glb")
        fps = animation_fps(animation)
        stem = path.stem.rstrip("_")
        files = list(export_files(animation, path, "glb", fps=fps, interpolation=interpolation,
                                  per_frame_dir=path.with_name(path.stem + "frames") if per_frame_glbs else None,
                                  frame_prefix=stem).files)
        if format != "glb":
            other = path.with_name(stem + ("_skinned" if format.endswith("-skinned") else "") + FORMATS[format].suffix)
            written = export_files(animation, other, format, fps=fps, bones=bones, influences=influences)
            files += written.files
            info = written.info or {}
            if "rms_error" in info:
                logging.info("ActionMesh export: %d bones, fit error RMS %.3f%% / max %.3f%% of the bbox diagonal",
                             info["bones"], 100 * info["rms_error"], 100 * info["max_error"])
        root = host.output_directory()
        relative = [Path(f).resolve().relative_to(root.resolve()).as_posix() for f in files]
        return io.NodeOutput(relative[0], host.file_3d(path, "glb"), "\n".join(relative),
                             ui={"3d": [{"filename": filename, "subfolder": subfolder, "type": "output"}]})


class ActionMeshAnimationToMesh(io.ComfyNode):
    """Animated mesh -> core MESH batch (one item per frame, same topology)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ActionMeshAnimationToMesh", display_name="ActionMesh Animation to MESH", category=CATEGORY,
            search_aliases=["frames to mesh", "mesh batch"],
            description=("Turns selected frames of the animation into a core MESH batch for other 3D nodes (e.g. "
                         "Save 3D Model)."),
            inputs=[
                T.Animation.Input("animation", tooltip="Animated mesh from Decode Deformation."),
                io.Int.Input("frame_start", default=0, min=0, max=100000, tooltip="First frame to output."),
                io.Int.Input("frame_stride", default=1, min=1, max=1000, tooltip="Output every n-th frame."),
                io.Int.Input("max_frames", default=0, min=0, max=100000,
                             tooltip="Output at most this many frames (0 = all selected)."),
            ],
            outputs=[io.Mesh.Output("meshes", tooltip=("One MESH item per selected frame, all with the reference "
                                                       "mesh's faces and UVs."))])

    @classmethod
    def execute(cls, animation, frame_start, frame_stride, max_frames):
        """Selected frames as a MESH batch: vertices (K, V, 3), faces (K, F, 3), UVs when present."""
        from actionmesh_core.frames import select_frames

        indices = select_frames(animation.num_frames, frame_start, frame_stride, max_frames)
        vertices = [animation.vertices[i] for i in indices]
        faces = [animation.faces] * len(indices)
        uvs = [animation.uv] * len(indices) if animation.uv is not None else None
        return io.NodeOutput(host.make_mesh(vertices, faces, uvs=uvs))


class ActionMeshRenderPreview(io.ComfyNode):
    """Animated mesh (or a reference mesh) -> IMAGE frames (orthographic z-buffer, flat shading)."""

    @classmethod
    def define_schema(cls):
        from actionmesh_core.render import RENDER_MODES

        return io.Schema(
            node_id="ActionMeshRenderPreview", display_name="ActionMesh Render Preview", category=CATEGORY,
            search_aliases=["render mesh", "preview animation", "turntable"],
            description=("Renders every frame of the animation, or your reference mesh as one image, on the CPU "
                         "with one fixed orthographic camera: grey shading, the mesh's own colours (texture, vertex "
                         "colours) shaded or unlit, normals or depth. margin 0.1 frames the object as Prepare "
                         "Frames crops it."),
            inputs=[
                io.Int.Input("size", default=384, min=64, max=2048, step=8, tooltip="Side of the square images in pixels."),
                io.Combo.Input("mode", options=list(RENDER_MODES), default="shaded", tooltip=(
                    "shaded = grey Lambert shading; textured = the mesh's texture or vertex colours, shaded; unlit "
                    "= those colours without shading; normal = normals as colours; depth = nearer is brighter.")),
                io.Float.Input("azimuth", default=30.0, min=-360.0, max=360.0, step=1.0, tooltip=(
                    "Camera angle around the vertical axis in degrees (0 = front, 90 = right side).")),
                io.Float.Input("elevation", default=15.0, min=-90.0, max=90.0, step=1.0,
                               tooltip="Camera height angle in degrees (positive = looking down)."),
                io.Float.Input("background", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Background grey level (1 = white)."),
                io.Float.Input("margin", default=0.1, min=0.0, max=2.0, step=0.01, tooltip=(
                    "Space around the object on each side, as a fraction of its longer side over all frames; the "
                    "object is centred. 0.1 matches Prepare Frames' crop.")),
                T.Animation.Input("animation", optional=True, tooltip="Animated mesh from Decode Deformation."),
                T.Reference.Input("reference", optional=True, tooltip=(
                    "Or a reference mesh (e.g. your mesh from Encode Reference Mesh): rendered as one image, e.g. "
                    "the start image of Wan image-to-video.")),
            ],
            outputs=[io.Image.Output("images", tooltip=(
                "One rendered image per frame (same camera for all frames), e.g. for Save Animated WEBP, or the "
                "first frame of an image-to-video model when a reference mesh is rendered."))])

    @classmethod
    def execute(cls, size, mode, azimuth, elevation, background, margin=0.1, animation=None, reference=None):
        """Render all frames (``actionmesh_core.render.render_animation``) -> IMAGE (T, size, size, 3); the first
        frame is the node's preview.

        Exactly one of ``animation`` (T frames) and ``reference`` (one frame, the normalised mesh with its
        UVs/texture/vertex colours) is rendered. Raises ValueError when neither or both are connected.
        """
        from actionmesh_core.render import render_animation

        if (animation is None) == (reference is None):
            raise ValueError("Render Preview: connect either an animation or a reference mesh (exactly one)")
        if animation is None:
            animation = reference.to_animated_mesh(reference.vertices, denormalize=False)
        progress = host.Progress(animation.num_frames, "render")
        images = render_animation(animation, size=size, mode=mode, view=(azimuth, elevation), background=background,
                                  margin=margin, callback=progress.callback)
        progress.set(progress.total, preview=images[0])
        return io.NodeOutput(torch.from_numpy(images))


NODES = [ActionMeshExportGLB, ActionMeshAnimationToMesh, ActionMeshRenderPreview]
