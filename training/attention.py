"""Varlen attention over packed sequences: no token attends outside its own segment.

The loader packs several samples into each row and the vision tower concatenates the patches
of every image in the batch (NaViT). Both become one flat sequence of ``T`` tokens with
boundaries ``cu_seqlens`` (``[0, n0, n0+n1, ..., T]``); attention is causal within each text
segment and bidirectional within each image. Three backends compute the same thing:

- ``flash``: varlen kernels (``flash_attn.flash_attn_varlen_func`` where flash-attn is installed,
  else PyTorch's own ``torch.nn.attention.varlen.varlen_attn``), CUDA only;
- ``flex``: FlexAttention with a document mask. Building a ``BlockMask`` costs about as much as
  the attention itself at these sizes, so masks are cached by the batch's length signature
  (packed batches repeat signatures rarely, but the eval pass and the vision tower's fixed-size
  images do) -- and built once per batch, shared by every layer;
- ``sdpa``: ``scaled_dot_product_attention`` per segment (the CPU path, and the reference).

``tests/training/test_attention.py`` checks that the backends agree and that perturbing one
segment leaves every other segment's output unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["VarlenMask", "attend", "resolve_backend", "available_backends"]


def _flash_fn() -> Any:
    try:
        from flash_attn import flash_attn_varlen_func  # type: ignore[import-not-found]

        return ("flash_attn", flash_attn_varlen_func)
    except ImportError:
        pass
    try:
        from torch.nn.attention.varlen import varlen_attn  # type: ignore[import-not-found]

        return ("torch_varlen", varlen_attn)
    except ImportError:
        return None


def available_backends(device: torch.device | str) -> list[str]:
    dev = torch.device(device)
    out = ["sdpa", "flex"]
    if dev.type == "cuda" and _flash_fn() is not None:
        out.append("flash")
    return out


def resolve_backend(name: str, device: torch.device | str) -> str:
    dev = torch.device(device)
    if name == "auto":
        if dev.type != "cuda":
            return "sdpa"
        return "flash" if _flash_fn() is not None else "flex"
    if name == "flash" and (dev.type != "cuda" or _flash_fn() is None):
        raise ValueError("attention 'flash' needs CUDA and flash-attn (or a PyTorch with "
                         "torch.nn.attention.varlen); use 'flex' or 'sdpa'")
    return name


_MASKS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_MASK_CACHE = 64
_compiled_flex: dict[str, Any] = {}


def _flex_fn(device: torch.device) -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    if device.type != "cuda":
        return flex_attention
    if "cuda" not in _compiled_flex:
        _compiled_flex["cuda"] = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex["cuda"]


class VarlenMask:
    """The segments of one flat sequence, with whatever each backend needs, built once per batch."""

    FLEX_BLOCK = 128

    def __init__(self, cu_seqlens: torch.Tensor, causal: bool, backend: str,
                 host: torch.Tensor | list[int] | None = None) -> None:
        """``host``: the same boundaries on the CPU (saves a device sync)."""
        self.cu = cu_seqlens.to(torch.int32)
        self.causal, self.backend = causal, backend
        cu_list = (host.tolist() if isinstance(host, torch.Tensor) else list(host)) if host is not None \
            else self.cu.tolist()
        self.bounds = list(zip(cu_list[:-1], cu_list[1:], strict=True))
        self.total = cu_list[-1]
        self.max_len = max((b - a for a, b in self.bounds), default=0)
        self.block_mask = None
        if backend == "flex":
            self.block_mask = self._flex_mask(tuple(cu_list))

    def _flex_mask(self, sig: tuple[int, ...]) -> Any:
        from torch.nn.attention.flex_attention import create_block_mask

        padded = -(-self.total // self.FLEX_BLOCK) * self.FLEX_BLOCK
        key = (sig, self.causal, padded, str(self.cu.device))
        hit = _MASKS.get(key)
        if hit is not None:
            _MASKS.move_to_end(key)
            return hit
        dev = self.cu.device
        doc = torch.full((padded,), -1, dtype=torch.int32, device=dev)
        lengths = self.cu[1:] - self.cu[:-1]
        doc[: self.total] = torch.repeat_interleave(torch.arange(len(lengths), device=dev, dtype=torch.int32),
                                                    lengths.to(torch.int64))
        causal = self.causal

        def mask_mod(b: Any, h: Any, q: Any, kv: Any) -> Any:
            same = doc[q] == doc[kv]
            return (same & (q >= kv)) if causal else same

        # not _compile=True: on torch 2.11 + H200 compiling the mask builder did not finish in 170 s
        # (the flag is deprecated); built eagerly, the mask is cached by its boundaries
        bm = create_block_mask(mask_mod, None, None, padded, padded, device=dev)
        _MASKS[key] = bm
        if len(_MASKS) > _MASK_CACHE:
            _MASKS.popitem(last=False)
        return bm


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: VarlenMask) -> torch.Tensor:
    """``q, k, v``: ``[T, heads, head_dim]`` -> ``[T, heads, head_dim]``."""
    if mask.backend == "sdpa":
        out = torch.empty_like(q)
        for a, b in mask.bounds:
            if b <= a:
                continue
            qs, ks, vs = (x[a:b].transpose(0, 1).unsqueeze(0) for x in (q, k, v))
            out[a:b] = F.scaled_dot_product_attention(qs, ks, vs, is_causal=mask.causal)[0].transpose(0, 1)
        return out
    if mask.backend == "flex":
        t = q.shape[0]
        pad = mask.block_mask.shape[-2] - t if mask.block_mask is not None else 0
        qs, ks, vs = (F.pad(x, (0, 0, 0, 0, 0, pad)).transpose(0, 1).unsqueeze(0) for x in (q, k, v))
        out = _flex_fn(q.device)(qs, ks, vs, block_mask=mask.block_mask)
        return out[0].transpose(0, 1)[:t]
    kind, fn = _flash_fn()  # type: ignore[misc]
    if kind == "flash_attn":
        return fn(q, k, v, mask.cu, mask.cu, mask.max_len, mask.max_len, causal=mask.causal)
    import inspect

    if "is_causal" in inspect.signature(fn).parameters:  # PyTorch 2.10-2.11
        return fn(q, k, v, mask.cu, mask.cu, mask.max_len, mask.max_len, is_causal=mask.causal)
    return fn(q, k, v, mask.cu, mask.cu, mask.max_len, mask.max_len,  # later: causal as a window
              window_size=(-1, 0) if mask.causal else (-1, -1))
