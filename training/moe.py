"""Mixture-of-Experts feed-forward in the DeepSeek-V3 / Moonlight style.

Every token goes through the shared expert(s) and through its top-k routed experts. Routing
affinities are sigmoids of the router logits; the top-k choice adds a per-expert *bias* that
is not trained by gradients but nudged after every optimizer step towards equal load
(auxiliary-loss-free balancing: an overloaded expert's bias goes down by ``bias_update``, an
underloaded one's up). The gate weights use the affinities without the bias, normalised over
the chosen experts. An auxiliary Switch-style loss (``E * sum_i f_i * P_i``) can be added as
well. ``last_load`` keeps the tokens per expert of the last forward for logging and for the
bias update (summed over data-parallel ranks first, so every rank applies the same update).

The routed experts' weights are stacked (``[experts, in, out]``) and applied with one grouped
matrix product per projection over the tokens sorted by expert (``torch._grouped_mm``): no
per-expert Python loop and no host sync to learn the per-expert counts. Where grouped
products are unavailable a per-expert loop computes the same thing (``tests/training``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SwiGLU", "MoE", "grouped_mm"]


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


def _loop_mm(x: torch.Tensor, w: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    ends = offs.tolist()
    out = x.new_empty((x.shape[0], w.shape[2]))
    start = 0
    for e, end in enumerate(ends):
        if end > start:
            out[start:end] = x[start:end] @ w[e]
        start = end
    return out


_GROUPED = {"ok": hasattr(torch, "_grouped_mm")}


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offs: torch.Tensor, force_loop: bool = False) -> torch.Tensor:
    """Rows ``offs[e-1]:offs[e]`` of ``x`` times ``w[e]`` (``x`` sorted by expert)."""
    if torch.is_autocast_enabled(x.device.type):
        dt = torch.get_autocast_dtype(x.device.type)
        x, w = x.to(dt), w.to(dt)
    else:
        w = w.to(x.dtype)
    if _GROUPED["ok"] and not force_loop:
        try:
            return torch._grouped_mm(x, w, offs=offs)
        except (RuntimeError, NotImplementedError) as exc:  # e.g. a dtype/arch the kernel lacks
            import warnings

            warnings.warn(f"grouped expert products unavailable here ({exc}); using a per-expert loop", stacklevel=2)
            _GROUPED["ok"] = False
    return _loop_mm(x, w, offs)


class MoE(nn.Module):
    def __init__(self, dim: int, experts: int, top_k: int, expert_dim: int, shared: int,
                 bias_update: float = 1e-3, aux_loss: float = 0.0) -> None:
        super().__init__()
        self.n, self.k = experts, top_k
        self.router = nn.Linear(dim, experts, bias=False)
        self.w_gate = nn.Parameter(torch.empty(experts, dim, expert_dim))
        self.w_up = nn.Parameter(torch.empty(experts, dim, expert_dim))
        self.w_down = nn.Parameter(torch.empty(experts, expert_dim, dim))
        self.shared = SwiGLU(dim, expert_dim * shared) if shared > 0 else None
        self.register_buffer("bias", torch.zeros(experts), persistent=True)
        self.bias_update, self.aux_coef = float(bias_update), float(aux_loss)
        self.last_load: torch.Tensor | None = None
        self.aux: torch.Tensor | None = None
        self.force_loop = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, d = x.shape
        logits = self.router(x).float()
        scores = torch.sigmoid(logits)
        top = torch.topk(scores + self.bias, self.k, dim=-1).indices  # [t, k]
        gates = scores.gather(1, top)
        gates = gates / gates.sum(-1, keepdim=True).clamp_min(1e-9)
        flat = top.reshape(-1)
        load = torch.bincount(flat, minlength=self.n)
        self.last_load = load.detach()
        if self.aux_coef > 0 and self.training:
            f = load.float() / max(1, t * self.k)
            p = (scores / scores.sum(-1, keepdim=True)).mean(0)
            self.aux = self.aux_coef * self.n * (f * p).sum()
        else:
            self.aux = None
        order = torch.argsort(flat, stable=True)
        token_of = order // self.k
        offs = torch.cumsum(load, 0).to(torch.int32)
        xs = x[token_of]
        h = F.silu(grouped_mm(xs, self.w_gate, offs, self.force_loop)) * grouped_mm(xs, self.w_up, offs,
                                                                                    self.force_loop)
        y = grouped_mm(h, self.w_down, offs, self.force_loop) * gates.reshape(-1)[order].unsqueeze(1).to(h.dtype)
        out = torch.zeros((t, d), device=x.device, dtype=torch.float32).index_add_(0, token_of, y.float())
        if self.shared is not None:
            out = out + self.shared(x)
        return out.to(x.dtype)

    @torch.no_grad()
    def update_bias(self, load: torch.Tensor) -> None:
        """One auxiliary-loss-free step: ``load`` is tokens per expert (summed over ranks)."""
        if self.bias_update <= 0:
            return
        err = load.float().mean() - load.float()
        self.bias.add_(self.bias_update * torch.sign(err))
