"""A small vision-language model in the Kimi-VL shape, fed by the loader's packed batches.

``pixel_values`` (uint8 14x14x3 patches of every image in the batch, in token order) go
through a native-resolution ViT: patch embedding + a learnable absolute position table
bilinearly interpolated to each image's grid + 2D rotary embeddings over (row, column), with
attention restricted to each image (NaViT packing, ``cu_seqlens`` from ``image_grid_hw``). A
2x2 pixel shuffle merges neighbouring patches (4x fewer tokens) and a two-layer MLP projects
them to the decoder width. The decoder embeds ``input_ids``, writes the image features into
the ``<|media_pad|>`` positions (one per merged patch, checked: a mismatch names the sample),
and runs pre-norm blocks of causal varlen attention (rotary on the loader's per-sample
``position_ids``) and a MoE feed-forward (``training.moe``). The loss is next-token
cross-entropy where the target's label is not -100, never across two packed samples.

Weights are initialised from ``torch.Generator(seed)`` -- no global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from training.attention import VarlenMask, attend, resolve_backend
from training.config import ModelConfig
from training.moe import MoE, SwiGLU

__all__ = ["VLM", "MediaMismatch", "ModelOutput", "rotary", "merge_index"]


def _loss_tokens(labels: torch.Tensor, position_ids: torch.Tensor) -> int:
    """Tokens whose next token (in the same packed sample) carries a label."""
    nxt = position_ids.reshape(-1)[1:]
    return int(((labels.reshape(-1)[1:] != -100) & (nxt > 0)).sum())


class MediaMismatch(ValueError):
    """The number of ``<|media_pad|>`` tokens differs from the merged image patches."""


def rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``[T, H, D]`` by ``angles`` ``[T, D/2]`` (half-split layout)."""
    d2 = x.shape[-1] // 2
    cos, sin = angles.cos().unsqueeze(1).to(x.dtype), angles.sin().unsqueeze(1).to(x.dtype)
    x1, x2 = x[..., :d2], x[..., d2:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def _inv_freq(n: int, theta: float, device: torch.device) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, n, device=device, dtype=torch.float32) / n))


def merge_index(grids: list[tuple[int, int]]) -> np.ndarray:
    """Patch order such that every 4 consecutive patches are one 2x2 block, blocks row-major
    per image, images in order -- the pixel shuffle as one gather."""
    out, base = [], 0
    for gh, gw in grids:
        idx = np.arange(gh * gw).reshape(gh // 2, 2, gw // 2, 2).transpose(0, 2, 1, 3).reshape(-1)
        out.append(idx + base)
        base += gh * gw
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, angles: torch.Tensor, mask: VarlenMask) -> torch.Tensor:
        t = x.shape[0]
        q, k, v = self.qkv(x).view(t, 3, self.heads, self.hd).unbind(1)
        q, k = rotary(q, angles), rotary(k, angles)
        return self.proj(attend(q, k, v, mask).reshape(t, -1))


class VitBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, angles: torch.Tensor, mask: VarlenMask) -> torch.Tensor:
        x = x + self.attn(self.n1(x), angles, mask)
        return x + self.mlp(self.n2(x))


class DecoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, moe: bool) -> None:
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(cfg.dim), nn.RMSNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.ffn: nn.Module = (MoE(cfg.dim, cfg.experts, cfg.top_k, cfg.expert_dim, cfg.shared_experts,
                                   cfg.bias_update, cfg.aux_loss) if moe else SwiGLU(cfg.dim, cfg.ffn_dim))

    def forward(self, x: torch.Tensor, angles: torch.Tensor, mask: VarlenMask) -> torch.Tensor:
        x = x + self.attn(self.n1(x), angles, mask)
        return x + self.ffn(self.n2(x))


class VisionTower(nn.Module):
    """Native-resolution ViT + 2x2 pixel shuffle + 2-layer MLP projector."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Linear(3 * cfg.patch * cfg.patch, cfg.vit_dim)
        self.pos = nn.Parameter(torch.zeros(cfg.pos_grid, cfg.pos_grid, cfg.vit_dim))
        self.blocks = nn.ModuleList(VitBlock(cfg.vit_dim, cfg.vit_heads, cfg.vit_mlp_ratio)
                                    for _ in range(cfg.vit_layers))
        self.norm = nn.LayerNorm(cfg.vit_dim)
        self.proj = nn.Sequential(nn.LayerNorm(4 * cfg.vit_dim), nn.Linear(4 * cfg.vit_dim, cfg.dim), nn.GELU(),
                                  nn.Linear(cfg.dim, cfg.dim))

    def _positions(self, grids: list[tuple[int, int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        tables: dict[tuple[int, int], torch.Tensor] = {}
        pos, rows, cols = [], [], []
        table = self.pos.permute(2, 0, 1).unsqueeze(0)
        for gh, gw in grids:
            if (gh, gw) not in tables:
                tables[(gh, gw)] = F.interpolate(table, size=(gh, gw), mode="bilinear", align_corners=False
                                                 )[0].permute(1, 2, 0).reshape(gh * gw, -1)
            pos.append(tables[(gh, gw)])
            r, c = np.divmod(np.arange(gh * gw), gw)
            rows.append(r)
            cols.append(c)
        hd = self.cfg.vit_dim // self.cfg.vit_heads
        inv = _inv_freq(hd // 4, self.cfg.rope_theta, device)
        r = torch.from_numpy(np.concatenate(rows)).to(device, torch.float32)
        c = torch.from_numpy(np.concatenate(cols)).to(device, torch.float32)
        angles = torch.cat((r[:, None] * inv, c[:, None] * inv), dim=1)
        return torch.cat(pos), angles

    def forward(self, pixel_values: torch.Tensor, grids: list[tuple[int, int]], backend: str) -> torch.Tensor:
        if not grids:
            return pixel_values.new_zeros((0, self.cfg.dim), dtype=self.patch_embed.weight.dtype)
        x = self.patch_embed(pixel_values.to(self.patch_embed.weight.dtype) / 127.5 - 1.0)
        pos, angles = self._positions(grids, x.device)
        x = x + pos.to(x.dtype)
        sizes = [gh * gw for gh, gw in grids]
        cu_host = torch.tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.int32)
        mask = VarlenMask(cu_host.to(x.device, non_blocking=True), causal=False, backend=backend, host=cu_host)
        for blk in self.blocks:
            x = blk(x, angles, mask)
        x = self.norm(x)
        idx = torch.from_numpy(merge_index(grids)).to(x.device)
        x = x.index_select(0, idx).reshape(-1, 4 * self.cfg.vit_dim)
        return self.proj(x)


@dataclass
class ModelOutput:
    loss: torch.Tensor  # mean token loss + auxiliary losses (what a single process backpropagates)
    loss_sum: torch.Tensor  # sum of token losses, with its graph (the trainer normalises over ranks)
    tokens: int  # tokens with a loss
    token_loss: torch.Tensor  # [B*L] per-token loss (0 where no loss), detached
    loss_mask: torch.Tensor  # [B*L] where a token has a loss
    loads: list[torch.Tensor]  # tokens per expert, per MoE layer
    image_tokens: int
    logits: torch.Tensor | None = None  # [B*L, vocab] (only with return_logits)
    target: torch.Tensor | None = None  # [B*L] next-token targets, -100 where no loss


class VLM(nn.Module):
    def __init__(self, cfg: ModelConfig, media_pad_id: int) -> None:
        super().__init__()
        self.cfg, self.media_pad_id = cfg, int(media_pad_id)
        self.vision = VisionTower(cfg)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(DecoderBlock(cfg, moe=cfg.experts > 0 and i >= cfg.dense_layers)
                                    for i in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.backend = "sdpa"

    # -- setup ----------------------------------------------------------------------------------
    def init_weights(self, seed: int) -> None:
        g = torch.Generator().manual_seed(int(seed))
        std = self.cfg.init_std
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.ndim >= 2 or name.endswith("pos"):
                    p.copy_(torch.randn(p.shape, generator=g) * std)
                elif name.endswith("bias"):
                    p.zero_()
                else:  # norm weights
                    p.fill_(1.0)
            n_layers = max(1, self.cfg.layers)
            for name, p in self.named_parameters():  # GPT-2 style scaled residual projections
                if name.endswith(("attn.proj.weight", "down.weight", "w_down")) and name.startswith("layers."):
                    p.mul_(1.0 / (2 * n_layers) ** 0.5)
        for m in self.modules():
            if isinstance(m, MoE):
                m.bias.zero_()

    def set_backend(self, device: torch.device) -> str:
        self.backend = resolve_backend(self.cfg.attention, device)
        return self.backend

    def moe_layers(self) -> list[MoE]:
        return [m for m in self.modules() if isinstance(m, MoE)]

    # -- forward --------------------------------------------------------------------------------
    def _check_media(self, pads: torch.Tensor, n_img_tokens: int, batch: dict[str, Any]) -> None:
        host = batch.get("input_ids_host")
        n_pads = int((host == self.media_pad_id).sum()) if host is not None else int(pads.sum())
        if n_pads == n_img_tokens:
            return
        grids = [tuple(g) for g in batch["image_grid_hw"].tolist()]
        per_image = [(gh // 2) * (gw // 2) for gh, gw in grids]
        seg = batch["segment_ids"].cpu()
        pads_c = pads.view(seg.shape).cpu()
        img = 0
        for r, keys in enumerate(batch["sample_keys"]):
            for s, key in enumerate(keys):
                want = int(pads_c[r][seg[r] == s].sum())
                have = 0
                while have < want and img < len(per_image):
                    have += per_image[img]
                    img += 1
                if have != want:
                    raise MediaMismatch(f"sample {key}: {want} <|media_pad|> tokens but its images give {have} "
                                        f"merged patches (batch total {n_pads} pads, {n_img_tokens} image tokens)")
        raise MediaMismatch(f"batch has {n_pads} <|media_pad|> tokens but {n_img_tokens} merged image patches "
                            f"(keys {batch['sample_keys']})")

    def forward(self, batch: dict[str, Any], return_logits: bool = False) -> ModelOutput:
        ids = batch["input_ids"]
        b, seqlen = ids.shape
        flat = ids.reshape(-1)
        x = self.embed(flat)
        grids = [tuple(int(v) for v in g) for g in batch["image_grid_hw"].tolist()]
        n_img = sum((gh // 2) * (gw // 2) for gh, gw in grids)
        pads = flat == self.media_pad_id
        self._check_media(pads, n_img, batch)
        img = self.vision(batch["pixel_values"], grids, self.backend)
        if n_img:
            x = x.masked_scatter(pads.unsqueeze(-1), img.to(x.dtype))
        pos = batch["position_ids"].reshape(-1).to(torch.float32)
        inv = _inv_freq(self.cfg.dim // self.cfg.heads // 2, self.cfg.rope_theta, x.device)
        angles = pos[:, None] * inv
        mask = VarlenMask(batch["cu_seqlens"], causal=True, backend=self.backend, host=batch.get("cu_seqlens_host"))
        for layer in self.layers:
            x = layer(x, angles, mask)
        logits = self.head(self.norm(x)).float()
        # target of token t is token t+1 of the same packed sample (position_ids restart at 0)
        labels = batch["labels"].reshape(-1)
        nxt_pos = batch["position_ids"].reshape(-1)[1:]
        target = torch.where(nxt_pos > 0, labels[1:], torch.full_like(labels[1:], -100))
        target = torch.cat((target, target.new_full((1,), -100)))
        tok_loss = F.cross_entropy(logits, target.clamp_min(0), reduction="none") * (target >= 0)
        n = _loss_tokens(batch["labels_host"], batch["position_ids_host"]) if "labels_host" in batch \
            else int((target >= 0).sum())
        loss_sum = tok_loss.sum()
        moes = self.moe_layers()
        aux = [m.aux for m in moes if m.aux is not None]
        loss = loss_sum / max(1, n) + (sum(aux) if aux else 0.0)
        return ModelOutput(loss=loss, loss_sum=loss_sum, tokens=n, token_loss=tok_loss.detach(),
                           loss_mask=target >= 0, loads=[m.last_load for m in moes if m.last_load is not None],
                           image_tokens=n_img, logits=logits if return_logits else None,
                           target=target if return_logits else None)

    # -- accounting -----------------------------------------------------------------------------
    def param_counts(self) -> dict[str, int]:
        """Parameters: total, vision, decoder active per token (shared + top-k routed), embeddings."""
        cached = getattr(self, "_param_counts", None)
        if cached is not None:
            return cached
        total = sum(p.numel() for p in self.parameters())
        vision = sum(p.numel() for p in self.vision.parameters())
        emb = self.embed.weight.numel()
        routed = 0
        per_expert = 0
        for m in self.moe_layers():
            e = m.w_gate.numel() + m.w_up.numel() + m.w_down.numel()
            routed += e
            per_expert += e // m.n * m.k
        decoder = total - vision - emb - (0 if not self.cfg.tie_embeddings else 0)
        self._param_counts = {"total": total, "vision": vision, "embedding": emb, "decoder": decoder,
                              "decoder_active": decoder - routed + per_expert}
        return self._param_counts

    def flops(self, batch: dict[str, Any]) -> float:
        """Training FLOPs of one batch (forward + backward = 3x forward): 6 N per token for the
        matrix products, plus attention scores and values over each segment's own length."""
        c = self.param_counts()
        cu = batch["cu_seqlens"].tolist()
        seg = np.diff(cu).astype(np.float64)
        text_tokens = float(cu[-1])
        grids = batch["image_grid_hw"].tolist()
        patches = float(sum(gh * gw for gh, gw in grids))
        vit_seg = np.array([gh * gw for gh, gw in grids], dtype=np.float64)
        dec_mm = 6.0 * (c["decoder_active"] - self.head.weight.numel()) * text_tokens
        head = 6.0 * self.head.weight.numel() * text_tokens
        vit_mm = 6.0 * (c["vision"] - self.vision.pos.numel()) * patches
        dec_attn = 3.0 * 2.0 * 2.0 * self.cfg.dim * self.cfg.layers * float((seg * seg / 2).sum())
        vit_attn = 3.0 * 2.0 * 2.0 * self.cfg.vit_dim * self.cfg.vit_layers * float((vit_seg * vit_seg).sum())
        return dec_mm + head + vit_mm + dec_attn + vit_attn
