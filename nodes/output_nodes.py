"""Output nodes: animation export (GLB for the UI 3D preview + USD / rig / caches), MESH batch, render preview."""
from __future__ import annotations

from pathlib import Path

import torch

from . import datatypes as T
from . import host

CATEGORY = "ActionMesh/output"


def _frame_rate(anim) -> float:
    """Playback rate of an animation (``actionmesh_core.export.animation_fps``: frame times, metadata, 24)."""
    from actionmesh_core.export import animation_fps

    return animation_fps(anim)


def _export_formats() -> list:
    """The export formats of the registry (``actionmesh_core.export.formats.FORMATS``), ``glb`` first."""
    from actionmesh_core.export import FORMATS

    return list(FORMATS)


def _format_tooltip() -> str:
    from actionmesh_core.export import FORMATS

    return ("Also write this format beside the GLB: "
            + "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values() if f.name != "glb") + ".")


class ActionMeshExportGLB:
    """Animated mesh -> animated GLB in the output folder (UI 3D preview) + optionally another format beside it."""

    CATEGORY = CATEGORY
    FUNCTION = "export"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "FILE_3D_GLB", "STRING")
    RETURN_NAMES = ("glb_path", "model_3d", "files")
    OUTPUT_TOOLTIPS = ("Path of the GLB relative to the output folder (e.g. for core Preview 3D's model_file).",
                       "The GLB as a core 3D file (connect to Preview 3D & Animation, or other core 3D nodes).",
                       "Every file written (GLB first, then the chosen format's files), relative to the output "
                       "folder, one per line.")
    DESCRIPTION = ("Saves the animation as one GLB (morph-target animation, plays in Blender, three.js and the "
                   "ComfyUI 3D viewer) under the output folder, and, with 'format', the same animation as USD, "
                   "a skinned rig (GLB/FBX), Alembic, FBX, OBJ/PLY sequences or the release's .npy beside it.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "animation": (T.ANIMATION, {"tooltip": "Animated mesh from Decode Deformation."}),
                "filename_prefix": ("STRING", {"default": "actionmesh/ActionMesh",
                                               "tooltip": "File name prefix inside the output folder; '/' makes "
                                                          "sub-folders. '..' and absolute paths are refused."}),
                "interpolation": (["STEP", "LINEAR"], {"default": "STEP",
                                                       "tooltip": "STEP shows each frame as predicted; LINEAR blends "
                                                                  "between frames for smoother playback."}),
                "per_frame_glbs": ("BOOLEAN", {"default": False,
                                               "tooltip": "Also save one static GLB per frame in a sub-folder."}),
                "format": (_export_formats(), {"default": "glb", "tooltip": _format_tooltip()}),
                "bones": ("INT", {"default": 32, "min": 1, "max": 256,
                                  "tooltip": "Skinned formats: number of bones fitted to the motion."}),
                "influences": ("INT", {"default": 4, "min": 1, "max": 8,
                                       "tooltip": "Skinned formats: bones per vertex (4 suits every engine)."}),
            }
        }

    def export(self, animation, filename_prefix, interpolation, per_frame_glbs, format="glb", bones=32,
               influences=4):
        """Write ``<prefix>_<counter>_.glb`` (+ ``<prefix>_<counter>.<ext>`` of ``format``) under the output folder.

        Returns ``{"ui": {"3d": [{filename, subfolder, type: "output"}]}, "result": (GLB relative path,
        core File3D of the GLB, newline-joined relative paths of every file written)}``.
        Raises ValueError for an absolute prefix or one containing '..', and a one-line
        ``MissingDependency`` (an ImportError naming the pip command) before writing anything
        when the format's optional module is not installed.
        """
        import logging

        from actionmesh_core.export import FORMATS, check_format_available, export_animation
        from actionmesh_core.io.glb import export_static_glbs

        if format not in FORMATS:
            raise ValueError(f"unknown export format {format!r}; choose one of {list(FORMATS)}")
        check_format_available(format)
        path, filename, subfolder = host.next_output_path(filename_prefix, "glb")
        fps = _frame_rate(animation)
        files = export_animation(animation, path, "glb", fps=fps, interpolation=interpolation).files
        if per_frame_glbs:
            frames_folder = path.with_name(path.stem + "frames")
            frames_folder.mkdir(parents=True, exist_ok=True)
            export_static_glbs(animation, frames_folder, path.stem.rstrip("_"))
        if format != "glb":
            stem = path.stem.rstrip("_") + ("_skinned" if format.endswith("-skinned") else "")
            result = export_animation(animation, path.with_name(stem + FORMATS[format].suffix), format, fps=fps,
                                      bones=bones, influences=influences)
            files += result.files
            if "rms_error" in result.info:
                logging.info("ActionMesh export: %d bones, fit error RMS %.3f%% / max %.3f%% of the bbox diagonal",
                             result.info["bones"], 100 * result.info["rms_error"], 100 * result.info["max_error"])
        root = host.output_directory()
        relative = [Path(f).resolve().relative_to(root.resolve()).as_posix() for f in files]
        return {"ui": {"3d": [{"filename": filename, "subfolder": subfolder, "type": "output"}]},
                "result": (relative[0], host.file_3d(path, "glb"), "\n".join(relative))}


class ActionMeshAnimationToMesh:
    """Animated mesh -> core MESH batch (one item per frame, same topology)."""

    CATEGORY = CATEGORY
    FUNCTION = "convert"
    RETURN_TYPES = ("MESH",)
    RETURN_NAMES = ("meshes",)
    OUTPUT_TOOLTIPS = ("One MESH item per selected frame, all with the reference mesh's faces and UVs.",)
    DESCRIPTION = "Turns selected frames of the animation into a core MESH batch for other 3D nodes (e.g. Save 3D Model)."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "animation": (T.ANIMATION, {"tooltip": "Animated mesh from Decode Deformation."}),
                "frame_start": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "First frame to output."}),
                "frame_stride": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip": "Output every n-th frame."}),
                "max_frames": ("INT", {"default": 0, "min": 0, "max": 100000,
                                       "tooltip": "Output at most this many frames (0 = all selected)."}),
            }
        }

    def convert(self, animation, frame_start, frame_stride, max_frames):
        """Selected frames as a MESH batch: vertices (K, V, 3), faces (K, F, 3), UVs when present."""
        from actionmesh_core.frames import select_frames

        indices = select_frames(animation.num_frames, frame_start, frame_stride, max_frames)
        vertices = [animation.vertices[i] for i in indices]
        faces = [animation.faces] * len(indices)
        uvs = [animation.uv] * len(indices) if animation.uv is not None else None
        return (host.make_mesh(vertices, faces, uvs=uvs),)


class ActionMeshRenderPreview:
    """Animated mesh (or a reference mesh) -> IMAGE frames (orthographic z-buffer, flat shading)."""

    CATEGORY = CATEGORY
    FUNCTION = "render"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("One rendered image per frame (same camera for all frames), e.g. for Save Animated WEBP, "
                       "or the first frame of an image-to-video model when a reference mesh is rendered.",)
    DESCRIPTION = ("Renders every frame of the animation, or your reference mesh as one image, on the CPU with one "
                   "fixed orthographic camera: grey shading, the mesh's own colours (texture, vertex colours) "
                   "shaded or unlit, normals or depth. margin 0.1 frames the object as Prepare Frames crops it.")

    @classmethod
    def INPUT_TYPES(cls):
        from actionmesh_core.render import RENDER_MODES

        return {
            "required": {
                "size": ("INT", {"default": 384, "min": 64, "max": 2048, "step": 8,
                                 "tooltip": "Side of the square images in pixels."}),
                "mode": (list(RENDER_MODES), {"default": "shaded",
                                              "tooltip": "shaded = grey Lambert shading; textured = the mesh's texture "
                                                         "or vertex colours, shaded; unlit = those colours without "
                                                         "shading; normal = normals as colours; depth = nearer is brighter."}),
                "azimuth": ("FLOAT", {"default": 30.0, "min": -360.0, "max": 360.0, "step": 1.0,
                                      "tooltip": "Camera angle around the vertical axis in degrees (0 = front, 90 = right side)."}),
                "elevation": ("FLOAT", {"default": 15.0, "min": -90.0, "max": 90.0, "step": 1.0,
                                        "tooltip": "Camera height angle in degrees (positive = looking down)."}),
                "background": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": "Background grey level (1 = white)."}),
                "margin": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 2.0, "step": 0.01,
                                     "tooltip": "Space around the object on each side, as a fraction of its longer side "
                                                "over all frames; the object is centred. 0.1 matches Prepare Frames' crop."}),
            },
            "optional": {
                "animation": (T.ANIMATION, {"tooltip": "Animated mesh from Decode Deformation."}),
                "reference": (T.REFERENCE, {"tooltip": "Or a reference mesh (e.g. your mesh from Encode Reference Mesh): "
                                                       "rendered as one image, e.g. the start image of Wan image-to-video."}),
            },
        }

    def render(self, size, mode, azimuth, elevation, background, margin=0.1, animation=None, reference=None):
        """Render all frames (``actionmesh_core.render.render_animation``) -> IMAGE (T, size, size, 3).

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
        return (torch.from_numpy(images),)


NODE_CLASS_MAPPINGS = {
    "ActionMeshExportGLB": ActionMeshExportGLB,
    "ActionMeshAnimationToMesh": ActionMeshAnimationToMesh,
    "ActionMeshRenderPreview": ActionMeshRenderPreview,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ActionMeshExportGLB": "ActionMesh Export Animation",
    "ActionMeshAnimationToMesh": "ActionMesh Animation to MESH",
    "ActionMeshRenderPreview": "ActionMesh Render Preview",
}
