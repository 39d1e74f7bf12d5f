"""SDF meshing: refinement near the surface gives exactly the dense grid's mesh, with no dilation.

Written against the public :func:`sdf_to_meshes` behaviour (refined result == dense result), so it holds for
any extractor behind it (octree refinement or a narrow band). With ``dilation=0`` only the coarse cells whose
corners change sign are refined: for a smooth closed surface that is much larger than a coarse cell every fine
sign-change cell lies in one of them, so the refined mesh must equal the dense mesh triangle for triangle. A
wrong index map between levels, a missing fine sample, or a stale coarse value in the refined volume breaks it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from actionmesh_core.geometry.meshing import sdf_to_meshes


def _ellipsoid(p: torch.Tensor) -> torch.Tensor:
    """Smooth, off-centre, not axis-symmetric: (Q, 3) -> (Q,), negative inside."""
    q = (p - torch.tensor([0.07, -0.04, 0.03])) / torch.tensor([0.71, 0.52, 0.43])
    return (q.norm(dim=-1) - 1.0) * 0.5


def _triangles(mesh) -> np.ndarray:
    """Order-independent key of a mesh: its triangles (corner coordinates sorted), sorted."""
    tri = np.sort(mesh.vertices[mesh.faces].reshape(-1, 9), axis=1)
    return tri[np.lexsort(tri.T[::-1])]


@pytest.mark.parametrize("coarse,fine", [(4, 6), (5, 6)])
def test_refined_grid_with_dilation_0_equals_the_dense_grid(coarse, fine):
    dense = sdf_to_meshes(_ellipsoid, 1, octree_depth=fine, refine_depth=fine)[0]
    refined = sdf_to_meshes(_ellipsoid, 1, octree_depth=coarse, refine_depth=fine, dilation=0)[0]
    assert len(dense.faces) > 1000
    assert len(refined.faces) == len(dense.faces) and len(refined.vertices) == len(dense.vertices)
    np.testing.assert_allclose(_triangles(refined), _triangles(dense), rtol=0, atol=1e-7)
    assert refined.metadata["meshing"]["points_evaluated"] < dense.metadata["meshing"]["points_evaluated"] / 2


def test_refined_grid_with_dilation_0_equals_the_dense_grid_for_several_fields():
    """Batched fields (one mesh per frame) refine each field's own band."""
    def two(p):
        return torch.stack([_ellipsoid(p), _ellipsoid(p * 1.2)])

    dense = sdf_to_meshes(two, 2, octree_depth=6, refine_depth=6)
    refined = sdf_to_meshes(two, 2, octree_depth=4, refine_depth=6, dilation=0)
    for d, r in zip(dense, refined):
        np.testing.assert_allclose(_triangles(r), _triangles(d), rtol=0, atol=1e-7)
    assert abs(refined[1].volume / refined[0].volume - 1.2 ** -3) < 0.02
