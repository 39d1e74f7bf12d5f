"""Generation nodes: anchor mesh (stage 0), reference-mesh encoding, stage I, meshing, stage II, attention chain.

Thin V3 adapters over the stage layer (``actionmesh_core.stages``): every computation is the stage's, with the
settings the command line uses (defaults from ``actionmesh_core.options``); the node only turns ComfyUI values
into stage arguments and hands the models over through ComfyUI's memory manager (``host.NodeModels``).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from actionmesh_core.options import NUM_TOKENS, STAGE0_SHIFT, PipelineConfig

from . import datatypes as T
from . import host
from .host_io import io

CATEGORY = "ActionMesh/generate"
SEED_MAX = 0xFFFFFFFFFFFFFFFF
RUN = PipelineConfig()
FPS_TOOLTIP = "Playback frame rate; 0 = the frame rate set in Prepare Frames."


def _seed(tooltip: str):
    return io.Int.Input("seed", default=RUN.seed, min=0, max=SEED_MAX, control_after_generate=True, tooltip=tooltip)


def _octree_depth(tooltip: str = ("Dense coarse grid depth of the SDF meshing (6 = 64^3); a narrow band refines it "
                                  "up to refine_depth (equal = dense grid).")):
    return io.Int.Input("octree_depth", default=RUN.octree_depth, min=4, max=11, advanced=True, tooltip=tooltip)


def _refine_depth(tooltip: str = "Depth of the refinement near the surface (9 = 512^3 there)."):
    return io.Int.Input("refine_depth", default=RUN.refine_depth, min=5, max=11, advanced=True, tooltip=tooltip)


def _window(tooltip: str = "Frames per window (the model was trained on 16)."):
    return io.Int.Input("window", default=RUN.window, min=2, max=128, advanced=True, tooltip=tooltip)


def _slide(tooltip: str = "Frames between window starts."):
    return io.Int.Input("slide", default=RUN.slide, min=1, max=127, advanced=True, tooltip=tooltip)


def _shift():
    return io.Float.Input("shift", default=RUN.shift, min=0.01, max=100.0, step=0.01, advanced=True,
                          tooltip=f"Flow time-schedule shift of stage I (default {RUN.shift}).")


def _noise_correlation():
    return io.Float.Input("noise_correlation", default=RUN.noise_correlation, min=0.0, max=1.0, step=0.01,
                          advanced=True, tooltip="Share initial noise across frames: 0 = independent, 1 = identical.")


def _target_faces(tooltip: str):
    return io.Int.Input("target_faces", default=RUN.target_faces, min=0, max=2000000, step=1000, tooltip=tooltip)


def _fps():
    return io.Float.Input("fps", default=0.0, min=0.0, max=1000.0, step=0.01, tooltip=FPS_TOOLTIP)


def _num_tokens(tooltip: str):
    return io.Int.Input("num_tokens", default=NUM_TOKENS, min=1, max=8192, advanced=True, tooltip=tooltip)


class ActionMeshImageTo3DAnchor(io.ComfyNode):
    """Stage 0: TripoSG image-to-3D on one frame -> anchor latent + anchor mesh (release: actionmesh/external/triposg.py)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ActionMeshImageTo3DAnchor", display_name="ActionMesh Image-to-3D Anchor (TripoSG)",
            category=CATEGORY, search_aliases=["triposg", "image to 3d", "anchor mesh"],
            description=("Generates a 3D mesh from one frame with TripoSG (rectified flow, classifier-free "
                         "guidance, conditioned on TripoSG's own image encoder), meshes its SDF and cleans it "
                         "(coordinates stay in model space). Pick a frame where the object is well visible."),
            inputs=[
                T.TripoSGDiT.Input("dit", tooltip="TripoSG image-to-3D transformer from Load TripoSG Image-to-3D."),
                T.TripoSGVAE.Input("vae", tooltip="TripoSG shape VAE from Load TripoSG VAE (meshes the latent)."),
                T.Context.Input("context", tooltip="Frame features from Encode Frames."),
                io.Int.Input("anchor_frame", default=RUN.anchor_frame, min=0, max=100000,
                             tooltip="Index (in the prepared frames) of the frame to lift to 3D."),
                io.Int.Input("steps", default=RUN.stage0_steps, min=1, max=1000, tooltip=(
                    f"Sampling steps (release default {RUN.stage0_steps}, fast preset {RUN.fast().stage0_steps}).")),
                io.Float.Input("guidance", default=RUN.stage0_guidance, min=0.0, max=50.0, step=0.1,
                               tooltip=f"Classifier-free guidance scale (release default {RUN.stage0_guidance})."),
                io.Float.Input("shift", default=STAGE0_SHIFT, min=0.01, max=100.0, step=0.01, advanced=True,
                               tooltip=f"Flow time shift of the TripoSG scheduler (its config value is "
                                       f"{STAGE0_SHIFT})."),
                _seed("Random seed of the initial noise."),
                _num_tokens(f"Latent tokens of the shape ({NUM_TOKENS} at inference; the denoiser's "
                            "num_tokens_nominal)."),
                _octree_depth(),
                _refine_depth(),
                _target_faces("Decimate the anchor mesh to about this many faces (0 = keep all)."),
            ],
            outputs=[
                T.Latent.Output("anchor", tooltip="The anchor 3D latent and its frame index (source latent for "
                                                  "Temporal Denoise)."),
                T.Reference.Output("reference", tooltip="The anchor mesh (model space), ready for Decode Deformation."),
                io.Mesh.Output("mesh", tooltip="The anchor mesh as a core MESH (e.g. for Save 3D Model)."),
            ])

    @classmethod
    def execute(cls, dit, vae, context, anchor_frame, steps, guidance, shift, seed, num_tokens, octree_depth,
                refine_depth, target_faces):
        """Stage 0 (``actionmesh_core.stages.anchor_from_image``); a render of the anchor mesh as the preview.

        Returns (SourceLatents {anchor_frame: (N, C)}, ReferenceMesh, MESH with one item).
        Raises ValueError for a frame outside the clip, refine_depth < octree_depth or an empty surface.
        """
        from actionmesh_core.render import render_animation
        from actionmesh_core.stages import anchor_from_image

        progress = host.Progress(steps, "TripoSG")
        models = host.NodeModels(transformer=dit.transformer, triposg_dinov2=dit.image_encoder, vae=vae)
        anchor, reference, mesh = anchor_from_image(
            models, context, anchor_frame, steps=steps, guidance=guidance, shift=shift, seed=seed,
            num_tokens=num_tokens, octree_depth=octree_depth, refine_depth=refine_depth, target_faces=target_faces,
            callback=progress.callback)
        still = reference.to_animated_mesh(reference.vertices, denormalize=False)
        progress.set(progress.total, preview=render_animation(still, size=256)[0])
        return io.NodeOutput(anchor, reference, host.make_mesh([np.asarray(mesh.vertices)], [np.asarray(mesh.faces)]))


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


class ActionMeshEncodeReferenceMesh(io.ComfyNode):
    """Any mesh -> anchor latent (TripoSG VAE posterior) + normalised reference mesh (ActionMesh §3.4)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ActionMeshEncodeReferenceMesh", display_name="ActionMesh Encode Reference Mesh",
            category=CATEGORY, search_aliases=["animate my mesh", "mesh to latent", "video + mesh"],
            description=("Uses your own mesh as the anchor: normalises it (longest side 2, centred), samples its "
                         "surface, encodes it with the TripoSG VAE. Works with any core MESH (e.g. Hunyuan3D), a "
                         "FILE_3D from Load 3D, or a mesh file from the input folder."),
            inputs=[
                T.TripoSGVAE.Input("vae", tooltip="TripoSG shape VAE from Load TripoSG VAE."),
                io.Int.Input("frame_index", default=RUN.anchor_frame, min=0, max=100000,
                             tooltip="The prepared frame this mesh matches (its pose and view)."),
                io.Combo.Input("mesh_file", options=["none"] + host.list_input_meshes(), tooltip=(
                    "A mesh file (GLB, OBJ, PLY, ...) in ComfyUI's input folder or input/3d. Used when neither "
                    "mesh nor model_3d is connected; keeps UVs and texture.")),
                io.Int.Input("mesh_index", default=0, min=0, max=4096, tooltip="Which mesh of a MESH batch to use."),
                io.Boolean.Input("sample_posterior", default=True, tooltip=(
                    "Sample the VAE posterior (as the release does); off = use its mean.")),
                _seed("Seed of the surface sampling and of the posterior sample."),
                # last widget, so workflows saved before it existed keep their values in place
                _num_tokens(f"Latent tokens of the mesh (query points of the VAE encoder; {NUM_TOKENS} at "
                            "inference: the denoiser's num_tokens_nominal, as Image-to-3D Anchor)."),
                io.Mesh.Input("mesh", optional=True, tooltip="A core MESH, e.g. from Hunyuan3D's Voxel to Mesh."),
                io.MultiType.Input("model_3d", types=[io.Custom(t) for t in host.FILE_3D_TYPES], optional=True,
                                   tooltip=("A 3D file from a core node (Load 3D's model_3d, a 3D API node's GLB "
                                            "...): any core FILE_3D type.")),
            ],
            outputs=[
                T.Latent.Output("anchor", tooltip="The mesh's 3D latent at frame_index (source latent for Temporal "
                                                  "Denoise)."),
                T.Reference.Output("reference", tooltip=("The normalised mesh (original vertex order, UVs and texture "
                                                         "kept) for Decode Deformation.")),
            ])

    @classmethod
    def fingerprint_inputs(cls, mesh_file="none", **_):
        """Fingerprint of ``mesh_file`` (names, sizes, modification times, as Load Frames' source), so a mesh file
        saved again under the same name is encoded again; a connected MESH / FILE_3D changes with its own node."""
        from .frame_nodes import ActionMeshLoadFrames

        return "" if mesh_file in (None, "", "none") else ActionMeshLoadFrames.fingerprint_inputs(mesh_file)

    @classmethod
    def execute(cls, vae, frame_index, mesh_file, mesh_index, sample_posterior, seed, num_tokens=NUM_TOKENS,
                mesh=None, model_3d=None):
        """Encode the given mesh (``actionmesh_core.stages.encode_reference_mesh``).

        Exactly one of ``mesh`` (core MESH), ``model_3d`` (core FILE_3D*) or ``mesh_file`` (input folder) is used.
        Returns (SourceLatents {frame_index: (M, C)}, ReferenceMesh).
        Raises ValueError when no mesh or several meshes are given.
        """
        from actionmesh_core.io.mesh_io import load_mesh
        from actionmesh_core.stages import encode_reference_mesh

        given = [name for name, present in (("mesh", mesh is not None), ("model_3d", model_3d is not None),
                                            ("mesh_file", mesh_file not in (None, "", "none"))) if present]
        if not given:
            raise ValueError("no mesh given: connect a MESH or a FILE_3D, or choose a mesh_file")
        if len(given) > 1:
            raise ValueError(f"several meshes given ({', '.join(given)}); connect or choose only one")
        if mesh is not None:
            source_mesh = host.mesh_item(mesh, mesh_index)
        elif model_3d is not None:
            source_mesh = _load_file3d(model_3d)
        else:
            source_mesh = load_mesh(str(host.resolve_input_file(mesh_file)))
        anchor, reference = encode_reference_mesh(
            host.NodeModels(vae=vae), source_mesh, frame_index, num_tokens=num_tokens,
            num_surface_points=RUN.num_surface_points, seed=seed, sample_posterior=bool(sample_posterior))
        return io.NodeOutput(anchor, reference)


class ActionMeshTemporalDenoise(io.ComfyNode):
    """Stage I: masked temporal 3D diffusion -> one 3D latent per frame (ActionMesh §3.2)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ActionMeshTemporalDenoise", display_name="ActionMesh Temporal Denoise (Stage I)",
            category=CATEGORY, search_aliases=["stage 1", "4d diffusion", "temporal diffusion"],
            description=("Generates the 3D latents of all frames from the frame features, keeping the given source "
                         "latents (anchor and extra sources) clean; long clips run in overlapping windows."),
            inputs=[
                T.Denoiser.Input("denoiser", tooltip="Stage I denoiser from Load ActionMesh Denoiser."),
                T.Context.Input("context", tooltip="Frame features from Encode Frames."),
                T.Latent.Input("anchor", tooltip=("Anchor latent and its frame (Image-to-3D Anchor or Encode "
                                                  "Reference Mesh).")),
                io.Int.Input("steps", default=RUN.steps, min=1, max=500, tooltip=(
                    f"Flow-matching steps (default {RUN.steps}, fast preset {RUN.fast().steps}).")),
                io.Float.Input("guidance", default=RUN.guidance_scale, min=0.0, max=50.0, step=0.1, tooltip=(
                    f"Classifier-free guidance scale on the image features (default {RUN.guidance_scale}).")),
                _shift(),
                _seed("Random seed of the initial noise."),
                _noise_correlation(),
                _window("Frames per diffusion window (the model was trained on 16)."),
                _slide("Frames between window starts; window - slide frames overlap and carry the previous "
                       "window's result as sources."),
                T.Latent.Input("extra_sources", optional=True, tooltip=(
                    "More known latents (e.g. a second mesh at a later frame).")),
            ],
            outputs=[T.Latents.Output("latents", tooltip=(
                "One 3D latent per frame, consistent over time (source frames kept as given)."))])

    @classmethod
    def execute(cls, denoiser, context, anchor, steps, guidance, shift, seed, noise_correlation, window, slide,
                extra_sources=None):
        """Stage I over all frames (``actionmesh_core.stages.temporal_denoise``).

        Sources = ``anchor`` merged with ``extra_sources``; returns a LatentSequence (T, N, C).
        Raises ValueError for sources outside the clip or a slide outside [1, window - 1].
        """
        from actionmesh_core.stages import temporal_denoise

        progress = host.Progress(steps, "stage I")
        latents = temporal_denoise(host.NodeModels(denoiser=denoiser), context, anchor.merged(extra_sources),
                                   steps=steps, guidance=guidance, shift=shift, seed=seed,
                                   noise_correlation=noise_correlation, window=window, slide=slide,
                                   callback=progress.callback)
        return io.NodeOutput(latents)


class ActionMeshSDFMeshing(io.ComfyNode):
    """Latent sequence -> per-frame meshes (independent topologies) as a core MESH batch."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ActionMeshSDFMeshing", display_name="ActionMesh SDF Meshing", category=CATEGORY,
            search_aliases=["marching cubes", "latent to mesh"],
            description=("Meshes the SDF of selected frames' latents with the TripoSG VAE (marching cubes + "
                         "clean-up). Each frame gets its own topology; use Decode Deformation for one animated "
                         "mesh."),
            inputs=[
                T.TripoSGVAE.Input("vae", tooltip="TripoSG shape VAE from Load TripoSG VAE."),
                T.Latents.Input("latents", tooltip="Latent sequence from Temporal Denoise."),
                _octree_depth(),
                _refine_depth("Depth of the refinement near the surface."),
                _target_faces("Decimate each mesh to about this many faces (0 = keep all)."),
                io.Int.Input("frame_start", default=0, min=0, max=100000, tooltip="First frame to mesh."),
                io.Int.Input("frame_stride", default=1, min=1, max=1000, tooltip="Mesh every n-th frame."),
                io.Int.Input("max_frames", default=0, min=0, max=100000,
                             tooltip="Mesh at most this many frames (0 = all selected)."),
            ],
            outputs=[io.Mesh.Output("meshes", tooltip=("One mesh per selected frame (zero-padded batch with per-item "
                                                       "counts), e.g. for Save 3D Model."))])

    @classmethod
    def execute(cls, vae, latents, octree_depth, refine_depth, target_faces, frame_start, frame_stride, max_frames):
        """Mesh the selected frames' latents (``actionmesh_core.stages.mesh_latents``) -> core MESH batch.

        Raises ValueError for bad frame selection, refine_depth < octree_depth or an empty surface.
        """
        from actionmesh_core.frames import select_frames
        from actionmesh_core.stages import mesh_latents

        indices = select_frames(latents.num_frames, frame_start, frame_stride, max_frames)
        progress = host.Progress(len(indices), "meshing")
        meshes = mesh_latents(host.NodeModels(vae=vae), latents.latents[indices], octree_depth=octree_depth,
                              refine_depth=refine_depth, target_faces=target_faces, callback=progress.callback)
        return io.NodeOutput(host.make_mesh([np.asarray(m.vertices) for m in meshes],
                                            [np.asarray(m.faces) for m in meshes]))


class ActionMeshDecodeDeformation(io.ComfyNode):
    """Stage II: latents + reference mesh -> animated mesh with the reference's topology (ActionMesh §3.3)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ActionMeshDecodeDeformation", display_name="ActionMesh Decode Deformation (Stage II)",
            category=CATEGORY, search_aliases=["stage 2", "animate mesh", "deformation"],
            description=("Predicts where every vertex of the reference mesh is in every frame from the latent "
                         "sequence, giving one mesh with a fixed topology animated over time."),
            inputs=[
                T.Autoencoder.Input("autoencoder", tooltip="Stage II autoencoder from Load ActionMesh Autoencoder."),
                T.Latents.Input("latents", tooltip="Latent sequence from Temporal Denoise."),
                T.Reference.Input("reference", tooltip=("Reference mesh (Image-to-3D Anchor or Encode Reference "
                                                        "Mesh).")),
                _window("Frames per decoding window."),
                _slide(),
                io.Int.Input("anchor_frame", default=-1, min=-1, max=100000, tooltip=(
                    "Frame the reference mesh matches; -1 = the anchor frame of the latents.")),
                _fps(),
            ],
            outputs=[T.Animation.Output("animation", tooltip=(
                "The animated mesh: the reference mesh with one vertex position set per frame."))])

    @classmethod
    def execute(cls, autoencoder, latents, reference, window, slide, anchor_frame, fps):
        """Stage II (``actionmesh_core.stages.decode_deformation``).

        Returns an AnimatedMesh (T frames) with ``times = arange(T) / fps``.
        Raises ValueError for an anchor frame outside the clip or a bad window/slide.
        """
        from actionmesh_core.stages import decode_deformation

        progress = host.Progress(latents.num_frames, "stage II")
        animation = decode_deformation(host.NodeModels(autoencoder=autoencoder), latents, reference, window=window,
                                       slide=slide, anchor_frame=anchor_frame, fps=fps or None,
                                       callback=progress.callback)
        return io.NodeOutput(animation)


class ActionMeshAttentionChainAnimate(io.ComfyNode):
    """Training-free fast mode: stage I (4 steps) + attention chains instead of stage II (attention-chains §4)."""

    @classmethod
    def define_schema(cls):
        from actionmesh_core.attention_chain.pipeline import AttentionChainConfig

        landmarks = AttentionChainConfig().num_landmarks
        return io.Schema(
            node_id="ActionMeshAttentionChainAnimate",
            display_name="ActionMesh Attention-Chain Animation (fast, no Stage II)", category=CATEGORY,
            search_aliases=["fast 4d", "attention chain", "training-free"],
            description=("Runs stage I with few steps while reading the denoiser's inflated attention, then follows "
                         "anchor landmarks through vertex -> token -> token -> surface attention chains and animates "
                         "the reference mesh by geodesic rigid skinning. No stage II autoencoder needed."),
            inputs=[
                T.Denoiser.Input("denoiser", tooltip="Stage I denoiser (its attention is read)."),
                T.TripoSGVAE.Input("vae", tooltip="TripoSG VAE (its decoder cross-attention is read)."),
                T.Context.Input("context", tooltip="Frame features from Encode Frames."),
                T.Latent.Input("anchor", tooltip=("Anchor latent and its frame (Image-to-3D Anchor or Encode "
                                                  "Reference Mesh).")),
                T.Reference.Input("reference", tooltip="Reference mesh to animate (same node as the anchor)."),
                io.Int.Input("steps", default=RUN.chain_steps, min=1, max=100, tooltip=(
                    f"Stage I steps; the attention of the last one is read (published: {RUN.chain_steps}).")),
                io.Float.Input("guidance", default=RUN.guidance_scale, min=0.0, max=50.0, step=0.1,
                               tooltip=f"Classifier-free guidance scale (default {RUN.guidance_scale})."),
                _seed("Random seed of the initial noise."),
                io.Int.Input("num_landmarks", default=landmarks, min=3, max=20000, tooltip=(
                    f"Farthest-point landmarks tracked on the anchor mesh (published {landmarks}).")),
                _octree_depth(("SDF meshing depth of the run (6); each frame's candidate surface points come from a "
                               "dense grid one level coarser, as in the command line's attention-chain mode.")),
                _window("Frames per window."),
                _slide(),
                io.Boolean.Input("reinforce", default=RUN.chain_reinforce, tooltip=(
                    "Reinforce confident correspondences during the last half of the steps (reduces drift on "
                    "long clips; paper §4.3).")),
                _fps(),
                # added after the first release of this node: last, so saved workflows keep their values in place
                _shift(),
                _noise_correlation(),
                _refine_depth(("Refinement depth of the run (9); the candidate surface points are the grid-edge "
                               "crossings two levels coarser (7: 128^3).")),
            ],
            outputs=[
                T.Animation.Output("animation", tooltip=("The animated reference mesh (its topology), from "
                                                         "attention-chain correspondences.")),
                T.Latents.Output("latents", tooltip=("The per-frame latents of the few-step stage I run (e.g. for SDF "
                                                     "Meshing).")),
            ])

    @classmethod
    def execute(cls, denoiser, vae, context, anchor, reference, steps, guidance, seed, num_landmarks, octree_depth,
                window, slide, reinforce, fps, shift=RUN.shift, noise_correlation=RUN.noise_correlation,
                refine_depth=RUN.refine_depth):
        """Attention-chain animation (``actionmesh_core.stages.attention_chain_animate``).

        Returns (AnimatedMesh, LatentSequence). Raises ValueError for a bad window/slide or an anchor
        outside the clip, and when no landmark can be tracked reliably.
        """
        from actionmesh_core.stages import attention_chain_animate

        progress = host.Progress(steps, "attention chain")
        animation, latents = attention_chain_animate(
            host.NodeModels(denoiser=denoiser, vae=vae), context, anchor, reference, steps=steps, guidance=guidance,
            shift=shift, seed=seed, noise_correlation=noise_correlation, window=window, slide=slide,
            octree_depth=octree_depth, refine_depth=refine_depth, reinforce=bool(reinforce),
            num_landmarks=num_landmarks, fps=fps or None, callback=progress.callback)
        return io.NodeOutput(animation, latents)


NODES = [ActionMeshImageTo3DAnchor, ActionMeshEncodeReferenceMesh, ActionMeshTemporalDenoise, ActionMeshSDFMeshing,
         ActionMeshDecodeDeformation, ActionMeshAttentionChainAnimate]
