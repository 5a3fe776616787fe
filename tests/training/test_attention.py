"""Varlen attention: the backends agree, and nothing crosses a segment boundary."""

from __future__ import annotations

import pytest
import torch

from training.attention import VarlenMask, attend


def _qkv(t: int, h: int = 2, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(t, h, d, generator=g) for _ in range(3))


CU = torch.tensor([0, 5, 12, 13, 30, 41], dtype=torch.int32)


@pytest.mark.parametrize("causal", [True, False])
def test_flex_and_sdpa_agree(causal: bool) -> None:
    q, k, v = _qkv(41)
    ref = attend(q, k, v, VarlenMask(CU, causal, "sdpa"))
    flex = attend(q, k, v, VarlenMask(CU, causal, "flex"))
    assert torch.allclose(ref, flex, atol=1e-5), (ref - flex).abs().max()
    # and the reference equals a dense masked attention computed by hand
    seg = torch.repeat_interleave(torch.arange(len(CU) - 1), (CU[1:] - CU[:-1]).long())
    allowed = seg[:, None] == seg[None, :]
    if causal:
        allowed &= torch.ones(41, 41, dtype=torch.bool).tril()
    s = torch.einsum("qhd,khd->hqk", q, k) / 8 ** 0.5
    dense = torch.einsum("hqk,khd->qhd", s.masked_fill(~allowed, float("-inf")).softmax(-1), v)
    assert torch.allclose(ref, dense, atol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
@pytest.mark.parametrize("causal", [True, False])
def test_perturbing_one_segment_changes_only_that_segment(backend: str, causal: bool) -> None:
    q, k, v = _qkv(41)
    mask = VarlenMask(CU, causal, backend)
    base = attend(q, k, v, mask)
    k2, v2 = k.clone(), v.clone()
    k2[12:30] += 3.0  # segment 3 (and only it)
    v2[12:30] -= 2.0
    out = attend(q, k2, v2, mask)
    inside = torch.zeros(41, dtype=torch.bool)
    inside[12:30] = True
    assert torch.equal(out[~inside], base[~inside])
    assert not torch.allclose(out[inside], base[inside])
    if causal:  # and causality: a later token never changes an earlier one
        v3 = v.clone()
        v3[40] += 5.0
        out3 = attend(q, k, v3, mask)
        assert torch.equal(out3[:40], base[:40])
