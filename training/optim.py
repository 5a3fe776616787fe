"""Optimizers and learning-rate schedules.

``adamw``: one AdamW over every parameter, weight decay only on matrices. ``muon``: Muon
(momentum orthogonalised by Newton-Schulz, as Moonlight and Kimi-VL train; ``training.muon``
batches it by matrix shape) on the hidden weight matrices -- attention, feed-forward and the
stacked expert matrices of the decoder and the ViT, the projector -- with its learning rate
matched to AdamW's RMS update (``match_rms_adamw``), and AdamW for embeddings, the output head,
the position table, the patch embedding, norms, biases and the router. The schedule is a pure function of the step (warm-up,
then cosine to ``min_lr_ratio`` or warm-up-stable-decay), so its state is the step number.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from training.config import OptimConfig

__all__ = ["Optimizers", "build_optimizers", "lr_factor"]


def lr_factor(step: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total``."""
    w = max(0, cfg.warmup_steps)
    if step < w:
        return (step + 1) / w
    if cfg.schedule == "wsd":
        decay = max(1, int(round(total * cfg.decay_frac)))
        start = total - decay
        if step < start:
            return 1.0
        t = min(1.0, (step - start + 1) / decay)
        return 1.0 - (1.0 - cfg.min_lr_ratio) * t
    t = min(1.0, (step - w) / max(1, total - w))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def _is_muon(name: str, p: nn.Parameter) -> bool:
    if p.ndim not in (2, 3):
        return False
    return not (name.startswith(("embed.", "head.")) or name.endswith(("router.weight", "pos"))
                or ".patch_embed." in f".{name}")


class Optimizers:
    """One or two torch optimizers stepped together, with one state dict."""

    def __init__(self, opts: dict[str, torch.optim.Optimizer]) -> None:
        self.opts = opts
        for o in opts.values():
            for g in o.param_groups:
                g.setdefault("base_lr", g["lr"])

    def set_lr(self, factor: float) -> None:
        for o in self.opts.values():
            for g in o.param_groups:
                g["lr"] = g["base_lr"] * factor

    def step(self) -> None:
        for o in self.opts.values():
            o.step()

    def zero_grad(self) -> None:
        for o in self.opts.values():
            o.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {k: o.state_dict() for k, o in self.opts.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != set(self.opts):
            raise ValueError(f"optimizer state has {sorted(state)}, this run has {sorted(self.opts)}")
        for k, o in self.opts.items():
            o.load_state_dict(state[k])

    def lrs(self) -> dict[str, float]:
        return {k: o.param_groups[0]["lr"] for k, o in self.opts.items()}


def build_optimizers(model: nn.Module, cfg: OptimConfig) -> Optimizers:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and not (cfg.name == "muon" and _is_muon(n, p))]
    no_decay = [p for n, p in named if p.ndim < 2]
    adam_lr = cfg.adamw_lr if (cfg.name == "muon" and cfg.adamw_lr is not None) else cfg.lr
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr": adam_lr},
              {"params": no_decay, "weight_decay": 0.0, "lr": adam_lr}]
    fused = bool(named) and named[0][1].device.type == "cuda"
    opts: dict[str, torch.optim.Optimizer] = {
        "adamw": torch.optim.AdamW([g for g in groups if g["params"]], lr=adam_lr, betas=cfg.betas, fused=fused)}
    if cfg.name == "muon":
        from training.muon import BatchedMuon

        mats = [p for n, p in named if _is_muon(n, p)]
        opts["muon"] = BatchedMuon(mats, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                                   adjust_lr_fn="match_rms_adamw")
    return Optimizers(opts)
