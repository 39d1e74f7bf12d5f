"""attention_rows: explicit, chunked attention probabilities (attention-chains eq. 1)."""
import pytest
import torch

from actionmesh_core.attention_chain import attention_rows


def _qk(b=2, h=3, r=11, s=17, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, h, r, d, generator=g), torch.randn(b, h, s, d, generator=g), torch.randn(b, h, s, d, generator=g)


def test_matches_full_softmax_for_any_chunking():
    q, k, _ = _qk()
    ref = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1)
    for chunk in (1, 4, 11, 100):
        out = attention_rows(q, k, chunk=chunk)
        assert out.shape == (2, 11, 17)
        torch.testing.assert_close(out, ref.mean(1), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(attention_rows(q, k, chunk=chunk, per_head=True), ref, atol=1e-6, rtol=1e-5)


def test_probabilities_reproduce_sdpa_output():
    q, k, v = _qk(seed=1)
    probs = attention_rows(q, k, chunk=5, per_head=True)
    torch.testing.assert_close(probs @ v, torch.nn.functional.scaled_dot_product_attention(q, k, v),
                               atol=1e-5, rtol=1e-5)


def test_key_index_keeps_columns_and_renormalises():
    q, k, _ = _qk(seed=2)
    idx = torch.tensor([3, 4, 5, 6, 7])
    full = attention_rows(q, k, scale=0.3)
    sub = attention_rows(q, k, scale=0.3, key_index=idx)
    torch.testing.assert_close(sub, full[..., idx])
    ren = attention_rows(q, k, scale=0.3, key_index=idx, renormalize=True, per_head=True)
    torch.testing.assert_close(ren.sum(-1), torch.ones(2, 3, 11))
    ref = torch.softmax(q @ k.transpose(-1, -2) * 0.3, -1)[..., idx]
    torch.testing.assert_close(ren, ref / ref.sum(-1, keepdim=True), atol=1e-6, rtol=1e-5)


def test_bad_inputs_raise_clear_errors():
    q, k, _ = _qk()
    with pytest.raises(ValueError, match="agree"):
        attention_rows(q, k[:, :2])
    with pytest.raises(ValueError, match="chunk"):
        attention_rows(q, k, chunk=0)
    with pytest.raises(ValueError, match="key_index"):
        attention_rows(q, k, renormalize=True)
    with pytest.raises(ValueError, match="key_index"):
        attention_rows(q, k, key_index=torch.tensor([0, 99]))
    with pytest.raises(TypeError):
        attention_rows(q.numpy(), k)
