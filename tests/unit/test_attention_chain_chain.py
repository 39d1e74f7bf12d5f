"""Chain composition V_a -> Z_a -> Z_f -> V_f (attention-chains §4.1, eqs. 2-4)."""
import numpy as np
import pytest
import torch

from actionmesh_core.attention_chain import (blend_candidates, chain_correspondences, chain_scores, compose_chain,
                                             top_candidates)


def soft_onehot(index, n, peak=0.9):
    """Rows that put ``peak`` on ``index`` and spread the rest uniformly (rows sum to 1)."""
    index = torch.as_tensor(index)
    rows = torch.full((index.numel(), n), (1.0 - peak) / (n - 1), dtype=torch.float64)
    rows[torch.arange(index.numel()), index] = peak
    return rows


def hand_built(n=12, seed=0):
    """Vertices v -> anchor token v -> frame token perm[v] -> candidate whose token is perm[v]."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)                   # anchor token t -> frame token perm[t]
    cand_token = torch.randperm(n, generator=g)             # candidate u attends to frame token cand_token[u]
    a_va_za = soft_onehot(torch.arange(n), n)
    a_za_zf = soft_onehot(perm, n, peak=0.8)
    a_vf_zf = soft_onehot(cand_token, n)
    partner = torch.argsort(cand_token)[perm]               # candidate with cand_token == perm[v]
    points = torch.randn(n, 3, generator=g, dtype=torch.float64) * 5
    return a_va_za, a_za_zf, a_vf_zf, points, partner


def test_chain_maps_each_vertex_to_its_known_partner():
    a, m, b, pts, partner = hand_built()
    match = chain_correspondences(a, m, b, pts, top_k=4)
    assert torch.equal(match.best_index, partner)
    torch.testing.assert_close(match.points, pts[partner], atol=1e-9, rtol=0)
    # confidence is the best chained score (eq. 4)
    scores = chain_scores(compose_chain(a, m), b)
    torch.testing.assert_close(match.confidence, scores.max(1).values)
    torch.testing.assert_close(match.weights.sum(1), torch.ones(12, dtype=torch.float64))


def test_composition_transports_probability():
    a, m, b, _, _ = hand_built(n=9, seed=3)
    chained = compose_chain(a, m)
    torch.testing.assert_close(chained.sum(1), torch.ones(9, dtype=torch.float64))
    stacked = compose_chain(a, torch.stack([m, m.T.contiguous()]))
    assert stacked.shape == (2, 9, 9)
    torch.testing.assert_close(stacked[0], chained)


def test_chunked_top_k_equals_full_ranking():
    g = torch.Generator().manual_seed(1)
    chained = torch.softmax(torch.randn(7, 20, generator=g), 1)
    b = torch.softmax(torch.randn(53, 20, generator=g), 1)
    full = chain_scores(chained, b)
    ref_s, ref_i = torch.topk(full, 5, dim=1)
    s, i = top_candidates(chained, b, top_k=5, chunk=6)
    torch.testing.assert_close(s, ref_s)
    assert torch.equal(i, ref_i)
    s1, _ = top_candidates(chained, b, top_k=500, chunk=6)       # clipped to P
    assert s1.shape == (7, 53)


def test_blend_is_sharp_softmax_over_localised_candidates():
    pts = torch.tensor([[0.0, 0, 0], [0.01, 0, 0], [10.0, 0, 0], [5.0, 5, 5]])
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.5]])
    # two equally good candidates close together -> their midpoint
    m = blend_candidates(scores[:, :2], torch.tensor([[0, 1]]), pts)
    torch.testing.assert_close(m.points, torch.tensor([[0.005, 0.0, 0.0]]))
    # an equally good candidate far away is not localised -> not blended into mid-air
    m = blend_candidates(scores[:, :3], torch.tensor([[0, 2, 1]]), pts)
    torch.testing.assert_close(m.points, torch.tensor([[0.005, 0.0, 0.0]]))
    assert m.weights[0, 1] == 0
    # without locality the far one pulls the blend away
    m = blend_candidates(scores[:, :3], torch.tensor([[0, 2, 1]]), pts, locality=None)
    assert m.points[0, 0] > 3
    # a clearly worse candidate gets (almost) no weight with the relative temperature
    m = blend_candidates(torch.tensor([[1.0, 0.5]]), torch.tensor([[0, 1]]), pts)
    assert m.weights[0, 1] < 1e-4
    assert m.confidence.item() == 1.0


def test_bad_inputs():
    a, m, b, pts, _ = hand_built()
    with pytest.raises(ValueError, match="logits"):
        compose_chain(a - 0.5, m)
    with pytest.raises(ValueError, match="tokens"):
        compose_chain(a[:, :5], m)
    with pytest.raises(ValueError, match="surface points"):
        chain_correspondences(a, m, b, pts[:5])
    with pytest.raises(ValueError, match="temperature"):
        chain_correspondences(a, m, b, pts, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        chain_correspondences(a, m, b, pts, top_k=0)
    with pytest.raises(ValueError, match="P = 0"):
        top_candidates(a, b[:0])
    with pytest.raises(TypeError):
        compose_chain([[1.0]], m)
    with pytest.raises(ValueError, match="NaN"):
        compose_chain(a * np.nan, m)


def test_half_precision_capture_is_accepted():
    a, m, b, pts, partner = hand_built(n=10, seed=4)
    match = chain_correspondences(a.bfloat16(), m.half(), b.bfloat16(), pts.float())
    assert torch.equal(match.best_index, partner)
    assert match.points.dtype == torch.float32
