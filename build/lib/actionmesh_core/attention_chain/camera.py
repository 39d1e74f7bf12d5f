"""Camera pose of the anchor frame from 2D-3D matches (attention-chains §4.4 eq. 8, app. C).

Robust PnP as published: RANSAC with EPnP as the minimal solver, 8 px inlier
threshold, 400 iterations at 0.999 confidence, an SQPnP fallback when EPnP
returns a degenerate pose (camera at infinity / object behind the camera),
and a final Levenberg-Marquardt refinement on the inliers (OpenCV).  The
intrinsics assume a focal length of 2.1875 in normalised device coordinates
(the image's vertical extent spans [-1, 1]; vertical FOV ~ 49.2 deg).

Conventions: OpenCV camera (x right, y down, z forward); pixel centres at
integer coordinates, so an image of width W spans x in [-0.5, W - 0.5].
``R, t`` map object (mesh) coordinates to camera coordinates:
``X_cam = R X_obj + t``.

Shape legend: M matches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from ._checks import as_numpy, check_int, check_positive

__all__ = [
    "FOCAL_NDC",
    "PNP_REPROJECTION_PX",
    "PNP_ITERATIONS",
    "PNP_CONFIDENCE",
    "CameraPose",
    "CameraEstimationError",
    "intrinsics_from_ndc",
    "project_points",
    "estimate_camera_pose",
]

#: Published focal length in NDC (image vertical extent = [-1, 1]).
FOCAL_NDC = 2.1875
#: Published RANSAC inlier threshold (pixels).
PNP_REPROJECTION_PX = 8.0
#: Published RANSAC iterations.
PNP_ITERATIONS = 400
#: Published RANSAC confidence.
PNP_CONFIDENCE = 0.999


class CameraEstimationError(RuntimeError):
    """PnP found no consistent pose (too few or contradictory 2D-3D matches)."""


@dataclass
class CameraPose:
    """Anchor-frame camera from :func:`estimate_camera_pose`.

    Attributes:
        rotation: (3, 3) float64 rotation R (object -> camera), det = +1.
        translation: (3,) float64 t (object units), ``X_cam = R X + t``.
        intrinsics: (3, 3) float64 K used (pixels).
        inliers: (M,) bool RANSAC inliers (reprojection error <= threshold after refinement).
        rmse_px: root-mean-square reprojection error over the inliers (pixels).
        solver: "epnp" or "sqpnp" (fallback) for the RANSAC stage.
    """

    rotation: np.ndarray
    translation: np.ndarray
    intrinsics: np.ndarray
    inliers: np.ndarray
    rmse_px: float
    solver: str


def _image_size(image_size: Sequence[int]) -> tuple[int, int]:
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
        raise ValueError(f"image_size must be (width, height), got {image_size!r}")
    w, h = (check_int("image width", image_size[0]), check_int("image height", image_size[1]))
    return w, h


def intrinsics_from_ndc(image_size: Sequence[int], focal_ndc: float = FOCAL_NDC) -> np.ndarray:
    """Pinhole intrinsics K (pixels) for a focal length given in NDC (app. C).

    ``f_px = focal_ndc * H / 2`` for both axes (square pixels), principal point
    at the image centre ``((W - 1) / 2, (H - 1) / 2)`` (OpenCV pixel-centre
    convention).  For 2.1875 the vertical field of view is 2 atan(1/2.1875) ~ 49.2 deg.

    Args:
        image_size: (width, height) in pixels of the image the 2D points live in.
        focal_ndc: focal length in NDC units (> 0).

    Returns:
        (3, 3) float64 K.

    Raises:
        ValueError: on a bad size or focal length.
    """
    w, h = _image_size(image_size)
    f = check_positive("focal_ndc", focal_ndc) * h / 2.0
    return np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def project_points(points_3d, rotation, translation, intrinsics) -> np.ndarray:
    """Perspective projection pi_K(R X + t) of eq. 8 (no distortion).

    Args:
        points_3d: (M, 3) object-space points.
        rotation: (3, 3) R.
        translation: (3,) t.
        intrinsics: (3, 3) K.

    Returns:
        (M, 2) float64 pixel coordinates (inf/NaN for points at or behind z = 0).

    Raises:
        ValueError: on wrong shapes.
    """
    x = as_numpy("points_3d", points_3d, ndim=2, last=3)
    r = as_numpy("rotation", rotation)
    t = as_numpy("translation", translation).reshape(-1)
    k = as_numpy("intrinsics", intrinsics)
    if r.shape != (3, 3) or t.shape != (3,) or k.shape != (3, 3):
        raise ValueError("rotation must be (3, 3), translation (3,), intrinsics (3, 3)")
    cam = x @ r.T + t
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = cam @ k.T
        return uv[:, :2] / uv[:, 2:3]


def _degenerate(ok: bool, rvec, tvec, extent: float, inliers) -> bool:
    if not ok or rvec is None or tvec is None or inliers is None or len(inliers) < 4:
        return True
    t = np.asarray(tvec, dtype=np.float64).reshape(-1)
    if not np.isfinite(t).all() or not np.isfinite(np.asarray(rvec, dtype=np.float64)).all():
        return True
    # camera (near) at infinity, or the object behind the camera
    return bool(t[2] <= 0 or np.linalg.norm(t) > 1e4 * max(extent, 1e-12))


def estimate_camera_pose(points_3d, points_2d, image_size: Sequence[int], *,
                         focal_ndc: float = FOCAL_NDC, intrinsics=None,
                         reprojection_error: float = PNP_REPROJECTION_PX,
                         iterations: int = PNP_ITERATIONS, confidence: float = PNP_CONFIDENCE,
                         refine: bool = True, seed: Optional[int] = 0) -> CameraPose:
    """Robust PnP camera pose from 2D-3D matches, as published (§4.4 eq. 8, app. C).

    ``cv2.solvePnPRansac`` with ``SOLVEPNP_EPNP`` (8 px, 400 iterations,
    confidence 0.999); if it fails or returns a degenerate translation (object
    behind the camera or |t| > 1e4 x the object's extent) the same RANSAC runs
    with ``SOLVEPNP_SQPNP``; then ``cv2.solvePnPRefineLM`` on the inliers, and
    the inlier set is re-evaluated with the refined pose.

    Args:
        points_3d: (M, 3) anchor-mesh points (e.g. vertices V_a[v]), M >= 4.
        points_2d: (M, 2) their pixel positions u_v in the anchor frame image.
        image_size: (width, height) of that image (pixels).
        focal_ndc: focal length in NDC (published 2.1875); ignored with ``intrinsics``.
        intrinsics: optional (3, 3) K overriding the NDC focal length.
        reprojection_error: RANSAC inlier threshold in pixels.
        iterations: RANSAC iterations.
        confidence: RANSAC confidence in (0, 1).
        refine: run the final LM refinement.
        seed: seeds OpenCV's RNG (RANSAC sampling) for reproducibility; None leaves it.

    Returns:
        :class:`CameraPose`.

    Raises:
        ValueError: on mismatched shapes, fewer than 4 matches or bad parameters.
        CameraEstimationError: when neither solver finds a valid pose.
    """
    x = as_numpy("points_3d", points_3d, ndim=2, last=3)
    u = as_numpy("points_2d", points_2d, ndim=2, last=2)
    if x.shape[0] != u.shape[0]:
        raise ValueError(f"points_3d has {x.shape[0]} points but points_2d has {u.shape[0]}")
    if x.shape[0] < 4:
        raise ValueError(f"PnP needs at least 4 2D-3D matches, got {x.shape[0]}")
    k = intrinsics_from_ndc(image_size, focal_ndc) if intrinsics is None else as_numpy("intrinsics", intrinsics)
    if k.shape != (3, 3):
        raise ValueError(f"intrinsics must be (3, 3), got {k.shape}")
    thr = check_positive("reprojection_error", reprojection_error)
    iterations = check_int("iterations", iterations, minimum=1)
    if not 0 < float(confidence) < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if seed is not None:
        cv2.setRNGSeed(int(seed))
    obj = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, 1, 3)
    img = np.ascontiguousarray(u, dtype=np.float64).reshape(-1, 1, 2)
    dist = np.zeros(4)
    extent = float(np.linalg.norm(x.max(0) - x.min(0)))
    result = None
    for name, flag in (("epnp", cv2.SOLVEPNP_EPNP), ("sqpnp", cv2.SOLVEPNP_SQPNP)):
        try:
            ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, k, dist, iterationsCount=iterations,
                                                     reprojectionError=thr, confidence=float(confidence),
                                                     flags=flag)
        except cv2.error:
            ok, rvec, tvec, inl = False, None, None, None
        if not _degenerate(ok, rvec, tvec, extent, inl):
            result = (name, rvec, tvec, np.asarray(inl).reshape(-1))
            break
    if result is None:
        raise CameraEstimationError(
            f"PnP found no consistent camera from {x.shape[0]} matches (EPnP and SQPnP failed); "
            "check that the 2D points are pixels of an image of the given size and the matches are not mostly outliers")
    name, rvec, tvec, inl = result
    if refine:
        rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], k, dist, rvec.copy(), tvec.copy())
    rot, _ = cv2.Rodrigues(rvec)
    t = np.asarray(tvec, dtype=np.float64).reshape(3)
    err = np.linalg.norm(project_points(x, rot, t, k) - u, axis=1)
    inliers = np.nan_to_num(err, nan=np.inf) <= thr
    if not inliers.any():
        inliers = np.zeros(x.shape[0], dtype=bool)
        inliers[inl] = True
    rmse = float(np.sqrt(np.mean(np.nan_to_num(err[inliers], nan=np.inf) ** 2)))
    return CameraPose(rotation=rot, translation=t, intrinsics=k, inliers=inliers, rmse_px=rmse, solver=name)
