"""End-to-end attention-chain animation and long-sequence reinforcement (attention-chains §4.1-4.3)."""
import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from actionmesh_core.attention_chain import (AttentionChainConfig, animate_from_attention, confidence_gain,
                                             plan_landmarks, reinforce_attention, reinforcement_logit_bias,
                                             stitch_windows, trace_token_pairs, track_landmarks)

T = 16


def _onehot(index, n, peak):
    index = torch.as_tensor(np.asarray(index))
    rows = torch.full((index.numel(), n), (1 - peak) / (n - 1), dtype=torch.float64)
    rows[torch.arange(index.numel()), index] = peak
    return rows


def motion(f):
    return Rotation.from_rotvec(f * np.array([0.02, 0.05, 0.01])).as_matrix(), f * np.array([0.01, 0.0, 0.02])


def synthetic_clip(anchor_frame=0, outlier=True, seed=0):
    """A rigidly moving ellipsoid and hand-built attention in which each landmark's true partner wins.

    Tokens 0..L-1 explain the landmarks; the denoiser permutes tokens between
    frames; candidate points (all moved vertices, shuffled) that are moved
    landmarks attend to their landmark's frame token, the others to extra tokens.
    """
    rng = np.random.default_rng(seed)
    m = trimesh.creation.icosphere(subdivisions=3)
    v = np.asarray(m.vertices) * np.array([1.5, 0.9, 0.7])
    faces = np.asarray(m.faces)
    cfg = AttentionChainConfig(num_landmarks=150)
    lm = plan_landmarks(v, faces, cfg)
    num_l, extra = len(lm), 20
    n = num_l + extra
    a_va_za = _onehot(np.arange(num_l), n, 0.9)
    gt = np.empty((T, len(v), 3))
    surfaces, a_za_zf, a_vf_zf = [], [], []
    is_lm = np.full(len(v), -1)
    is_lm[lm] = np.arange(num_l)
    bad = None
    for f in range(T):
        r, t = motion(f - anchor_frame)
        gt[f] = v @ r.T + t
        perm = rng.permutation(n)
        order = rng.permutation(len(v))
        surfaces.append(torch.from_numpy(gt[f][order]))
        owner = is_lm[order]
        token = np.where(owner >= 0, perm[np.maximum(owner, 0)], perm[num_l + rng.integers(0, extra, len(v))])
        a_vf_zf.append(_onehot(token, n, 0.9))
        route = perm.copy()
        if outlier and f == anchor_frame + 6:
            # landmark 0 is routed to the landmark farthest from it: a gross outlier in that frame
            far = int(np.argmax(np.linalg.norm(v[lm] - v[lm[0]], axis=1)))
            route[0] = perm[far]
            bad = (f, 0)
        a_za_zf.append(_onehot(route[:n], n, 0.8))
    return v, faces, lm, a_va_za, torch.stack(a_za_zf), a_vf_zf, surfaces, gt, bad


@pytest.mark.parametrize("anchor_frame", [0, 5])
def test_rigid_motion_is_recovered_from_hand_built_attention(anchor_frame):
    v, faces, lm, a, m, b, surf, gt, bad = synthetic_clip(anchor_frame)
    cfg = AttentionChainConfig(num_landmarks=150, sigma_landmark=None, sigma_final=None)
    res = animate_from_attention(v, faces, surf, a, m, b, anchor_frame, landmark_index=lm, config=cfg)
    assert res.positions.shape == (T, len(v), 3) and res.positions.dtype == np.float32
    assert res.confidence.shape == (T, len(lm))
    # the planted outlier is rejected and its landmark dropped (16 frames: 95 % = every frame)
    assert not res.valid[bad] and not res.kept[0] and res.kept[1:].all()
    assert np.abs(res.positions - gt).max() < 1e-4
    assert np.array_equal(res.positions[anchor_frame], v.astype(np.float32))
    # true partners win with a clear score: confidence is high except for the outlier
    assert res.confidence[:, 1:].min() > 0.5


def test_published_smoothing_keeps_the_motion_close_and_pins_the_anchor():
    v, faces, lm, a, m, b, surf, gt, _ = synthetic_clip(0)
    res = animate_from_attention(v, faces, surf, a, m, b, 0, landmark_index=lm,
                                 config=AttentionChainConfig(num_landmarks=150))
    err = np.linalg.norm(res.positions - gt, axis=-1)
    travel = np.linalg.norm(gt - v[None], axis=-1)
    assert np.array_equal(res.positions[0], v.astype(np.float32))
    assert err.mean() < 0.05 * travel.mean()
    assert err[4:12].max() < 0.01 * travel.max()     # interior frames: full kernel support


def test_callables_and_tracks_agree_with_tensors():
    v, faces, lm, a, m, b, surf, _, _ = synthetic_clip(0, outlier=False)
    tracks = track_landmarks(a, m, b, surf, 0, v[lm])
    lazy = track_landmarks(a, lambda f: m[f], lambda f: b[f], lambda f: surf[f], 0, v[lm], num_frames=T)
    np.testing.assert_allclose(lazy.positions, tracks.positions)
    assert (tracks.best_index[0] == -1).all() and (tracks.best_index[1:] >= 0).all()
    with pytest.raises(ValueError, match="disagree"):
        track_landmarks(a, m[:5], b, surf, 0, v[lm])
    with pytest.raises(ValueError, match="frame 3"):
        track_landmarks(a, m, b[:3] + [b[3][:, :7]] + b[4:], surf, 0, v[lm])
    with pytest.raises(ValueError, match="num_frames"):
        track_landmarks(a, lambda f: m[f], lambda f: b[f], lambda f: surf[f], 0, v[lm])
    with pytest.raises(TypeError, match="config"):
        animate_from_attention(v, faces, surf, a, m, b, 0, landmark_index=lm, config={"top_k": 3})


def test_traced_token_pairs_are_the_routes_of_the_matches():
    v, faces, lm, a, m, b, surf, _, _ = synthetic_clip(0, outlier=False)
    tracks = track_landmarks(a, m, b, surf, 0, v[lm])
    f = 4
    pairs = trace_token_pairs(a, m[f], b[f][torch.as_tensor(tracks.best_index[f])])
    assert torch.equal(pairs[:, 0], torch.arange(len(lm)))                  # landmark l -> anchor token l
    assert torch.equal(pairs[:, 1], torch.argmax(m[f], dim=1)[: len(lm)])   # -> its routed frame token


def test_reinforcement_scales_pairs_and_equals_a_logit_bias():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 9, generator=g, dtype=torch.float64)
    attn = torch.softmax(logits, -1)
    pairs = torch.tensor([[0, 3], [2, 5], [2, 5], [4, 0]])
    gain = confidence_gain(torch.tensor([0.2, 0.6, 0.4, 0.2], dtype=torch.float64))
    torch.testing.assert_close(gain.mean(), torch.tensor(1.0, dtype=torch.float64))
    out = reinforce_attention(attn, pairs, gain)
    torch.testing.assert_close(out.sum(-1), torch.ones(6, dtype=torch.float64))
    # row 2: entry (2, 5) gets the larger gain of its two duplicates (0.6 / 0.35), the rest shrink together
    ratio = out[2] / attn[2]
    assert ratio[5] / ratio[0] == pytest.approx(0.6 / 0.35)
    assert torch.allclose(ratio[[0, 1, 2, 3, 4, 6, 7, 8]], ratio[0].expand(8))
    torch.testing.assert_close(out[1], attn[1])                             # untouched row
    bias = reinforcement_logit_bias(pairs, gain, (6, 9), dtype=torch.float64)
    torch.testing.assert_close(torch.softmax(logits + bias, -1), out)
    with pytest.raises(ValueError, match="pairs"):
        reinforce_attention(attn, torch.tensor([[6, 0]]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="> 0"):
        reinforce_attention(attn, pairs, torch.zeros(4))


def test_windows_stitch_on_their_shared_frame():
    w0 = np.random.default_rng(0).normal(size=(16, 5, 3))
    w1 = np.concatenate([w0[-1:], np.random.default_rng(1).normal(size=(15, 5, 3))])
    out = stitch_windows([w0, w1], overlap=1, atol=0.0)
    assert out.shape == (31, 5, 3)
    np.testing.assert_array_equal(out[16:], w1[1:])
    with pytest.raises(ValueError, match="does not start"):
        stitch_windows([w0, w1[::-1]], atol=1e-6)
