"""Generation nodes: anchor mesh (stage 0), reference-mesh encoding, stage I, meshing, stage II.

Node bodies call the plain-torch library ``actionmesh_core`` (imported lazily
inside each function so that the pack imports even before a module exists).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from . import datatypes as T
from . import host

CATEGORY = "ActionMesh/generate"
SEED_MAX = 0xFFFFFFFFFFFFFFFF


def _seed_input(tooltip: str) -> tuple:
    return ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True, "tooltip": tooltip})


def _check_window(window: int, slide: int) -> None:
    if window < 2:
        raise ValueError(f"window must be >= 2 frames, got {window}")
    if not 1 <= slide <= window - 1:
        raise ValueError(f"slide must be in [1, window - 1] = [1, {window - 1}] so that consecutive windows share "
                         f"at least one frame, got {slide}")


def _check_meshing(octree_depth: int, refine_depth: int) -> None:
    if refine_depth < octree_depth:
        raise ValueError(f"refine_depth ({refine_depth}) must be >= octree_depth ({octree_depth})")


def _mesh_latents(vae, latents: torch.Tensor, octree_depth: int, refine_depth: int, target_faces: int, desc: str):
    """SDF meshing of (K, N, C) latents with the VAE field; returns K cleaned trimesh meshes."""
    from actionmesh_core.geometry.cleanup import clean_mesh
    from actionmesh_core.geometry.meshing import sdf_to_meshes

    count = int(latents.shape[0])
    progress = host.Progress(count, desc)
    with torch.inference_mode(), host.on_device(vae) as device:
        field_fn = vae.field_fn(latents.to(device=device, dtype=host.module_dtype(vae)))
        meshes = sdf_to_meshes(field_fn, count, octree_depth=octree_depth, refine_depth=refine_depth,
                               inside=getattr(vae, "inside_sign", "negative"), callback=progress.callback,
                               device=device)
    cleaned = []
    for i, mesh in enumerate(meshes):
        host.check_interrupted()
        if mesh is None or len(mesh.faces) == 0:
            raise ValueError(f"meshing produced an empty surface for latent {i}; the latent has no zero level set "
                             "(try another seed or more steps)")
        cleaned.append(clean_mesh(mesh, target_faces=target_faces) if target_faces > 0 else mesh)
    progress.set(count)
    return cleaned


class ActionMeshImageTo3DAnchor:
    """Stage 0: TripoSG image-to-3D on one frame -> anchor latent + anchor mesh (REFERENCE §4)."""

    CATEGORY = CATEGORY
    FUNCTION = "generate"
    RETURN_TYPES = (T.LATENT, T.REFERENCE, "MESH")
    RETURN_NAMES = ("anchor", "reference", "mesh")
    OUTPUT_TOOLTIPS = (
        "The anchor 3D latent and its frame index (source latent for Temporal Denoise).",
        "The anchor mesh (model space), ready for Decode Deformation.",
        "The anchor mesh as a core MESH (e.g. for Save 3D Model).",
    )
    DESCRIPTION = ("Generates a 3D mesh from one frame with TripoSG (rectified flow, classifier-free guidance), "
                   "meshes its SDF and cleans it (coordinates stay in model space). Pick a frame where the object is well visible.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "dit": (T.TRIPOSG_DIT, {"tooltip": "TripoSG image-to-3D transformer from Load TripoSG Image-to-3D."}),
                "vae": (T.TRIPOSG_VAE, {"tooltip": "TripoSG shape VAE from Load TripoSG VAE (meshes the latent)."}),
                "context": (T.CONTEXT, {"tooltip": "Frame features from Encode Frames."}),
                "anchor_frame": ("INT", {"default": 0, "min": 0, "max": 100000,
                                         "tooltip": "Index (in the prepared frames) of the frame to lift to 3D."}),
                "steps": ("INT", {"default": 100, "min": 1, "max": 1000,
                                  "tooltip": "Sampling steps (release default 100, fast preset 50)."}),
                "guidance": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 50.0, "step": 0.1,
                                       "tooltip": "Classifier-free guidance scale (release default 7.5)."}),
                "shift": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 100.0, "step": 0.01,
                                    "tooltip": "Flow time shift of the TripoSG scheduler (its config value is 1.0)."}),
                "seed": _seed_input("Random seed of the initial noise."),
                "num_tokens": ("INT", {"default": 2048, "min": 256, "max": 8192, "step": 256,
                                       "tooltip": "Latent tokens of the shape (2048 at inference)."}),
                "octree_depth": ("INT", {"default": 6, "min": 4, "max": 11,
                                         "tooltip": "Dense coarse grid depth of the SDF meshing (6 = 64^3); a narrow "
                                                    "band refines it up to refine_depth (equal = dense grid)."}),
                "refine_depth": ("INT", {"default": 9, "min": 5, "max": 11,
                                         "tooltip": "Depth of the refinement near the surface (9 = 512^3 there)."}),
                "target_faces": ("INT", {"default": 40000, "min": 0, "max": 2000000, "step": 1000,
                                         "tooltip": "Decimate the anchor mesh to about this many faces (0 = keep all)."}),
            }
        }

    def generate(self, dit, vae, context, anchor_frame, steps, guidance, shift, seed, num_tokens,
                 octree_depth, refine_depth, target_faces):
        """Sample the TripoSG latent of ``anchor_frame``, mesh and clean it (coordinates kept in model space).

        Returns (SourceLatents {anchor_frame: (N, C)}, ReferenceMesh, MESH with one item).
        Raises ValueError for a frame outside the clip, refine_depth < octree_depth or an empty surface.
        """
        from actionmesh_core.geometry.reference import prepare_reference_mesh
        from actionmesh_core.sampling.triposg import sample_image_to_3d

        _check_meshing(octree_depth, refine_depth)
        if not 0 <= anchor_frame < context.num_frames:
            raise ValueError(f"anchor_frame {anchor_frame} is outside the {context.num_frames} prepared frames")
        progress = host.Progress(steps, "TripoSG")
        with torch.inference_mode(), host.on_device(dit) as device:
            cond = context.features[anchor_frame:anchor_frame + 1].to(device=device, dtype=host.module_dtype(dit))
            latent = sample_image_to_3d(dit, cond, steps=steps, shift=shift, guidance_scale=guidance, seed=seed,
                                        num_tokens=num_tokens, callback=progress.callback)
        latent = latent.float().cpu()
        mesh = _mesh_latents(vae, latent, octree_depth, refine_depth, target_faces, "anchor mesh")[0]
        # the mesh is already in the latent's model space: keep its coordinates (no re-normalisation)
        reference = prepare_reference_mesh(mesh, seed=seed % (2 ** 32), normalize=False)
        anchor = T.SourceLatents(latents={int(anchor_frame): latent[0]}, anchor_frame=int(anchor_frame))
        return (anchor, reference, host.make_mesh([np.asarray(mesh.vertices)], [np.asarray(mesh.faces)]))


def _load_file3d(model_3d):
    """A core FILE_3D (``Types.File3D``) as a trimesh, via its path or a temporary file."""
    from actionmesh_core.io.mesh_io import load_mesh

    source = model_3d.get_source() if hasattr(model_3d, "get_source") else model_3d
    if isinstance(source, (str, os.PathLike)):
        return load_mesh(str(source))
    data = model_3d.get_bytes() if hasattr(model_3d, "get_bytes") else source.read()
    suffix = "." + (getattr(model_3d, "format", "") or "glb")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model" + suffix)
        with open(path, "wb") as handle:
            handle.write(data)
        return load_mesh(path)


class ActionMeshEncodeReferenceMesh:
    """Any mesh -> anchor latent (TripoSG VAE posterior) + normalised reference mesh (REFERENCE §4)."""

    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = (T.LATENT, T.REFERENCE)
    RETURN_NAMES = ("anchor", "reference")
    OUTPUT_TOOLTIPS = (
        "The mesh's 3D latent at frame_index (source latent for Temporal Denoise).",
        "The normalised mesh (original vertex order, UVs and texture kept) for Decode Deformation.",
    )
    DESCRIPTION = ("Uses your own mesh as the anchor: normalises it (longest side 2, centred), samples its surface, "
                   "encodes it with the TripoSG VAE. Works with any core MESH (e.g. Hunyuan3D), a FILE_3D from "
                   "Load 3D, or a mesh file from the input folder.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (T.TRIPOSG_VAE, {"tooltip": "TripoSG shape VAE from Load TripoSG VAE."}),
                "frame_index": ("INT", {"default": 0, "min": 0, "max": 100000,
                                        "tooltip": "The prepared frame this mesh matches (its pose and view)."}),
                "mesh_file": (["none"] + host.list_input_meshes(), {
                    "tooltip": "A mesh file (GLB, OBJ, PLY, ...) in ComfyUI's input folder or input/3d. Used when "
                               "neither mesh nor model_3d is connected; keeps UVs and texture."}),
                "mesh_index": ("INT", {"default": 0, "min": 0, "max": 4096,
                                       "tooltip": "Which mesh of a MESH batch to use."}),
                "sample_posterior": ("BOOLEAN", {"default": True,
                                                 "tooltip": "Sample the VAE posterior (as the release does); off = use its mean."}),
                "seed": _seed_input("Seed of the surface sampling and of the posterior sample."),
                # last widget, so workflows saved before it existed keep their values in place
                "num_tokens": ("INT", {"default": 2048, "min": 256, "max": 8192, "step": 256,
                                       "tooltip": "Latent tokens of the mesh (query points of the VAE encoder; "
                                                  "2048 at inference, as Image-to-3D Anchor)."}),
            },
            "optional": {
                "mesh": ("MESH", {"tooltip": "A core MESH, e.g. from Hunyuan3D's Voxel to Mesh."}),
                "model_3d": (host.FILE_3D_ANY, {"tooltip": "A 3D file from a core node (Load 3D's model_3d, a "
                                                           "3D API node's GLB ...): any core FILE_3D type."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, mesh_file="none", **_):
        """Fingerprint of ``mesh_file`` (names, sizes, modification times, as Load Frames' source), so a mesh file
        saved again under the same name is encoded again; a connected MESH / FILE_3D changes with its own node."""
        from .frame_nodes import ActionMeshLoadFrames

        return "" if mesh_file in (None, "", "none") else ActionMeshLoadFrames.IS_CHANGED(mesh_file)

    def encode(self, vae, frame_index, mesh_file, mesh_index, sample_posterior, seed, num_tokens=2048, mesh=None,
               model_3d=None):
        """Normalise the given mesh, sample its surface and encode it with the VAE (posterior sample or mean).

        Exactly one of ``mesh`` (core MESH), ``model_3d`` (core FILE_3D*) or ``mesh_file`` (input folder) is used.
        ``num_tokens`` = M query points of the VAE encoder (= latent tokens).
        Returns (SourceLatents {frame_index: (M, C)}, ReferenceMesh).
        Raises ValueError when no mesh or several meshes are given.
        """
        from actionmesh_core.geometry.reference import prepare_reference_mesh
        from actionmesh_core.io.mesh_io import load_mesh

        sources = [name for name, given in (("mesh", mesh is not None), ("model_3d", model_3d is not None),
                                            ("mesh_file", mesh_file not in (None, "", "none"))) if given]
        if not sources:
            raise ValueError("no mesh given: connect a MESH or a FILE_3D, or choose a mesh_file")
        if len(sources) > 1:
            raise ValueError(f"several meshes given ({', '.join(sources)}); connect or choose only one")
        if mesh is not None:
            source_mesh = host.mesh_item(mesh, mesh_index)
        elif model_3d is not None:
            source_mesh = _load_file3d(model_3d)
        else:
            source_mesh = load_mesh(str(host.resolve_input_file(mesh_file)))
        reference = prepare_reference_mesh(source_mesh, seed=seed % (2 ** 32), num_query_points=int(num_tokens))
        with torch.inference_mode(), host.on_device(vae) as device:
            dtype = host.module_dtype(vae)
            surface = torch.as_tensor(np.asarray(reference.surface), dtype=torch.float32)[None].to(device, dtype)
            query = torch.as_tensor(np.asarray(reference.query_points), dtype=torch.float32)[None].to(device, dtype)
            mean, logvar = vae.encode(surface, query)
            latent = mean.float()
            if sample_posterior:
                generator = torch.Generator(device="cpu").manual_seed(int(seed))
                noise = torch.randn(tuple(mean.shape), generator=generator, dtype=torch.float32).to(latent.device)
                latent = latent + torch.exp(0.5 * logvar.float()) * noise
        anchor = T.SourceLatents(latents={int(frame_index): latent[0].cpu()}, anchor_frame=int(frame_index))
        return (anchor, reference)


class ActionMeshTemporalDenoise:
    """Stage I: masked temporal 3D diffusion -> one 3D latent per frame (paper §3.2, REFERENCE §3)."""

    CATEGORY = CATEGORY
    FUNCTION = "denoise"
    RETURN_TYPES = (T.LATENTS,)
    RETURN_NAMES = ("latents",)
    OUTPUT_TOOLTIPS = ("One 3D latent per frame, consistent over time (source frames kept as given).",)
    DESCRIPTION = ("Generates the 3D latents of all frames from the frame features, keeping the given source "
                   "latents (anchor and extra sources) clean; long clips run in overlapping windows.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "denoiser": (T.DENOISER, {"tooltip": "Stage I denoiser from Load ActionMesh Denoiser."}),
                "context": (T.CONTEXT, {"tooltip": "Frame features from Encode Frames."}),
                "anchor": (T.LATENT, {"tooltip": "Anchor latent and its frame (Image-to-3D Anchor or Encode Reference Mesh)."}),
                "steps": ("INT", {"default": 30, "min": 1, "max": 500,
                                  "tooltip": "Flow-matching steps (default 30, fast preset 15)."}),
                "guidance": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 50.0, "step": 0.1,
                                       "tooltip": "Classifier-free guidance scale on the image features (default 7.5)."}),
                "shift": ("FLOAT", {"default": 3.0, "min": 0.01, "max": 100.0, "step": 0.01,
                                    "tooltip": "Flow time-schedule shift (default 3.0)."}),
                "seed": _seed_input("Random seed of the initial noise."),
                "noise_correlation": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                                "tooltip": "Share initial noise across frames: 0 = independent, 1 = identical."}),
                "window": ("INT", {"default": 16, "min": 2, "max": 128,
                                   "tooltip": "Frames per diffusion window (the model was trained on 16)."}),
                "slide": ("INT", {"default": 15, "min": 1, "max": 127,
                                  "tooltip": "Frames between window starts; window - slide frames overlap and carry "
                                             "the previous window's result as sources."}),
            },
            "optional": {
                "extra_sources": (T.LATENT, {"tooltip": "More known latents (e.g. a second mesh at a later frame)."}),
            },
        }

    def denoise(self, denoiser, context, anchor, steps, guidance, shift, seed, noise_correlation, window, slide,
                extra_sources=None):
        """Run stage I (``actionmesh_core.sampling.stage1.sample_stage1``) over all frames.

        Sources = ``anchor`` merged with ``extra_sources``; returns a LatentSequence (T, N, C).
        Raises ValueError for sources outside the clip or a slide outside [1, window - 1].
        """
        from actionmesh_core.sampling.stage1 import sample_stage1

        _check_window(window, slide)
        sources = anchor.merged(extra_sources)
        num_frames = context.num_frames
        outside = [k for k in sources.frames if not 0 <= k < num_frames]
        if outside:
            raise ValueError(f"source latents at frames {outside} are outside the {num_frames} prepared frames")
        progress = host.Progress(steps, "stage I")
        with torch.inference_mode(), host.on_device(denoiser) as device:
            dtype = host.module_dtype(denoiser)
            latents = sample_stage1(
                denoiser, context.features.to(device=device, dtype=dtype),
                {k: v.to(device=device, dtype=dtype) for k, v in sources.latents.items()},
                steps=steps, shift=shift, guidance_scale=guidance, seed=seed, noise_correlation=noise_correlation,
                window=window, slide=slide, callback=progress.callback)
        latents = latents.float().cpu()
        if latents.ndim != 3 or latents.shape[0] != num_frames:
            raise ValueError(f"stage I returned {tuple(latents.shape)}, expected ({num_frames}, N, C)")
        return (T.LatentSequence(latents=latents, anchor_frame=sources.anchor_frame, source_frames=sources.frames,
                                 fps=context.fps),)


class ActionMeshSDFMeshing:
    """Latent sequence -> per-frame meshes (independent topologies) as a core MESH batch."""

    CATEGORY = CATEGORY
    FUNCTION = "mesh"
    RETURN_TYPES = ("MESH",)
    RETURN_NAMES = ("meshes",)
    OUTPUT_TOOLTIPS = ("One mesh per selected frame (zero-padded batch with per-item counts), e.g. for Save 3D Model.",)
    DESCRIPTION = ("Meshes the SDF of selected frames' latents with the TripoSG VAE (marching cubes + clean-up). "
                   "Each frame gets its own topology; use Decode Deformation for one animated mesh.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (T.TRIPOSG_VAE, {"tooltip": "TripoSG shape VAE from Load TripoSG VAE."}),
                "latents": (T.LATENTS, {"tooltip": "Latent sequence from Temporal Denoise."}),
                "octree_depth": ("INT", {"default": 6, "min": 4, "max": 11,
                                         "tooltip": "Dense coarse grid depth of the SDF meshing (6 = 64^3); a narrow "
                                                    "band refines it up to refine_depth (equal = dense grid)."}),
                "refine_depth": ("INT", {"default": 9, "min": 5, "max": 11,
                                         "tooltip": "Depth of the refinement near the surface."}),
                "target_faces": ("INT", {"default": 40000, "min": 0, "max": 2000000, "step": 1000,
                                         "tooltip": "Decimate each mesh to about this many faces (0 = keep all)."}),
                "frame_start": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "First frame to mesh."}),
                "frame_stride": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip": "Mesh every n-th frame."}),
                "max_frames": ("INT", {"default": 0, "min": 0, "max": 100000,
                                       "tooltip": "Mesh at most this many frames (0 = all selected)."}),
            }
        }

    def mesh(self, vae, latents, octree_depth, refine_depth, target_faces, frame_start, frame_stride, max_frames):
        """Mesh the SDF of the selected frames' latents; returns a core MESH batch (zero-padded).

        Raises ValueError for bad frame selection, refine_depth < octree_depth or an empty surface.
        """
        from actionmesh_core.frames import select_frames

        _check_meshing(octree_depth, refine_depth)
        indices = select_frames(latents.num_frames, frame_start, frame_stride, max_frames)
        meshes = _mesh_latents(vae, latents.latents[indices], octree_depth, refine_depth, target_faces, "meshing")
        return (host.make_mesh([np.asarray(m.vertices) for m in meshes], [np.asarray(m.faces) for m in meshes]),)


class ActionMeshDecodeDeformation:
    """Stage II: latents + reference mesh -> animated mesh with the reference's topology (paper §3.3)."""

    CATEGORY = CATEGORY
    FUNCTION = "decode"
    RETURN_TYPES = (T.ANIMATION,)
    RETURN_NAMES = ("animation",)
    OUTPUT_TOOLTIPS = ("The animated mesh: the reference mesh with one vertex position set per frame.",)
    DESCRIPTION = ("Predicts where every vertex of the reference mesh is in every frame from the latent sequence, "
                   "giving one mesh with a fixed topology animated over time.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "autoencoder": (T.AUTOENCODER, {"tooltip": "Stage II autoencoder from Load ActionMesh Autoencoder."}),
                "latents": (T.LATENTS, {"tooltip": "Latent sequence from Temporal Denoise."}),
                "reference": (T.REFERENCE, {"tooltip": "Reference mesh (Image-to-3D Anchor or Encode Reference Mesh)."}),
                "window": ("INT", {"default": 16, "min": 2, "max": 128, "tooltip": "Frames per decoding window."}),
                "slide": ("INT", {"default": 15, "min": 1, "max": 127, "tooltip": "Frames between window starts."}),
                "anchor_frame": ("INT", {"default": -1, "min": -1, "max": 100000,
                                         "tooltip": "Frame the reference mesh matches; -1 = the anchor frame of the latents."}),
                "fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.01,
                                  "tooltip": "Playback frame rate; 0 = the frame rate set in Prepare Frames."}),
            }
        }

    def decode(self, autoencoder, latents, reference, window, slide, anchor_frame, fps):
        """Run stage II (``decode_stage2``) on the reference vertices + normals (V, 6).

        Returns an AnimatedMesh (T frames) with ``times = arange(T) / fps``.
        Raises ValueError for an anchor frame outside the clip or a bad window/slide.
        """
        from actionmesh_core.sampling.stage2 import decode_stage2

        _check_window(window, slide)
        anchor = latents.anchor_frame if anchor_frame < 0 else int(anchor_frame)
        if not 0 <= anchor < latents.num_frames:
            raise ValueError(f"anchor_frame {anchor} is outside the {latents.num_frames} frames of the latents")
        vertices = torch.as_tensor(np.asarray(reference.vertices), dtype=torch.float32)
        normals = torch.as_tensor(np.asarray(reference.vertex_normals), dtype=torch.float32)
        query = torch.cat([vertices, normals], dim=-1)
        progress = host.Progress(latents.num_frames, "stage II")
        with torch.inference_mode(), host.on_device(autoencoder) as device:
            dtype = host.module_dtype(autoencoder)
            positions = decode_stage2(autoencoder, latents.latents.to(device=device, dtype=dtype), query.to(device),
                                      faces=torch.as_tensor(np.asarray(reference.faces), dtype=torch.long),
                                      anchor_frame=anchor, window=window, slide=slide, callback=progress.callback)
        positions = positions.float().cpu().numpy()
        anim = reference.to_animated_mesh(positions)
        rate = float(fps) if fps > 0 else float(latents.fps or 24.0)
        anim.times = np.arange(anim.num_frames, dtype=np.float32) / rate
        anim.metadata = dict(anim.metadata or {}, anchor_frame=anchor, fps=rate,
                             source_frames=list(latents.source_frames))
        return (anim,)



class ActionMeshAttentionChainAnimate:
    """Training-free fast mode: stage I (4 steps) + attention chains instead of stage II (attention-chains §4)."""

    CATEGORY = CATEGORY
    FUNCTION = "animate"
    RETURN_TYPES = (T.ANIMATION, T.LATENTS)
    RETURN_NAMES = ("animation", "latents")
    OUTPUT_TOOLTIPS = ("The animated reference mesh (its topology), from attention-chain correspondences.",
                       "The per-frame latents of the few-step stage I run (e.g. for SDF Meshing).")
    DESCRIPTION = ("Runs stage I with few steps while reading the denoiser's inflated attention, then follows "
                   "anchor landmarks through vertex -> token -> token -> surface attention chains and animates "
                   "the reference mesh by geodesic rigid skinning. No stage II autoencoder needed.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "denoiser": (T.DENOISER, {"tooltip": "Stage I denoiser (its attention is read)."}),
                "vae": (T.TRIPOSG_VAE, {"tooltip": "TripoSG VAE (its decoder cross-attention is read)."}),
                "context": (T.CONTEXT, {"tooltip": "Frame features from Encode Frames."}),
                "anchor": (T.LATENT, {"tooltip": "Anchor latent and its frame (Image-to-3D Anchor or Encode Reference Mesh)."}),
                "reference": (T.REFERENCE, {"tooltip": "Reference mesh to animate (same node as the anchor)."}),
                "steps": ("INT", {"default": 4, "min": 1, "max": 100,
                                  "tooltip": "Stage I steps; the attention of the last one is read (published: 4)."}),
                "guidance": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 50.0, "step": 0.1,
                                       "tooltip": "Classifier-free guidance scale (default 7.5)."}),
                "seed": _seed_input("Random seed of the initial noise."),
                "num_landmarks": ("INT", {"default": 1000, "min": 3, "max": 20000,
                                          "tooltip": "Farthest-point landmarks tracked on the anchor mesh (published 1000)."}),
                "octree_depth": ("INT", {"default": 7, "min": 4, "max": 10,
                                         "tooltip": "Meshing of each frame's candidate surface points: 2^(value+1) "
                                                    "cells per axis (narrow band from a 2^(value-2) coarse grid)."}),
                "window": ("INT", {"default": 16, "min": 2, "max": 128, "tooltip": "Frames per window."}),
                "slide": ("INT", {"default": 15, "min": 1, "max": 127, "tooltip": "Frames between window starts."}),
                "reinforce": ("BOOLEAN", {"default": False,
                                          "tooltip": "Reinforce confident correspondences during the last half of "
                                                     "the steps (reduces drift on long clips; paper §4.3)."}),
                "fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.01,
                                  "tooltip": "Playback frame rate; 0 = the frame rate set in Prepare Frames."}),
            }
        }

    def animate(self, denoiser, vae, context, anchor, reference, steps, guidance, seed, num_landmarks,
                octree_depth, window, slide, reinforce, fps):
        """Run ``actionmesh_core.attention_chain.capture.attention_chain_decode`` on the reference mesh.

        Returns (AnimatedMesh, LatentSequence). Raises ValueError for a bad window/slide or an anchor
        outside the clip, and when no landmark can be tracked reliably.
        """
        from actionmesh_core.attention_chain.capture import attention_chain_decode
        from actionmesh_core.attention_chain.pipeline import AttentionChainConfig

        _check_window(window, slide)
        frame = anchor.anchor_frame
        if not 0 <= frame < context.num_frames:
            raise ValueError(f"anchor frame {frame} is outside the {context.num_frames} prepared frames")
        progress = host.Progress(steps, "attention chain")
        with torch.inference_mode(), host.on_device(denoiser, vae) as device:
            result = attention_chain_decode(
                denoiser, vae, context.features.to(device=device, dtype=host.module_dtype(denoiser)),
                anchor.latents[frame].to(device), np.asarray(reference.vertices), np.asarray(reference.faces), frame,
                steps=steps, guidance_scale=guidance, seed=seed, window=window, slide=slide,
                octree_depth=max(octree_depth - 2, 4), refine_depth=octree_depth + 1, reinforce=reinforce,
                config=AttentionChainConfig(num_landmarks=num_landmarks), callback=progress.callback)
        anim = reference.to_animated_mesh(result.animation.positions)
        rate = float(fps) if fps > 0 else float(context.fps or 24.0)
        anim.times = np.arange(anim.num_frames, dtype=np.float32) / rate
        anim.metadata = dict(anim.metadata or {}, anchor_frame=frame, fps=rate, mode="attention-chain")
        latents = T.LatentSequence(latents=result.latents.float().cpu(), anchor_frame=frame,
                                   source_frames=[frame], fps=context.fps)
        return (anim, latents)


NODE_CLASS_MAPPINGS = {
    "ActionMeshImageTo3DAnchor": ActionMeshImageTo3DAnchor,
    "ActionMeshEncodeReferenceMesh": ActionMeshEncodeReferenceMesh,
    "ActionMeshTemporalDenoise": ActionMeshTemporalDenoise,
    "ActionMeshSDFMeshing": ActionMeshSDFMeshing,
    "ActionMeshDecodeDeformation": ActionMeshDecodeDeformation,
    "ActionMeshAttentionChainAnimate": ActionMeshAttentionChainAnimate,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ActionMeshImageTo3DAnchor": "ActionMesh Image-to-3D Anchor (TripoSG)",
    "ActionMeshEncodeReferenceMesh": "ActionMesh Encode Reference Mesh",
    "ActionMeshTemporalDenoise": "ActionMesh Temporal Denoise (Stage I)",
    "ActionMeshSDFMeshing": "ActionMesh SDF Meshing",
    "ActionMeshDecodeDeformation": "ActionMesh Decode Deformation (Stage II)",
    "ActionMeshAttentionChainAnimate": "ActionMesh Attention-Chain Animation (fast, no Stage II)",
}
