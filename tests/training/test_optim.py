"""Optimizer pieces: batched Muon equals torch's Muon, grouped expert products equal the loop,
and the schedules are the documented pure functions of the step."""

from __future__ import annotations

import pytest
import torch

from training.config import OptimConfig
from training.moe import MoE
from training.muon import BatchedMuon
from training.optim import lr_factor


def test_batched_muon_matches_torch_muon_on_matrices() -> None:
    g = torch.Generator().manual_seed(0)
    shapes = [(32, 16), (16, 32), (32, 16), (8, 8)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    a = BatchedMuon(ours, lr=0.02, weight_decay=0.1, momentum=0.95, adjust_lr_fn="match_rms_adamw")
    b = torch.optim.Muon(theirs, lr=0.02, weight_decay=0.1, momentum=0.95, adjust_lr_fn="match_rms_adamw")
    for _ in range(3):
        grads = [torch.randn(s, generator=g) for s in shapes]
        for p, q, gr in zip(ours, theirs, grads, strict=True):
            p.grad, q.grad = gr.clone(), gr.clone()
        a.step()
        b.step()
    for p, q in zip(ours, theirs, strict=True):
        assert torch.allclose(p, q, atol=1e-3, rtol=1e-3), (p - q).abs().max()


def test_batched_muon_steps_each_expert_as_its_own_matrix() -> None:
    g = torch.Generator().manual_seed(1)
    stacked = torch.nn.Parameter(torch.randn(3, 16, 8, generator=g))
    singles = [torch.nn.Parameter(stacked.detach()[i].clone()) for i in range(3)]
    grad = torch.randn(3, 16, 8, generator=g)
    stacked.grad = grad.clone()
    for i, p in enumerate(singles):
        p.grad = grad[i].clone()
    BatchedMuon([stacked], lr=0.05).step()
    BatchedMuon(singles, lr=0.05).step()
    for i in range(3):
        assert torch.allclose(stacked[i], singles[i], atol=1e-6)


def test_grouped_expert_products_equal_the_per_expert_loop() -> None:
    moe = MoE(16, experts=4, top_k=2, expert_dim=16, shared=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in moe.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    x = torch.randn(40, 16, generator=g)
    fast = moe(x)
    moe.force_loop = True
    slow = moe(x)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_schedules() -> None:
    cos = OptimConfig(warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, 100, cos) == pytest.approx(0.1) and lr_factor(9, 100, cos) == pytest.approx(1.0)
    assert lr_factor(10, 100, cos) == pytest.approx(1.0) and lr_factor(99, 100, cos) == pytest.approx(0.1, abs=1e-3)
    wsd = OptimConfig(warmup_steps=10, schedule="wsd", decay_frac=0.2, min_lr_ratio=0.0)
    assert lr_factor(50, 100, wsd) == 1.0 and lr_factor(79, 100, wsd) == 1.0
    assert lr_factor(89, 100, wsd) == pytest.approx(0.5) and lr_factor(99, 100, wsd) == pytest.approx(0.0)
