"""Attention-chain animation: the model-independent half of the fast 4D method.

Implements "Fast 4D Mesh Generation by Spatio-Temporal Attention Chains"
(Samuel et al., 2026) on attention maps captured from the frozen ActionMesh
models: chain composition (§4.1), landmarks, temporal smoothing and geodesic
rigid skinning (§4.2, app. D), long-sequence reinforcement (§4.3), 2D tracks,
the 2D<->3D bridge and PnP camera pose (§4.4, app. C).  Plain numpy/scipy/
torch/OpenCV; no model code, no ComfyUI.  Entry point:
:func:`animate_from_attention` (see :mod:`.pipeline` for the capture contract).
"""
from .attention import attention_rows
from .camera import (FOCAL_NDC, CameraEstimationError, CameraPose, estimate_camera_pose, intrinsics_from_ndc,
                     project_points)
from .chain import (ChainMatch, blend_candidates, chain_correspondences, chain_scores, compose_chain,
                    top_candidates)
from .landmarks import keep_landmarks, reject_outliers, select_landmarks, vertex_curvature
from .pipeline import (AttentionChainConfig, AttentionChainResult, LandmarkTracks, animate_from_attention,
                       animate_landmarks, plan_landmarks, track_landmarks)
from .reinforcement import (confidence_gain, reinforce_attention, reinforcement_logit_bias, stitch_windows,
                            trace_token_pairs)
from .skinning import (SkinningWeights, geodesic_skinning_weights, landmark_spacing, mesh_graph, rigid_skinning,
                       weighted_procrustes)
from .smoothing import smooth_trajectories
from .tracking import (bridge_pixels_to_vertices, bridge_vertices_to_pixels, patch_centers, pixel_to_patch,
                       surface_tracks, track_pixels)

__all__ = [
    "attention_rows",
    "FOCAL_NDC", "CameraEstimationError", "CameraPose", "estimate_camera_pose", "intrinsics_from_ndc",
    "project_points",
    "ChainMatch", "blend_candidates", "chain_correspondences", "chain_scores", "compose_chain", "top_candidates",
    "keep_landmarks", "reject_outliers", "select_landmarks", "vertex_curvature",
    "AttentionChainConfig", "AttentionChainResult", "LandmarkTracks", "animate_from_attention",
    "animate_landmarks", "plan_landmarks", "track_landmarks",
    "confidence_gain", "reinforce_attention", "reinforcement_logit_bias", "stitch_windows", "trace_token_pairs",
    "SkinningWeights", "geodesic_skinning_weights", "landmark_spacing", "mesh_graph", "rigid_skinning",
    "weighted_procrustes",
    "smooth_trajectories",
    "bridge_pixels_to_vertices", "bridge_vertices_to_pixels", "patch_centers", "pixel_to_patch",
    "surface_tracks", "track_pixels",
]
